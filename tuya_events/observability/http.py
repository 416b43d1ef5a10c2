"""The operator's HTTP listener: ``/metrics``, ``/healthz``, ``/readyz``.

It often listens on all interfaces (the Helm chart does), so it is built to keep answering the
probes whatever else connects: connections are bounded in number and in how long they may take
to send a request header (observability/connections.py), header sizes are capped well below
aiohttp's defaults (Prometheus and kubelet send a few short headers), and it accepts on its
sockets itself, so running out of file descriptors is one log line per interval rather than a
traceback per try (observability/accepting.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypedDict

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from tuya_events.observability.accepting import Acceptor, FailureLog, bind
from tuya_events.observability.connections import (
    ConnectionGuard,
    connection_limit,
    descriptor_limit,
)
from tuya_events.observability.health import Health
from tuya_events.observability.metrics import Metrics

HEADER_TIMEOUT = 5.0
MAX_CONNECTIONS = 256
REFUSAL_LOG_INTERVAL = 10.0
# Room in the kernel for a burst of connections: beyond it their SYNs are dropped and clients
# (probes included) retry only after 1 s, 3 s, ... Queued ones cost no file descriptor.
BACKLOG = 512


class HeaderLimits(TypedDict):
    """aiohttp's request-parser limits (keyword arguments of its ``Server``)."""

    max_line_size: int
    max_field_size: int
    max_headers: int


# Per connection; with MAX_CONNECTIONS that bounds what slow clients can make us buffer.
HEADER_LIMITS: HeaderLimits = {"max_line_size": 4096, "max_field_size": 4096, "max_headers": 32}


def _status(ok_detail: tuple[bool, str]) -> web.Response:
    ok, detail = ok_detail
    return web.Response(status=200 if ok else 503, text=detail + "\n")


class HttpServer:
    def __init__(
        self,
        host: str,
        port: int,
        metrics: Metrics,
        health: Health,
        *,
        header_timeout: float = HEADER_TIMEOUT,
        max_connections: int = MAX_CONNECTIONS,
        refusal_log_interval: float = REFUSAL_LOG_INTERVAL,
    ) -> None:
        self.host = host
        self.port = port
        self.metrics = metrics
        self.health = health
        self.fd_limit = descriptor_limit()
        self.guard = ConnectionGuard(
            header_timeout,
            connection_limit(max_connections, self.fd_limit),
            lambda reason: metrics.http_connections_dropped.labels(reason).inc(),
        )
        self._failures = FailureLog(
            refusal_log_interval, metrics.http_accept_failures.inc, self._failure_details
        )
        self._runner: web.AppRunner | None = None
        self._acceptor: Acceptor | None = None
        self._route_sets: list[Callable[[web.Application], None]] = []

    def add_routes(self, register: Callable[[web.Application], None]) -> None:
        """More pages on this listener (the status page, say): ``register(app)`` adds their
        routes, and start-up/clean-up hooks, when the listener starts. Call before :meth:`start`."""
        self._route_sets.append(register)

    async def _metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(self.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, request: web.Request) -> web.Response:
        return _status(self.health.alive())

    async def _readyz(self, request: web.Request) -> web.Response:
        return _status(self.health.ready())

    def _failure_details(self) -> dict[str, Any]:
        return {"open_connections": len(self.guard), "fd_limit": self.fd_limit}

    async def start(self) -> None:
        sockets = await bind(self.host, self.port, BACKLOG)
        if self.port == 0:
            self.port = sockets[0].getsockname()[1]
        try:
            server = await self._set_up_runner()
        except BaseException:
            for sock in sockets:
                sock.close()
            raise
        self._acceptor = Acceptor(
            sockets, self.guard, self.guard.protocol_factory(server), self._failures
        )
        self._acceptor.start()
        self.metrics.http_connections.set_function(lambda: len(self.guard))

    async def _set_up_runner(self) -> web.Server:
        app = web.Application(middlewares=[self.guard.middleware])
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        for register in self._route_sets:
            register(app)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, **HEADER_LIMITS)
        await self._runner.setup()
        assert self._runner.server is not None  # set up just now
        return self._runner.server

    async def stop(self) -> None:
        if self._acceptor is not None:
            self._acceptor.stop()
            self._acceptor = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.guard.close_all()
