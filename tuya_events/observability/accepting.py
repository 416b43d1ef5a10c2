"""The HTTP listener's own accept loop, so a failing accept() is one log line per interval.

asyncio's loop handles a failed accept() (EMFILE at the file-descriptor limit, say) badly: it
reports each one to the loop's exception handler (a traceback in the log each time), keeps
trying the rest of its batch (one accept() per backlog slot), and schedules a retry for every
failure, so the retries pile up. Measured on Python 3.11 with the descriptors held: 125 failed
accept() calls in the first second, about 2,500 a second after 15 s, growing as long as the
limit lasts, each one a log line; and the retries still pending when the listener stops log a
traceback each.

:class:`Acceptor` accepts on the listener's sockets itself instead: on a failure it stops
reading that socket for ``retry_delay`` (one timer, however many failures), and
:class:`FailureLog` logs the first failure at once and then one line per interval with the
count. The connections wait in the kernel's backlog meanwhile, as they would anyway.
"""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import Callable
from typing import Any

from tuya_events.observability.connections import ConnectionGuard
from tuya_events.observability.logging import get_logger

log = get_logger("tuya_events.http")

RETRY_DELAY = 1.0  # as asyncio's own (constants.ACCEPT_RETRY_DELAY)
# accept() calls per readiness event at most. Small: an evicted connection's descriptor is only
# freed on the next loop iteration, so this bounds how far a burst overshoots the limit.
BATCH = 16


async def bind(host: str, port: int, backlog: int) -> list[socket.socket]:
    """Listening sockets for every address ``host`` resolves to, as asyncio's create_server."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                raise OSError(
                    exc.errno, f"error while attempting to bind on address {address!r}: {exc}"
                ) from None
            sock.listen(backlog)
            sock.setblocking(False)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


class Throttle:
    """Counts events and says when to report them: the first at once, then the count so far at
    most once per ``interval``; ``flush`` reports what is left."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.pending = 0
        self.reported_at: float | None = None

    def record(self, now: float) -> int:
        """Count one event; the number to report now, or 0 to hold it for later."""
        self.pending += 1
        if self.reported_at is None or now - self.reported_at >= self.interval:
            return self.flush(now)
        return 0

    def flush(self, now: float) -> int:
        count, self.pending = self.pending, 0
        if count:
            self.reported_at = now
        return count

    def next_report(self) -> float | None:
        """When held events are due: one interval after the last report."""
        if not self.pending or self.reported_at is None:
            return None
        return self.reported_at + self.interval


class FailureLog:
    """Failed accept() calls: counted each, logged at most one line per interval."""

    def __init__(
        self,
        interval: float,
        counted: Callable[[], None],
        details: Callable[[], dict[str, Any]],
    ) -> None:
        self._throttle = Throttle(interval)
        self._counted = counted
        self._details = details
        self._timer: asyncio.TimerHandle | None = None
        self._error = ""

    def failed(self, loop: asyncio.AbstractEventLoop, exc: OSError) -> None:
        self._counted()
        self._error = errno.errorcode.get(exc.errno or 0, str(exc))
        count = self._throttle.record(loop.time())
        if count:
            self._cancel_timer()
            self._report(count)
        elif self._timer is None:
            due = self._throttle.next_report()
            if due is not None:
                self._timer = loop.call_at(due, self.flush, loop)

    def flush(self, loop: asyncio.AbstractEventLoop) -> None:
        """Report what is held (on the timer, and when the listener stops)."""
        self._cancel_timer()
        self._report(self._throttle.flush(loop.time()))

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _report(self, count: int) -> None:
        if count:
            log.error(
                "http listener cannot accept connections (retrying); logged once per interval",
                error=self._error,
                failed_accepts=count,
                interval_seconds=self._throttle.interval,
                **self._details(),
            )


class Acceptor:
    """Accepts connections on ``sockets``, counts each with ``guard`` at once, and hands it to
    ``protocol_factory``'s protocol."""

    def __init__(
        self,
        sockets: list[socket.socket],
        guard: ConnectionGuard,
        protocol_factory: Callable[[], asyncio.Protocol],
        failures: FailureLog,
        retry_delay: float = RETRY_DELAY,
    ) -> None:
        self.sockets = sockets
        self._guard = guard
        self._factory = protocol_factory
        self._failures = failures
        self._retry_delay = retry_delay
        self._loop = asyncio.get_running_loop()
        self._retries: dict[socket.socket, asyncio.TimerHandle] = {}
        self._handshakes: set[asyncio.Task[Any]] = set()
        self._running = False

    def start(self) -> None:
        self._running = True
        for sock in self.sockets:
            self._loop.add_reader(sock.fileno(), self._accept, sock)

    def stop(self) -> None:
        """Stop accepting and close the sockets; connections already made are left alone."""
        self._running = False
        for timer in self._retries.values():
            timer.cancel()
        self._retries.clear()
        for sock in self.sockets:
            self._loop.remove_reader(sock.fileno())
            sock.close()
        self._failures.flush(self._loop)

    def _accept(self, sock: socket.socket) -> None:
        for _ in range(BATCH):
            try:
                conn, _ = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue  # the client gave up while queued
            except OSError as exc:  # EMFILE, ENFILE, ENOBUFS, ENOMEM, or a network error
                self._pause(sock, exc)
                return
            conn.setblocking(False)
            self._guard.reserve()
            handshake = self._loop.create_task(self._connect(conn))
            self._handshakes.add(handshake)
            handshake.add_done_callback(self._handshakes.discard)

    async def _connect(self, conn: socket.socket) -> None:
        try:
            await self._loop.connect_accepted_socket(self._factory, conn)
        except OSError:  # reset before the transport was made: nothing to serve
            self._guard.release()
            conn.close()

    def _pause(self, sock: socket.socket, exc: OSError) -> None:
        self._loop.remove_reader(sock.fileno())
        self._retries[sock] = self._loop.call_later(self._retry_delay, self._resume, sock)
        self._failures.failed(self._loop, exc)

    def _resume(self, sock: socket.socket) -> None:
        self._retries.pop(sock, None)
        if self._running:
            self._loop.add_reader(sock.fileno(), self._accept, sock)
