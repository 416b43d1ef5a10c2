"""The live tail: each settled message shown to whoever watches, without slowing the pipeline.

``GET /tail`` on the HTTP listener is a server-sent-events stream of the messages the daemon
settles: the event as handlers saw it (decoded, enriched), which handlers' rules took it and
which did not, whether it was dead-lettered; secrets masked. ``tuya-events tail`` reads it.

What keeps it from slowing the pipeline:

- The pipeline's tap is set only while someone watches. Per message it then costs, per viewer,
  the viewer's filter and an append to that viewer's bounded buffer; nothing is rendered,
  written or awaited on the pipeline's path.
- A full buffer takes nothing more: what does not fit is only counted (no allocation, nothing
  kept), and the viewer is told how many it missed at the place of the gap, so a gap is never
  silent and a stuck viewer costs the pipeline a comparison and an increment per message.
- Rendering (JSON, secrets masked) runs in the viewers' own tasks, all of them together at most
  :data:`RENDER_SHARE` of the time; what a viewer cannot be sent within that waits in its buffer.

What keeps it from starving the listener's probes: a viewer holds one of the listener's
connections for as long as it watches (the connection guard never evicts one being served), so
at most ``tail.max_viewers`` watch at once, never more than half the listener's connections; a
viewer whose connection takes no byte for ``tail.stall_timeout`` is disconnected; and when the
listener stops, every stream is ended, or aborted if its viewer does not read the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import re
import socket
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from aiohttp import web
from pydantic import ValidationError

from tuya_events.config.errors import ConfigError, validation_problems
from tuya_events.config.secrets import secret_values
from tuya_events.config.settings import Settings
from tuya_events.config.transport_security import is_loopback
from tuya_events.delivery import Delivery
from tuya_events.matching import Predicate, compile_match
from tuya_events.observability.http import HttpServer
from tuya_events.observability.logging import get_logger
from tuya_events.observability.redact import MASK, REDACTOR
from tuya_events.tuya.events import Event

log = get_logger("tuya_events.tail")

PATH = "/tail"
HEARTBEAT = 15.0  # a comment line this often: proxies keep the stream, a gone viewer shows
RENDER_SHARE = 0.05  # of the event loop's time, for all viewers together (benchmarks/README.md)
BATCH = 50  # messages rendered per turn: a few milliseconds of the loop at most
CLOSE_GRACE = 1.0  # seconds a viewer has to take the end of its stream when the daemon stops
# The kernel's send buffer of a viewer's socket (autotuned, it grows to megabytes): messages
# waiting there are out of the viewer's count, so it is kept small enough for the count to mean
# something, and large enough for a remote terminal.
SEND_BUFFER = 128 << 10
# Keys of a decrypted document whose values are credentials (a device's local key, a token a
# vendor adds): masked wherever they are, on top of the configured secrets' values.
CREDENTIAL_KEY = re.compile(r"local_?key|secret|passw|token", re.IGNORECASE)

Tap = Callable[[Event | None, Delivery, bool], None]


class WatchedRoute(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def matches(self) -> Callable[[Event], bool]: ...


class Watched(Protocol):
    """What the tail needs of the pipeline: its routes now, and a tap to set and unset."""

    @property
    def routes(self) -> Sequence[WatchedRoute]: ...

    def set_tap(self, tap: Tap | None) -> None: ...


@dataclass(frozen=True, slots=True)
class Access:
    """Who may watch: ``refusal`` says why nobody may (empty: the tail is on); with a
    ``token``, only requests bearing it."""

    refusal: str = ""
    token: bytes | None = None


def tail_access(settings: Settings) -> Access:
    """The tail is on by default on a loopback listener; beyond loopback only with a token
    (``tail.token``, else the listener's ``http.token``).

    A listener beyond loopback without a token leaves the tail off (the Helm chart listens on
    all interfaces: an upgrade must not fail for it), unless ``tail.enabled: true`` is written
    out, which then is a configuration error.
    """
    tail = settings.tail
    host = settings.http.listen[0]
    if not tail.enabled:
        return Access("the tail is off (tail.enabled: false)")
    secret = tail.token or getattr(settings.http, "token", None)  # the listener's own token
    if secret is not None:
        token = secret.get_secret_value()
        REDACTOR.add([token])  # masked in every log line and failure, as the other secrets
        return Access(token=token.encode())
    if is_loopback(host):
        return Access()
    if "enabled" in tail.model_fields_set:
        raise ConfigError(
            [
                (
                    "tail.token",
                    f"http.listen ({host}) is beyond loopback: the tail needs a token "
                    "(tail.token or tail.token_file), or tail.enabled: false",
                )
            ]
        )
    return Access(
        f"the tail is off: http.listen ({host}) is beyond loopback and tail.token is not set"
    )


class _Seen:
    """One settled message, shared by the buffers of every viewer it is for; rendered once."""

    __slots__ = ("dead_lettered", "delivery", "event", "rendered", "routes")

    def __init__(
        self,
        event: Event | None,
        delivery: Delivery,
        dead_lettered: bool,
        routes: Sequence[WatchedRoute],
    ) -> None:
        self.event = event
        self.delivery = delivery
        self.dead_lettered = dead_lettered
        self.routes = routes
        self.rendered: bytes | None = None


class _Gap:
    """Where a viewer's buffer was full: how many messages did not fit, in its queue's order."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0


class _Viewer:
    """One watcher: its filter, its bounded buffer and what it missed.

    ``queue`` holds at most ``size`` messages, and after them at most one :class:`_Gap` (the
    ``gap`` still counting); ``missed`` is what the gaps in the queue count, not told yet.
    """

    __slots__ = (
        "closing",
        "done",
        "gap",
        "matches",
        "missed",
        "missed_total",
        "queue",
        "size",
        "transport",
        "waiter",
    )

    def __init__(
        self, matches: Predicate | None, size: int, transport: asyncio.Transport | None
    ) -> None:
        self.matches = matches
        self.size = size
        self.queue: deque[_Seen | _Gap] = deque()
        self.gap: _Gap | None = None
        self.missed = 0  # in the gaps of the queue, not told yet
        self.missed_total = 0  # told
        self.waiter: asyncio.Future[None] | None = None
        self.closing = False
        self.transport = transport
        self.done = asyncio.get_running_loop().create_future()

    def wake(self) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


def _masked(value: Any) -> Any:
    """``value`` with every credential-named key's value masked, at any depth. Recursion is
    bounded: the codec refuses documents nested deeper than 64 levels."""
    if type(value) is dict:
        return {
            key: MASK
            if isinstance(key, str) and item not in (None, "") and CREDENTIAL_KEY.search(key)
            else _masked(item)
            for key, item in value.items()
        }
    if type(value) is list:
        return [_masked(item) for item in value]
    return value


def _sse(kind: str, record: dict[str, Any]) -> bytes:
    data = REDACTOR(orjson.dumps(record).decode())
    return f"event: {kind}\ndata: {data}\n\n".encode()


def _delivery(delivery: Delivery) -> dict[str, Any]:
    return {
        "message_id": delivery.message_id,
        "topic": delivery.topic,
        "partition": delivery.partition,
        "publish_time_ms": delivery.publish_time_ms,
        "redelivery_count": delivery.redelivery_count,
    }


def _render(seen: _Seen) -> bytes:
    """The message as one SSE event, secrets masked (its JSON: docs/tail-and-test-routes.md)."""
    event = seen.event
    if event is None:
        record = {"type": "undecodable", "dead_lettered": seen.dead_lettered}
        record["delivery"] = _delivery(seen.delivery)
        return _sse("undecodable", record)
    ran: list[str] = []
    not_matched: list[str] = []
    for route in seen.routes:
        try:
            matched = route.matches(event)
        except Exception:  # the pipeline dead-lettered it for the same reason
            matched = False
        (ran if matched else not_matched).append(route.name)
    record = {
        "type": "event",
        "handlers": {"ran": ran, "not_matched": not_matched},
        "dead_lettered": seen.dead_lettered,
        "delivery": _delivery(seen.delivery),
    }
    try:
        record["event"] = _masked(event.as_dict())
        return _sse("event", record)
    except (TypeError, ValueError, RecursionError) as exc:  # a document orjson cannot encode
        record["event"] = {"kind": event.kind, "device_id": event.device_id}
        record["error"] = f"the event cannot be shown: {type(exc).__name__}"
        return _sse("event", record)


PING = b": ping\n\n"


class LiveTail:
    """The viewers of one daemon, its tap on the pipeline while any watches, and ``/tail``."""

    def __init__(
        self,
        watched: Watched,
        access: Access,
        buffer: int = 1000,
        max_viewers: int = 4,
        stall_timeout: float = 60.0,
        heartbeat: float = HEARTBEAT,
    ) -> None:
        self._watched = watched
        self.access = access
        self.buffer = buffer
        self.max_viewers = max_viewers
        self.stall_timeout = stall_timeout
        self.heartbeat = heartbeat
        self._viewers: list[_Viewer] = []
        self._free_at = 0.0  # the render budget: when the viewers may render again
        self._closing = False

    @classmethod
    def from_settings(cls, settings: Settings, watched: Watched) -> LiveTail:
        """The tail as ``tail:`` says; every secret of ``settings`` is masked in what it shows
        (``run`` registers them too; an embedding that does not still gets them masked)."""
        REDACTOR.add(secret_values(settings))
        tail = settings.tail
        return cls(
            watched, tail_access(settings), tail.buffer, tail.max_viewers, tail.stall_timeout
        )

    def serve_on(self, http: HttpServer) -> None:
        """Serve ``/tail`` on the daemon's listener; at most half its connections may watch.
        Call before the listener starts."""
        self.max_viewers = max(1, min(self.max_viewers, http.guard.limit // 2))
        http.add_routes(self._register)

    def _register(self, app: web.Application) -> None:
        app.router.add_get(PATH, self.stream, allow_head=False)  # HEAD would hold a slot
        app.on_shutdown.append(self._on_shutdown)  # before aiohttp waits for handlers to end

    @property
    def viewers(self) -> int:
        return len(self._viewers)

    def missed(self) -> list[int]:
        """What each viewer has missed so far, in the order they came."""
        return [viewer.missed_total + viewer.missed for viewer in self._viewers]

    # -- the pipeline's side ------------------------------------------------------------------

    def _tap(self, event: Event | None, delivery: Delivery, dead_lettered: bool) -> None:
        seen = None
        for viewer in self._viewers:
            matches = viewer.matches
            if matches is not None and (event is None or not matches(event)):
                continue
            queue = viewer.queue
            if len(queue) >= viewer.size:
                gap = viewer.gap
                if gap is None:
                    gap = viewer.gap = _Gap()
                    queue.append(gap)
                gap.count += 1
                viewer.missed += 1
                continue
            viewer.gap = None
            if seen is None:
                seen = _Seen(event, delivery, dead_lettered, self._watched.routes)
            queue.append(seen)
            if viewer.waiter is not None:
                viewer.wake()

    def _attach(self, viewer: _Viewer) -> None:
        self._viewers.append(viewer)
        if len(self._viewers) == 1:
            self._watched.set_tap(self._tap)

    def _detach(self, viewer: _Viewer) -> None:
        if viewer in self._viewers:
            self._viewers.remove(viewer)
        if not self._viewers:
            self._watched.set_tap(None)
        if not viewer.done.done():
            viewer.done.set_result(None)

    # -- the viewer's side --------------------------------------------------------------------

    def _authorized(self, request: web.Request) -> bool:
        token = self.access.token
        if token is None:
            return True
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token)

    def _refusal(self, request: web.Request) -> web.Response | None:
        if self.access.refusal:
            return web.Response(status=403, text=self.access.refusal + "\n")
        if not self._authorized(request):
            return web.Response(
                status=401,
                text="the tail needs its bearer token (Authorization: Bearer ...)\n",
                headers={"WWW-Authenticate": 'Bearer realm="tuya-events tail"'},
            )
        if self._closing:
            return web.Response(status=503, text="the daemon is stopping\n")
        if len(self._viewers) >= self.max_viewers:
            return web.Response(
                status=503,
                text=f"{len(self._viewers)} viewers already watch (tail.max_viewers)\n",
                headers={"Retry-After": "10"},
            )
        return None

    def _filter(self, request: web.Request) -> Predicate | web.Response | None:
        """The viewer's ``match`` rules (JSON in the query), compiled as a handler's are."""
        text = request.query.get("match")
        if not text:
            return None
        try:
            rules = orjson.loads(text)
            if not isinstance(rules, (dict, list)):
                raise ValueError("the rules must be a mapping or a list of mappings")
            return compile_match(rules)
        except ValidationError as error:
            problems = validation_problems(error, ("match",))
            lines = "\n".join(f"{where}: {problem}" for where, problem in problems)
            return web.Response(status=400, text=lines + "\n")
        except ValueError as exc:  # orjson's JSONDecodeError is a ValueError
            return web.Response(status=400, text=f"match: {exc}\n")

    async def stream(self, request: web.Request) -> web.StreamResponse:
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        matches = self._filter(request)
        if isinstance(matches, web.Response):
            return matches
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",  # nginx would hold the stream back
            }
        )
        response.force_close()  # the connection ends with the stream
        await response.prepare(request)
        transport = request.transport
        _limit_send_buffer(transport)
        viewer = _Viewer(matches, self.buffer, transport)
        self._attach(viewer)
        try:
            ready = {
                "type": "ready",
                "buffer": self.buffer,
                "handlers": [route.name for route in self._watched.routes],
                "filtered": matches is not None,
            }
            await self._write(response, _sse("ready", ready))
            await self._pump(response, viewer)
        except TimeoutError:
            log.warning(
                "tail viewer disconnected: its connection took nothing",
                stall_timeout=self.stall_timeout,
                missed=viewer.missed_total + viewer.missed,
            )
            _abort(viewer)
        except (ConnectionError, OSError):
            pass  # the viewer left
        finally:
            self._detach(viewer)
        return response

    async def _pump(self, response: web.StreamResponse, viewer: _Viewer) -> None:
        loop = asyncio.get_running_loop()
        while not viewer.closing:
            if not viewer.queue:
                waiter = viewer.waiter = loop.create_future()
                try:
                    await asyncio.wait_for(waiter, self.heartbeat)
                except TimeoutError:
                    viewer.waiter = None
                    await self._write(response, PING)
                    continue
                if viewer.closing:
                    break
            await self._within_budget(loop)
            started = time.perf_counter()
            chunk = self._take(viewer)
            spent = time.perf_counter() - started
            self._free_at = max(self._free_at, loop.time()) + spent * (1 / RENDER_SHARE - 1)
            await self._write(response, chunk)
        end = {"type": "end", "reason": "the daemon is stopping"}
        await self._write(response, self._take(viewer) + _sse("end", end))

    async def _within_budget(self, loop: asyncio.AbstractEventLoop) -> None:
        wait = self._free_at - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)

    def _take(self, viewer: _Viewer) -> bytes:
        """Up to :data:`BATCH` messages of the queue, a gap said where it is."""
        parts = []
        queue = viewer.queue
        for _ in range(min(BATCH, len(queue))):
            seen = queue.popleft()
            if type(seen) is _Gap:
                if seen is viewer.gap:  # nothing came after it yet: it counts no more now
                    viewer.gap = None
                viewer.missed -= seen.count
                viewer.missed_total += seen.count
                notice = {"type": "missed", "missed": seen.count, "total": viewer.missed_total}
                parts.append(_sse("missed", notice))
                continue
            assert type(seen) is _Seen
            rendered = seen.rendered
            if rendered is None:
                rendered = seen.rendered = _render(seen)
            parts.append(rendered)
        return b"".join(parts)

    async def _write(self, response: web.StreamResponse, chunk: bytes) -> None:
        """Write, or raise TimeoutError when the connection took nothing for the timeout."""
        await asyncio.wait_for(response.write(chunk), self.stall_timeout)

    async def _on_shutdown(self, app: web.Application) -> None:
        await self.close()

    async def close(self) -> None:
        """End every stream: each viewer gets what is buffered and the end, or is aborted
        after :data:`CLOSE_GRACE` (aiohttp would wait a minute for a stream that never ends)."""
        self._closing = True
        viewers = list(self._viewers)
        for viewer in viewers:
            viewer.closing = True
            viewer.wake()
        if not viewers:
            return
        await asyncio.wait([viewer.done for viewer in viewers], timeout=CLOSE_GRACE)
        for viewer in viewers:
            if not viewer.done.done():
                _abort(viewer)


def _limit_send_buffer(transport: asyncio.Transport | None) -> None:
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is not None:
        with contextlib.suppress(OSError):  # not a TCP socket: nothing to bound
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)


def _abort(viewer: _Viewer) -> None:
    if viewer.transport is not None:
        viewer.transport.abort()
