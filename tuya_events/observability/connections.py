"""Bounds on the HTTP listener's connections, so slow or idle clients cannot starve the probes.

aiohttp waits for a request header as long as a client keeps the connection open, and accepts
connections until the process runs out of file descriptors. :class:`ConnectionGuard` sits
between the listener's accept loop and aiohttp's protocol and adds two rules:

- a connection must deliver a complete request header within ``header_timeout`` of opening, or
  of its previous response; trickling bytes does not extend that. Otherwise it is aborted.
- at most ``limit`` connections are open. A new one beyond that makes room by aborting the
  oldest connection that is not being served (a prober's fresh connection sends its header
  within milliseconds, so it is the slow and idle ones that go); only when every connection is
  in a request is the new one refused.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import cast

from aiohttp import web

try:
    import resource
except ImportError:  # not on Linux/macOS: no descriptor limit to respect
    resource = None  # type: ignore[assignment]  # stands for the missing module; checked first

HEADER_TIMEOUT = "header_timeout"
EVICTED = "evicted"
REJECTED = "rejected"

Transport = asyncio.Transport
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def descriptor_limit() -> int | None:
    """The process's soft RLIMIT_NOFILE, or None when there is none."""
    if resource is None:
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY or soft < 0 else soft


def connection_limit(requested: int, fd_limit: int | None) -> int:
    """At most half the file descriptors: the broker, handlers and database need the rest."""
    if fd_limit is None:
        return max(1, requested)
    return max(1, min(requested, fd_limit // 2))


class ConnectionGuard:
    """Tracks the listener's open connections; each waits for its header under a deadline.

    ``_open`` maps a transport to its deadline timer, or to None while a request is being
    served; insertion order is the order of last activity, so the oldest waiting one is found
    first. ``_incoming`` counts sockets accepted whose connection is not made yet (that takes a
    loop iteration or two): counting them at once keeps a burst of accepts within the limit.
    """

    def __init__(self, header_timeout: float, limit: int, dropped: Callable[[str], None]) -> None:
        self.header_timeout = header_timeout
        self.limit = limit
        self._dropped = dropped
        self._open: dict[Transport, asyncio.TimerHandle | None] = {}
        self._incoming = 0

    def __len__(self) -> int:
        return len(self._open) + self._incoming

    def protocol_factory(
        self, make_protocol: Callable[[], asyncio.Protocol]
    ) -> Callable[[], asyncio.Protocol]:
        """Wrap aiohttp's protocol factory so every connection passes through the guard."""
        return lambda: _GuardedProtocol(self, make_protocol())

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """The header is complete once a handler runs: no deadline until the response is out."""
        transport = request.transport
        if transport is None:  # the client is gone already
            return await handler(request)
        self._serving(transport)
        try:
            return await handler(request)
        finally:
            self._waiting(transport)

    def reserve(self) -> None:
        """A socket was just accepted: count it, and make room for it if at the limit."""
        if len(self) >= self.limit:
            self._evict()
        self._incoming += 1

    def release(self) -> None:
        """An accepted socket that never became a connection."""
        self._incoming = max(0, self._incoming - 1)

    def admit(self, transport: Transport) -> bool:
        """Its connection is made: track it, or refuse it if every other one is being served."""
        self.release()
        if len(self) >= self.limit and not self._evict():
            transport.abort()
            self._dropped(REJECTED)
            return False
        self._open[transport] = self._arm(transport)
        return True

    def forget(self, transport: Transport) -> None:
        timer = self._open.pop(transport, None)
        if timer is not None:
            timer.cancel()

    def close_all(self) -> None:
        """On stop: abort whatever is still open (a client not reading its response, say)."""
        for transport in list(self._open):
            self.forget(transport)
            transport.abort()

    def _arm(self, transport: Transport) -> asyncio.TimerHandle:
        loop = asyncio.get_running_loop()
        return loop.call_later(self.header_timeout, self._drop, transport, HEADER_TIMEOUT)

    def _evict(self) -> bool:
        victim = next((t for t, timer in self._open.items() if timer is not None), None)
        if victim is not None:
            self._drop(victim, EVICTED)
        return victim is not None

    def _drop(self, transport: Transport, reason: str) -> None:
        self.forget(transport)
        transport.abort()
        self._dropped(reason)

    def _serving(self, transport: Transport) -> None:
        if transport in self._open:
            self.forget(transport)
            self._open[transport] = None

    def _waiting(self, transport: Transport) -> None:
        if transport in self._open and self._open[transport] is None:
            self._open[transport] = self._arm(transport)


class _GuardedProtocol(asyncio.Protocol):
    """Forwards to aiohttp's protocol once the guard has admitted the connection."""

    __slots__ = ("_admitted", "_guard", "_inner", "_transport")

    def __init__(self, guard: ConnectionGuard, inner: asyncio.Protocol) -> None:
        self._guard = guard
        self._inner = inner
        self._admitted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream protocol's transport is an asyncio.Transport (as aiohttp's protocol assumes);
        # once per connection, off the per-message path.
        stream = cast(Transport, transport)
        self._admitted = self._guard.admit(stream)
        if self._admitted:
            self._transport = stream
            self._inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._admitted:
            self._guard.forget(self._transport)
            self._inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()
