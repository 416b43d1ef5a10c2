"""The operator's HTTP listener: ``/metrics``, ``/healthz``, ``/readyz``."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from tuya_events.observability.health import Health
from tuya_events.observability.metrics import Metrics


def _status(ok_detail: tuple[bool, str]) -> web.Response:
    ok, detail = ok_detail
    return web.Response(status=200 if ok else 503, text=detail + "\n")


class HttpServer:
    def __init__(self, host: str, port: int, metrics: Metrics, health: Health) -> None:
        self.host = host
        self.port = port
        self.metrics = metrics
        self.health = health
        self._runner: web.AppRunner | None = None

    async def _metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(self.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, request: web.Request) -> web.Response:
        return _status(self.health.alive())

    async def _readyz(self, request: web.Request) -> web.Response:
        return _status(self.health.ready())

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        sockets = getattr(site, "_server", None)
        if self.port == 0 and sockets is not None and sockets.sockets:
            self.port = sockets.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
