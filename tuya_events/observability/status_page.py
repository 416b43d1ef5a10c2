"""The status page at ``/`` of the HTTP listener: what the daemon sees, for a person to look at.

For someone without Prometheus and Grafana (a first ``make demo``, a home install): the
connection, the flow of messages, the newest dead letters, the devices with their latest values.
Plain HTML, CSS and JavaScript shipped in the package (``static/``), no build step, no CDN; the
script polls ``status.json`` every few seconds. Read-only.

Who may look: on a loopback listener, anyone on this machine, provided the request names a
loopback host (a web page elsewhere cannot reach it through a DNS name rebound to 127.0.0.1);
beyond loopback only a request carrying the live tail's token (``tail.token``, else
``http.token``), as ``Authorization: Bearer <token>`` or as the password of HTTP Basic (so a
browser can ask for it); a token set is asked for on loopback too. Without a token the page is
not served beyond loopback at all. ``/metrics`` and the probes are not affected.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import time
from collections.abc import Callable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import orjson
from aiohttp import web
from pydantic import SecretStr

from tuya_events import __version__
from tuya_events.config.settings import Settings
from tuya_events.config.transport_security import is_loopback as loopback_address
from tuya_events.observability.counting import MessageCounts
from tuya_events.observability.metrics import Metrics
from tuya_events.observability.redact import MASK, REDACTOR, mask_url
from tuya_events.observability.status_state import (
    SAMPLE_SECONDS,
    ConnectionClock,
    DeadLetterSummary,
    DeadLetterView,
    DeviceState,
    FlowHistory,
    LatestValues,
    value_text,
)
from tuya_events.observability.tail import CREDENTIAL_KEY
from tuya_events.tuya.devices import Device

MAX_SHOWN_DEVICES = 500
REALM = "tuya-events"
ASSETS = {
    "/": ("status.html", "text/html"),
    "/status.css": ("status.css", "text/css"),
    "/status.js": ("status.js", "text/javascript"),
    "/favicon.svg": ("favicon.svg", "image/svg+xml"),
}
CHALLENGES = (f'Bearer realm="{REALM}"', f'Basic realm="{REALM}", charset="UTF-8"')
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class _Connection(Protocol):
    def connected(self) -> bool: ...


class _Flow(Protocol):
    @property
    def in_flight(self) -> int: ...


class _Devices(Protocol):
    @property
    def devices(self) -> Mapping[str, Device]: ...


class DaemonParts(Protocol):
    """What the page reads of the daemon (:class:`tuya_events.daemon.Daemon` has it all)."""

    @property
    def settings(self) -> Settings: ...

    @property
    def source(self) -> _Connection: ...

    @property
    def pipeline(self) -> _Flow: ...

    @property
    def catalogue(self) -> _Devices | None: ...

    @property
    def metrics(self) -> Metrics: ...


def is_loopback(host: str) -> bool:
    """Whether a listen address (or a request's host) stays on this machine: as the live tail
    decides it, and ``*.localhost`` names too (RFC 6761: they resolve to loopback)."""
    return loopback_address(host) or host.strip().rstrip(".").lower().endswith(".localhost")


def page_token(settings: Settings) -> SecretStr | None:
    """The live tail's token (``tail.token``, else ``http.token``): one token for both."""
    return settings.tail.token or settings.http.token


def _request_host(request: web.Request) -> str | None:
    """The host a request names, without its port; None when it names none (HTTP/1.0)."""
    header = request.headers.get("Host")
    if not header:
        return None
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class Access:
    """Who may see the page: see the module's docstring."""

    def __init__(self, token: str | None, loopback: bool) -> None:
        self._token = token.encode() if token else None
        self.loopback = loopback

    def refusal(self, request: web.Request) -> web.Response | None:
        """None when the request may see the page, else the answer that refuses it."""
        if self._token is not None:
            if self._presented(request.headers.get("Authorization", "")):
                return None
            response = web.Response(status=401, text="the status page needs its token\n")
            for challenge in CHALLENGES:  # Basic: so a browser asks for it
                response.headers.add("WWW-Authenticate", challenge)
            return response
        if not self.loopback:
            return web.Response(
                status=403,
                text="the status page is served beyond loopback only with a token "
                "(http.token or tail.token)\n",
            )
        host = _request_host(request)
        if host is not None and not is_loopback(host):
            return web.Response(status=403, text="the status page answers loopback names only\n")
        return None

    def _presented(self, header: str) -> bool:
        assert self._token is not None
        scheme, _, credentials = header.strip().partition(" ")
        credentials = credentials.strip()
        if scheme.lower() == "bearer":
            return hmac.compare_digest(credentials.encode(), self._token)
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(credentials, validate=True)
            except (binascii.Error, ValueError):
                return False
            _, _, password = decoded.partition(b":")
            return hmac.compare_digest(password, self._token)
        return False


def _asset(name: str) -> bytes:
    return (
        resources.files("tuya_events.observability").joinpath("static").joinpath(name).read_bytes()
    )


class StatusPage:
    """The page's routes and the state they show; :meth:`register` adds them to the listener."""

    def __init__(
        self,
        settings: Settings,
        *,
        connected: Callable[[], bool],
        in_flight: Callable[[], int],
        devices: Callable[[], Mapping[str, Device]],
        counts: MessageCounts,
        latest: LatestValues,
        dead_letters: DeadLetterView,
        access: Access,
        sample_seconds: float = SAMPLE_SECONDS,
    ) -> None:
        tuya = settings.tuya
        self._connection = {
            "broker": mask_url(tuya.resolved_pulsar_url),
            "topic": tuya.topic,
            "subscription": tuya.subscription,
        }
        self.clock = ConnectionClock(connected)
        self._in_flight = in_flight
        self._devices = devices
        self._counts = counts
        self.latest = latest
        self.dead_letters = dead_letters
        self.access = access
        self.flow = FlowHistory(lambda: sum(counts.received.values()))
        self.sample_seconds = sample_seconds
        self._assets = {path: (_asset(name), kind) for path, (name, kind) in ASSETS.items()}
        self._sampler: asyncio.Task[None] | None = None

    @classmethod
    def of(cls, daemon: DaemonParts, latest: LatestValues) -> StatusPage:
        """The page of a daemon: its settings, source, pipeline, catalogue and counts."""
        settings = daemon.settings
        host, _ = settings.http.listen
        secret = page_token(settings)
        token = secret.get_secret_value() if secret is not None else None
        if token is not None:
            REDACTOR.add([token])  # masked in every log line, as the other secrets

        def devices() -> Mapping[str, Device]:
            catalogue = daemon.catalogue
            return catalogue.devices if catalogue is not None else {}

        return cls(
            settings,
            connected=daemon.source.connected,
            in_flight=lambda: daemon.pipeline.in_flight,
            devices=devices,
            counts=daemon.metrics.counts,
            latest=latest,
            dead_letters=DeadLetterView(Path(settings.dead_letter.path)),
            access=Access(token, is_loopback(host)),
        )

    def register(self, app: web.Application) -> None:
        for path in self._assets:
            app.router.add_get(path, self._serve_asset)
        app.router.add_get("/status.json", self._serve_state)
        app.on_startup.append(self._start_sampling)
        app.on_cleanup.append(self._stop_sampling)

    # -- serving --------------------------------------------------------------------------------

    async def _serve_asset(self, request: web.Request) -> web.Response:
        refusal = self.access.refusal(request)
        if refusal is not None:
            return refusal
        body, kind = self._assets[request.path]
        return web.Response(body=body, content_type=kind, charset="utf-8", headers=SECURITY_HEADERS)

    async def _serve_state(self, request: web.Request) -> web.Response:
        refusal = self.access.refusal(request)
        if refusal is not None:
            return refusal
        state = self.snapshot(await self.dead_letters.summary())
        return web.Response(
            body=orjson.dumps(state), content_type="application/json", headers=SECURITY_HEADERS
        )

    # -- sampling -------------------------------------------------------------------------------

    async def _start_sampling(self, app: web.Application) -> None:
        self._sampler = asyncio.get_running_loop().create_task(self._sample())

    async def _stop_sampling(self, app: web.Application) -> None:
        if self._sampler is not None:
            self._sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sampler
            self._sampler = None

    async def _sample(self) -> None:
        while True:
            self.flow.sample()
            self.clock.check()
            await asyncio.sleep(self.sample_seconds)

    # -- the state ------------------------------------------------------------------------------

    def snapshot(self, dead: DeadLetterSummary) -> dict[str, Any]:
        """Everything the page shows, as JSON-ready data; never a secret or a ``local_key``
        (devices come whitelisted from the catalogue, values from the events)."""
        connected = self.clock.check()
        since = self.clock.since
        catalogue = self._devices()
        counts = self._counts
        rates = self.flow.series()
        return {
            "version": __version__,
            "now_ms": round(time.time() * 1000),
            "connection": {
                **self._connection,
                "connected": connected,
                "since_ms": round(since * 1000) if since is not None else None,
            },
            "flow": {
                "received": sum(counts.received.values()),
                "acked": counts.acked,
                "in_flight": self._in_flight(),
                "rate": rates[-1][1] if rates else None,
                "rates": rates,
                "sample_seconds": self.sample_seconds,
            },
            "dead_letters": {
                "count": dead.count,
                "error": dead.error,
                "newest": [
                    {**record, "device_name": _device_name(catalogue, record.get("device_id"))}
                    for record in dead.newest
                ],
            },
            **self._device_list(catalogue),
        }

    def _device_list(self, catalogue: Mapping[str, Device]) -> dict[str, Any]:
        seen = self.latest.devices
        ids = list(dict.fromkeys([*catalogue, *seen]))
        rows = [_device_row(key, catalogue.get(key), seen.get(key)) for key in ids]
        rows.sort(key=lambda row: (row["name"] or "~", row["id"]))
        return {"devices": rows[:MAX_SHOWN_DEVICES], "devices_total": len(rows)}


def _device_name(catalogue: Mapping[str, Device], device_id: Any) -> str | None:
    device = catalogue.get(device_id) if isinstance(device_id, str) else None
    return device.name if device is not None else None


def _device_row(device_id: str, device: Device | None, state: DeviceState | None) -> dict[str, Any]:
    online = state.online if state is not None and state.online is not None else None
    if online is None and device is not None:
        online = device.online
    values = []
    if state is not None:
        # In the specification's order, where there is one: a device reads the same each time.
        order = {code: index for index, code in enumerate(device.points)} if device else {}
        items = sorted(state.values.items(), key=lambda pair: (order.get(pair[0], len(order)),))
        for code, item in items:
            point = device.point(code, item.dp_id) if device is not None else None
            point = point or item.point
            # A credential-like data point (a lock's one-time code, say) is never shown.
            text = MASK if CREDENTIAL_KEY.search(code) else REDACTOR(value_text(item, point))
            name = point.name if point is not None else None
            values.append({"code": code, "name": name, "text": text, "t_ms": item.t_ms})
    return {
        "id": device_id,
        "name": device.name if device is not None else None,
        "category": device.category if device is not None else None,
        "product": device.product_name if device is not None else None,
        "online": online,
        "reported_ms": state.reported_ms if state is not None else None,
        "values": values,
    }
