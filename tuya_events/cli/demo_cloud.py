"""The demo's cloud: Tuya's OpenAPI for the simulator's virtual devices, on 127.0.0.1.

The demo has no Tuya account, yet the daemon asks the OpenAPI who a device is (its name, its
data points' units and scales). This server answers the way Tuya does -- tokens, the envelope,
1004 for a wrong key, 1010 for a bad token -- from the virtual devices themselves, so the names
and units the daemon shows are those of the values the simulator sends. Signatures are checked
with the package's own signer: this is a demo that must accept what the client sends, not a
test double that checks the client (that is ``tests/fake_tuya_openapi.py``).

It runs in the daemon's event loop, next to the devices whose state commands change (hand it to
``SimulatedSource(services=...)``). :meth:`DemoCloud.bind` takes the port before the loop runs,
so the URL can go into the settings first; connections wait in the backlog until :meth:`start`.

Like Tuya, details carry a ``local_key`` (random here): the daemon must drop it. Not verified
against Tuya: the code for a batch over ``max_batch`` ids (1109 here) and the paging parameters
of the listings (``size``/``last_row_key``, ``page_size``/``last_id``, up to 20).
"""

from __future__ import annotations

import hmac
import secrets
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from tuya_events.openapi.signing import SIGN_METHOD, is_token_call, sign_request
from tuya_events.transport.simulator import TuyaSimulator, VirtualDevice

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

MESSAGES = {
    1004: "sign invalid",
    1010: "token invalid",
    1012: "token status is invalid",
    1013: "request time is invalid",
    1100: "param is empty",
    1106: "permission deny",
    1108: "uri path invalid",
    1109: "param is illegal",
    2008: "command or value not support",
}
FAMILIES = (("/v1.0/iot-03/devices", "specification"), ("/v1.0/devices", "specifications"))
LIST_PAGE = 20  # the listings' default and largest page
CREATED = 1_704_067_200  # 2024-01-01: when the made-up devices were paired (+ a day each)


class Refused(Exception):
    """Answer Tuya's error ``code`` instead of a result."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


@dataclass
class _Token:
    access: str
    refresh: str
    expires_at: float  # monotonic
    replaced: bool = False


class DemoCloud:
    """Tuya's OpenAPI for ``simulator``'s devices, for one project (``access_id``/secret).

    Issuing a token replaces the previous one, as on Tuya: two clients sharing the key pair
    keep invalidating each other here too.
    """

    def __init__(
        self,
        simulator: TuyaSimulator,
        access_id: str,
        access_secret: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        legacy: bool = False,
        token_ttl: float = 7200,
        max_batch: int = 20,
        max_skew: float = 600,
    ) -> None:
        self.simulator = simulator
        self.access_id = access_id
        self._secret = access_secret
        self.host = host
        self.port = port
        self.legacy = legacy
        self.token_ttl = token_ttl
        self.max_batch = max_batch
        self.max_skew = max_skew
        self._tokens: dict[str, _Token] = {}
        self._refresh: dict[str, str] = {}
        self._local_keys: dict[str, str] = {}
        self._socket: socket.socket | None = None
        self._runner: web.AppRunner | None = None

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        if self._socket is None:
            raise RuntimeError("the demo cloud has no port yet: bind() or start() it")
        return f"http://{self.host}:{self.port}"

    def bind(self) -> str:
        """Take the port now (no loop needed) and return the base URL."""
        if self._socket is None:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.bind((self.host, self.port))
                sock.listen(128)
                sock.setblocking(False)
            except OSError:
                sock.close()
                raise
            self._socket = sock
            self.port = sock.getsockname()[1]
        return self.base_url

    async def start(self) -> str:
        """Serve (binding first if :meth:`bind` was not called); returns the base URL."""
        url = self.bind()
        if self._runner is None:
            runner = web.AppRunner(self._app(), access_log=None, shutdown_timeout=0.5)
            await runner.setup()
            assert self._socket is not None
            await web.SockSite(runner, self._socket).start()
            self._runner = runner
        return url

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()  # closes the listening socket too
            self._runner = None
        elif self._socket is not None:
            self._socket.close()
        self._socket = None

    def _app(self) -> web.Application:
        app = web.Application(middlewares=[self._gate])
        app.router.add_get("/v1.0/token", self._token)
        app.router.add_get("/v1.0/token/{refresh_token}", self._refresh_token)
        for prefix, specification in FAMILIES:
            iot_03 = "iot-03" in prefix
            app.router.add_get(
                prefix, self._batch_details_iot_03 if iot_03 else self._batch_details
            )
            app.router.add_get(prefix + "/status", self._batch_status)  # before /{device_id}
            app.router.add_get(prefix + "/{device_id}", self._details)
            app.router.add_get(prefix + "/{device_id}/status", self._device_status)
            app.router.add_get(prefix + "/{device_id}/" + specification, self._specification)
            app.router.add_post(prefix + "/{device_id}/commands", self._commands)
        app.router.add_get("/v1.0/iot-01/associated-users/devices", self._associated_devices)
        app.router.add_get("/v2.0/cloud/thing/device", self._thing_devices)
        return app

    # -- what every call passes -------------------------------------------------------------

    @web.middleware
    async def _gate(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Tuya's order: who is calling and the sign, the token, then the path and the call."""
        try:
            self._check(request, await request.read())
            return await handler(request)
        except Refused as refused:
            return _answer({"success": False, "code": refused.code, "msg": MESSAGES[refused.code]})
        except web.HTTPException as exc:
            if exc.status in (404, 405):
                return _answer({"success": False, "code": 1108, "msg": MESSAGES[1108]})
            raise

    def _check(self, request: web.Request, body: bytes) -> None:
        headers = request.headers
        t = headers.get("t", "")
        if headers.get("client_id") != self.access_id or headers.get("sign_method") != SIGN_METHOD:
            raise Refused(1004)
        if not t.isdigit() or abs(int(t) - time.time() * 1000) > self.max_skew * 1000:
            raise Refused(1013)
        token = "" if is_token_call(request.path) else headers.get("access_token", "")
        if not hmac.compare_digest(headers.get("sign", ""), self._sign(request, body, t, token)):
            raise Refused(1004)
        if is_token_call(request.path):
            return
        known = self._tokens.get(token)
        if known is None or known.replaced or time.monotonic() >= known.expires_at:
            raise Refused(1010)

    def _sign(self, request: web.Request, body: bytes, t: str, token: str) -> str:
        headers = request.headers
        names = [] if self.legacy else [n for n in headers.get("Signature-Headers", "").split(":")]
        return sign_request(
            client_id=self.access_id,
            secret=self._secret,
            method=request.method,
            path=request.path,
            query=list(request.query.items()),
            body=body or None,
            t=t,
            access_token=token,
            nonce="" if self.legacy else headers.get("nonce", ""),
            signature_headers={name: headers.get(name, "") for name in names if name},
            legacy=self.legacy,
            lang=None,
        ).sign

    # -- tokens -----------------------------------------------------------------------------

    async def _token(self, request: web.Request) -> web.Response:
        if request.query.get("grant_type") != "1":
            raise Refused(1100)
        return _result(self._issue())

    async def _refresh_token(self, request: web.Request) -> web.Response:
        if self._refresh.get(request.match_info["refresh_token"]) is None:
            raise Refused(1012)
        return _result(self._issue())

    def _issue(self) -> dict[str, Any]:
        for old in self._tokens.values():
            old.replaced = True
        token = _Token(
            secrets.token_hex(16), secrets.token_hex(16), time.monotonic() + self.token_ttl
        )
        self._tokens = {token.access: token}
        self._refresh = {token.refresh: token.access}
        ttl = self.token_ttl
        return {
            "access_token": token.access,
            "refresh_token": token.refresh,
            "expire_time": int(ttl) if float(ttl).is_integer() else ttl,
            "uid": "demo-uid",
        }

    # -- devices ----------------------------------------------------------------------------

    def _device(self, request: web.Request) -> VirtualDevice:
        device = self.simulator.device(request.match_info["device_id"])
        if device is None:
            raise Refused(1106)  # what Tuya answers for a device outside the project
        return device

    def _batch(self, request: web.Request) -> list[VirtualDevice]:
        """``device_ids=a,b``: the known ones, in the order asked (unknown ids are left out)."""
        ids = [part for part in request.query.get("device_ids", "").split(",") if part]
        if not ids:
            raise Refused(1100)
        if len(ids) > self.max_batch:
            raise Refused(1109)
        found = (self.simulator.device(device_id) for device_id in dict.fromkeys(ids))
        return [device for device in found if device is not None]

    def _local_key(self, device: VirtualDevice) -> str:
        return self._local_keys.setdefault(device.device_id, secrets.token_hex(8))

    def details(self, device: VirtualDevice) -> dict[str, Any]:
        """A device's details as ``GET .../devices/{id}`` answers them, secret and all."""
        product = device.product
        paired = CREATED + device.index * 86_400
        return {
            "id": device.device_id,
            "uuid": device.device_id[2:18],
            "name": device.name,
            "local_key": self._local_key(device),
            "category": product.category,
            "product_id": product.product_id,
            "product_name": product.product_name,
            "model": product.model,
            "online": device.online,
            "sub": False,
            "time_zone": "+01:00",
            "icon": f"smart/icon/demo_{product.kind}.png",
            "ip": f"203.0.113.{10 + device.index % 240}",
            "uid": "demo-uid",
            "owner_id": "demo-home",
            "lat": "",
            "lon": "",
            "active_time": paired + 600,
            "create_time": paired,
            "update_time": paired + 3600,
            "status": _status(device),
        }

    def thing(self, device: VirtualDevice) -> dict[str, Any]:
        """The same, as ``/v2.0/cloud/thing/device`` spells it (camelCase, like Tuya's v2.0)."""
        plain = self.details(device)
        return {
            "id": plain["id"],
            "uuid": plain["uuid"],
            "name": plain["name"],
            "customName": "",
            "localKey": plain["local_key"],
            "category": plain["category"],
            "productId": plain["product_id"],
            "productName": plain["product_name"],
            "model": plain["model"],
            "isOnline": plain["online"],
            "sub": plain["sub"],
            "timeZone": plain["time_zone"],
            "icon": plain["icon"],
            "ip": plain["ip"],
            "lat": plain["lat"],
            "lon": plain["lon"],
            "activeTime": plain["active_time"],
            "createTime": plain["create_time"],
            "updateTime": plain["update_time"],
        }

    async def _batch_details_iot_03(self, request: web.Request) -> web.Response:
        found = [self.details(device) for device in self._batch(request)]
        return _result({"list": found, "total": len(found), "has_more": False})

    async def _batch_details(self, request: web.Request) -> web.Response:
        found = [self.details(device) for device in self._batch(request)]
        return _result({"devices": found, "total": len(found)})

    async def _details(self, request: web.Request) -> web.Response:
        return _result(self.details(self._device(request)))

    async def _specification(self, request: web.Request) -> web.Response:
        return _result(self._device(request).product.specification())

    async def _device_status(self, request: web.Request) -> web.Response:
        return _result(_status(self._device(request)))

    async def _batch_status(self, request: web.Request) -> web.Response:
        return _result([{"id": d.device_id, "status": _status(d)} for d in self._batch(request)])

    async def _associated_devices(self, request: web.Request) -> web.Response:
        size = _page_size(request.query.get("size") or request.query.get("page_size"), 100)
        page, more = self._page(request.query.get("last_row_key"), size)
        return _result(
            {
                "devices": [self.details(device) for device in page],
                "has_more": more,
                "last_row_key": page[-1].device_id if page else "",
                "total": len(self.simulator.devices),
            }
        )

    async def _thing_devices(self, request: web.Request) -> web.Response:
        if not request.query.get("page_size"):
            raise Refused(1100)
        page, _ = self._page(request.query.get("last_id"), _page_size(request.query["page_size"]))
        return _result([self.thing(device) for device in page])

    def _page(self, after: str | None, size: int) -> tuple[list[VirtualDevice], bool]:
        """``size`` devices following the one with id ``after`` (from the first without one)."""
        devices = self.simulator.devices
        start = 0
        if after:
            ids = [device.device_id for device in devices]
            if after not in ids:
                raise Refused(1109)
            start = ids.index(after) + 1
        return devices[start : start + size], start + size < len(devices)

    async def _commands(self, request: web.Request) -> web.Response:
        """Set the values on the virtual device, which reports them as a real one would."""
        device = self._device(request)
        try:
            commands = orjson.loads(await request.read())["commands"]
            updates = {item["code"]: item["value"] for item in commands}
        except (orjson.JSONDecodeError, KeyError, TypeError):
            raise Refused(1109) from None
        if not updates:
            raise Refused(1100)
        functions = {entry["code"]: entry for entry in device.product.functions}
        for code, value in updates.items():
            if code not in functions or not _acceptable(functions[code], value):
                raise Refused(2008)
        self.simulator.apply(device, updates)
        return _result(True)


def _status(device: VirtualDevice) -> list[dict[str, Any]]:
    return [{"code": code, "value": value} for code, value in device.state.items()]


def _page_size(raw: str | None, largest: int = LIST_PAGE) -> int:
    if raw is None:
        return LIST_PAGE
    if not raw.isdigit() or int(raw) < 1:
        raise Refused(1109)
    return min(int(raw), largest)


def _acceptable(entry: dict[str, Any], value: Any) -> bool:
    """Whether ``value`` fits a function of the specification, as Tuya checks commands."""
    kind = entry["type"]
    values = orjson.loads(entry["values"])
    if kind == "Boolean":
        return isinstance(value, bool)
    if kind == "Enum":
        return isinstance(value, str) and value in values["range"]
    if kind == "Integer":
        return (
            isinstance(value, int)
            and not isinstance(value, bool)
            and values["min"] <= value <= values["max"]
        )
    return False


def _answer(fields: dict[str, Any]) -> web.Response:
    envelope = {**fields, "t": int(time.time() * 1000), "tid": uuid.uuid4().hex}
    return web.Response(body=orjson.dumps(envelope), content_type="application/json")


def _result(result: Any) -> web.Response:
    return _answer({"success": True, "result": result})
