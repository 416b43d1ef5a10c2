"""A fake Tuya OpenAPI for the tests and the benchmark: aiohttp on 127.0.0.1, in its own thread
(so it outlives each test's ``asyncio.run`` and serves CLI subprocesses) or, with ``python -m``,
its own process.

It checks every request the way the cloud does, with its own code written from the formula in
the shared protocol notes (section 4), never calling the daemon's signer:

- ``client_id`` is the project's, ``sign_method`` is HMAC-SHA256, ``t`` is within
  ``max_skew`` of its clock (else 1013), and ``sign`` matches the recomputed one (else 1004);
  the current scheme by default, the legacy one (``client_id [+ access_token] + t``) when built
  with ``legacy=True``;
- business calls carry a token it issued: an expired one gets 1010, an unknown or replaced one
  1011. Tokens live ``token_ttl`` seconds; issuing a token replaces the previous one, as Tuya does
  when two processes share a key pair;
- device commands past ``command_limit`` within one second get 1110. The window is one second
  less ``jitter_tolerance`` (50 ms): requests spaced exactly 250 ms apart by the client arrive
  with a few ms of scheduling noise, which a real per-second counter does not resolve either.

It records every request with the answer it gave, keeps the state that commands set per device
(``GET .../status`` reads it back), and can be scripted to answer a code (1106, 1111, 28841105,
...) or an HTTP status for the next requests to a path.

It also knows devices (the catalogue's calls): ``add_device`` puts a record in ``devices`` as
Tuya returns it (``local_key`` and ``ip`` included, so a test can prove they are dropped) and a
specification in ``specifications``. Served for both families (``iot-03``, ``devices``): batch
details (``GET /v1.0/iot-03/devices?device_ids=`` answering ``{"list": ...}``, ``GET
/v1.0/devices?device_ids=`` answering ``{"devices": ...}``), batch status, the specification
(``.../specification`` on iot-03, ``.../specifications`` on devices); ids it does not know are
left out, more than ``batch_limit`` ids get 1100 (Tuya documents the limit of 20, not the code it
answers past it). The listings ``GET /v1.0/iot-01/associated-users/devices`` (``size``,
``last_row_key``, ``has_more``) and ``GET /v2.0/cloud/thing/device`` (``page_size`` <= 20,
``last_id``, a bare list in camelCase) page through ``devices``. A family in
``denied_families`` answers 1106 to every device call of that family.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import secrets
import signal
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.support.servers import ThreadedAiohttpServer

TOKEN_PATH = "/v1.0/token"
PUSH_PATH = "/v1.0/iot-03/messages/app-notifications/actions/push"
DEVICE_PREFIXES = ("/v1.0/iot-03/devices/", "/v1.0/devices/")
FAMILY_ROOTS = {"/v1.0/iot-03/devices": "iot-03", "/v1.0/devices": "devices"}
SPECIFICATION_ACTIONS = {"iot-03": "specification", "devices": "specifications"}
ASSOCIATED_USERS_PATH = "/v1.0/iot-01/associated-users/devices"
PROJECT_THINGS_PATH = "/v2.0/cloud/thing/device"
THING_PAGE_LIMIT = 20

MESSAGES = {
    1004: "sign invalid",
    1010: "token invalid",  # Tuya's own wording for an expired token
    1011: "token invalid",
    1012: "token status is invalid",
    1013: "request time is invalid",
    1100: "param is empty",
    1106: "permission deny",
    1108: "uri path invalid",
    1110: "concurrent request over limit",
    1111: "system busy",
    28841002: "No permissions. Your subscription to cloud development plan has expired.",
    28841004: "No permissions. The API call quota of this cloud project is used up.",
    28841105: "No permissions. This API is not subscribed.",
}


def expected_sign(
    secret: str,
    client_id: str,
    access_token: str,
    t: str,
    nonce: str,
    method: str,
    body: bytes,
    signed_header_names: list[str],
    headers: Any,
    path: str,
    query: list[tuple[str, str]],
) -> str:
    """The current scheme, computed here independently of the client."""
    digest = hashlib.sha256(body).hexdigest()
    block = "".join(name + ":" + headers.get(name, "") + "\n" for name in signed_header_names)
    url = path
    if query:
        ordered = sorted(query, key=lambda pair: pair[0])
        url += "?" + "&".join(key + "=" + value for key, value in ordered)
    text = client_id + access_token + t + nonce + method + "\n" + digest + "\n" + block + "\n" + url
    return hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest().upper()


def expected_legacy_sign(secret: str, client_id: str, access_token: str, t: str) -> str:
    text = client_id + access_token + t
    return hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest().upper()


def data_point(code: str, type: str, dp_id: int | None = None, **values: Any) -> dict[str, Any]:
    """One specification entry as Tuya sends it: ``values`` is JSON *in a string*."""
    entry: dict[str, Any] = {"code": code, "type": type, "values": json.dumps(values)}
    if dp_id is not None:
        entry["dp_id"] = dp_id
    return entry


@dataclass
class Received:
    """One request and the answer it got (``code`` None: success)."""

    at: float  # time.monotonic() on arrival
    method: str
    path: str
    query: list[tuple[str, str]]
    headers: dict[str, str]
    body: bytes
    code: int | None
    http_status: int = 200

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    @property
    def is_command(self) -> bool:
        return self.method == "POST" and self.path.endswith("/commands")


@dataclass
class Scripted:
    code: int | None
    times: int | None = 1
    path: str | None = None  # a substring of the path; None: any business call
    http_status: int = 200
    delay: float = 0.0


@dataclass
class _Token:
    access: str
    refresh: str
    expires_at: float
    replaced: bool = False


@dataclass
class FakeTuyaOpenApi(ThreadedAiohttpServer):
    thread_name = "fake-tuya-openapi"

    access_id: str
    access_secret: str
    legacy: bool = False
    token_ttl: float = 7200
    command_limit: int = 4
    jitter_tolerance: float = 0.05
    max_skew: float = 600.0  # seconds between the request's t and this server's clock
    clock_offset: float = 0.0  # seconds added to this server's clock (a wrong clock)
    linked_devices: set[str] | None = None  # None: every device id is linked
    delay: float = 0.0
    port: int = 0
    received: list[Received] = field(default_factory=list)
    scripted: list[Scripted] = field(default_factory=list)
    state: dict[str, dict[str, Any]] = field(default_factory=dict)
    devices: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> details record
    specifications: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> answer
    denied_families: set[str] = field(default_factory=set)  # "iot-03" / "devices": 1106
    batch_limit: int = 20
    batch_limit_code: int = 1100

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[str, _Token] = {}
        self._refresh: dict[str, str] = {}
        self._command_times: deque[float] = deque()

    # -- control, from the test's thread ---------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def answer(self, code: int | None, times: int | None = 1, **details: Any) -> None:
        """Answer ``code`` (or ``http_status`` when code is None) to the next matching calls."""
        with self._lock:
            self.scripted.append(Scripted(code, times, **details))

    def add_device(
        self,
        device_id: str,
        *,
        name: str | None = None,
        product_id: str = "fakeproduct0001",
        product_name: str = "Fake product",
        category: str = "cz",
        online: bool = True,
        status: dict[str, Any] | None = None,
        status_spec: list[dict[str, Any]] | None = None,
        functions: list[dict[str, Any]] | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """A device of the project: its details record (with a ``local_key``), its current
        ``status`` (code -> value, what status calls read), and its specification. A spec entry
        whose ``values`` is a dict is sent as a JSON string, as Tuya does."""
        now = int(time.time())
        record: dict[str, Any] = {
            "id": device_id,
            "name": name if name is not None else f"Device {device_id}",
            "product_id": product_id,
            "product_name": product_name,
            "category": category,
            "model": "FK-1",
            "online": online,
            "sub": False,
            "time_zone": "+01:00",
            "icon": "smart/icon/fake.png",
            "active_time": now - 86400,
            "create_time": now - 86400 * 30,
            "update_time": now,
            "local_key": secrets.token_hex(8),
            "ip": "203.0.113.7",
            "uid": "fakeuid0001",
            "owner_id": "fakehome01",
            "uuid": secrets.token_hex(8),
            "lat": "48.85",
            "lon": "2.35",
            **fields,
        }
        specification = {
            "category": category,
            "functions": [_as_tuya_entry(entry) for entry in functions or []],
            "status": [_as_tuya_entry(entry) for entry in status_spec or []],
        }
        with self._lock:
            self.devices[device_id] = record
            self.specifications[device_id] = specification
            self.state.setdefault(device_id, {}).update(status or {})
        return record

    def expire_tokens(self) -> None:
        """Every token issued so far expires now (a client that trusts its clock gets 1010)."""
        with self._lock:
            for token in self._tokens.values():
                token.expires_at = min(token.expires_at, time.monotonic())

    def issue_token(self) -> str:
        """A token for someone else using the same key pair: the current one stops working."""
        with self._lock:
            return self._issue().access

    def requests(self, path_part: str = "", code: Any = ...) -> list[Received]:
        with self._lock:
            found = [r for r in self.received if path_part in r.path]
        if code is not ...:
            found = [r for r in found if r.code == code]
        return found

    def commands(self) -> list[Received]:
        """Commands that were accepted, in arrival order."""
        with self._lock:
            return [r for r in self.received if r.is_command and r.code is None]

    def codes(self) -> list[int | None]:
        with self._lock:
            return [r.code for r in self.received]

    def clear(self) -> None:
        with self._lock:
            self.received.clear()

    # -- the server, in its own thread -------------------------------------------------------

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/_report", self._report)
        app.router.add_route("*", "/{tail:.*}", self._receive)
        return app

    def _now_ms(self) -> int:
        return int((time.time() + self.clock_offset) * 1000)

    def _issue(self) -> _Token:
        """Caller holds the lock. The new token replaces every earlier one."""
        for old in self._tokens.values():
            old.replaced = True
        token = _Token(
            secrets.token_hex(16), secrets.token_hex(16), time.monotonic() + self.token_ttl
        )
        self._tokens[token.access] = token
        self._refresh = {token.refresh: token.access}
        return token

    def _reply(self, record: Received, code: int | None, result: Any = None) -> web.Response:
        record.code = code
        with self._lock:
            self.received.append(record)
        answer: dict[str, Any] = {"t": self._now_ms(), "tid": secrets.token_hex(8)}
        if code is None:
            answer.update(success=True, result=result)
        else:
            answer.update(success=False, code=code, msg=MESSAGES.get(code, "error"))
        return web.json_response(answer)

    def _check(self, request: web.Request, body: bytes, path: str) -> int | None:
        """The checks every call passes, in the cloud's order; an error code or None."""
        headers = request.headers
        if headers.get("client_id") != self.access_id:
            return 1004
        if headers.get("sign_method") != "HMAC-SHA256":
            return 1004
        t = headers.get("t", "")
        if not t.isdigit() or abs(int(t) - self._now_ms()) > self.max_skew * 1000:
            return 1013
        token = "" if path == TOKEN_PATH or path.startswith(TOKEN_PATH + "/") else None
        if token is None:
            token = headers.get("access_token", "")
        if self.legacy:
            wanted = expected_legacy_sign(self.access_secret, self.access_id, token, t)
        else:
            names = [n for n in headers.get("Signature-Headers", "").split(":") if n]
            wanted = expected_sign(
                self.access_secret,
                self.access_id,
                token,
                t,
                headers.get("nonce", ""),
                request.method,
                body,
                names,
                headers,
                path,
                list(request.query.items()),
            )
        if not hmac.compare_digest(headers.get("sign", ""), wanted):
            return 1004
        if token:
            with self._lock:
                known = self._tokens.get(token)
            if known is None or known.replaced:
                return 1011
            if time.monotonic() >= known.expires_at:
                return 1010
        elif not path.startswith(TOKEN_PATH):
            return 1010  # a business call without a token
        return None

    def _scripted(self, path: str) -> Scripted | None:
        with self._lock:
            for item in self.scripted:
                if item.times == 0 or (item.path is not None and item.path not in path):
                    continue
                if item.path is None and path.startswith(TOKEN_PATH):
                    continue
                if item.times is not None:
                    item.times -= 1
                return item
        return None

    def _over_limit(self, now: float) -> bool:
        """Commands within the last second (less the jitter tolerance) are counted."""
        with self._lock:
            window = 1.0 - self.jitter_tolerance
            while self._command_times and now - self._command_times[0] >= window:
                self._command_times.popleft()
            if len(self._command_times) >= self.command_limit:
                return True
            self._command_times.append(now)
            return False

    async def _receive(self, request: web.Request) -> web.Response:
        body = await request.read()
        path = request.path
        record = Received(
            time.monotonic(),
            request.method,
            path,
            list(request.query.items()),
            dict(request.headers),
            body,
            None,
        )
        if self.delay:
            await asyncio.sleep(self.delay)
        code = self._check(request, body, path)
        if code is not None:
            return self._reply(record, code)
        scripted = self._scripted(path)
        if scripted is not None:
            if scripted.delay:
                await asyncio.sleep(scripted.delay)
            if scripted.code is None:
                record.http_status = scripted.http_status
                with self._lock:
                    self.received.append(record)
                return web.Response(status=scripted.http_status, text="scripted failure")
            return self._reply(record, scripted.code)
        if record.is_command and self._over_limit(record.at):
            return self._reply(record, 1110)
        return self._route(request, record, body, path)

    def _route(self, request: web.Request, record: Received, body: bytes, path: str) -> Any:
        if path == TOKEN_PATH and request.method == "GET":
            if request.query.get("grant_type") != "1":
                return self._reply(record, 1100)
            with self._lock:
                token = self._issue()
            return self._reply(record, None, self._token_result(token))
        if path.startswith(TOKEN_PATH + "/") and request.method == "GET":
            refresh = path[len(TOKEN_PATH) + 1 :]
            with self._lock:
                token = self._issue() if refresh in self._refresh else None
            if token is None:
                return self._reply(record, 1012)
            return self._reply(record, None, self._token_result(token))
        if path == PUSH_PATH and request.method == "POST":
            return self._reply(record, None, {"send_status": True})
        if request.method == "GET" and path == ASSOCIATED_USERS_PATH:
            return self._associated_users(record, request.query)
        if request.method == "GET" and path == PROJECT_THINGS_PATH:
            return self._project_things(record, request.query)
        for root, family in FAMILY_ROOTS.items():
            if path == root or path.startswith(root + "/"):
                if family in self.denied_families:
                    return self._reply(record, 1106)
                if request.method == "GET" and path in (root, root + "/status"):
                    return self._batch(record, request.query, family, path.endswith("/status"))
                return self._device(request.method, record, body, path[len(root) + 1 :], family)
        return self._reply(record, 1108)

    # -- the catalogue's calls -----------------------------------------------------------------

    def _linked(self, device_id: str) -> bool:
        return self.linked_devices is None or device_id in self.linked_devices

    def _status_of(self, device_id: str) -> list[dict[str, Any]]:
        """Caller holds the lock."""
        state = self.state.get(device_id, {})
        return [{"code": code, "value": value} for code, value in state.items()]

    def _details_of(self, device_id: str) -> dict[str, Any]:
        """Caller holds the lock. The record as Tuya returns it, secrets and all."""
        return {**self.devices[device_id], "status": self._status_of(device_id)}

    def _batch(self, record: Received, query: Any, family: str, status: bool) -> web.Response:
        ids = [i for i in query.get("device_ids", "").split(",") if i]
        if not ids:
            return self._reply(record, 1100)
        if len(ids) > self.batch_limit:
            return self._reply(record, self.batch_limit_code)
        with self._lock:
            known = [i for i in dict.fromkeys(ids) if i in self.devices and self._linked(i)]
            if status:
                answer: Any = [{"id": i, "status": self._status_of(i)} for i in known]
            else:
                found = [self._details_of(i) for i in known]
                if family == "iot-03":
                    answer = {"list": found, "total": len(found), "has_more": False}
                else:
                    answer = {
                        "devices": found,
                        "total": len(found),
                        "last_id": known[-1] if known else "",
                    }
        return self._reply(record, None, answer)

    def _listed(self) -> list[str]:
        with self._lock:
            return [i for i in self.devices if self._linked(i)]

    def _associated_users(self, record: Received, query: Any) -> web.Response:
        """Paged by an opaque ``last_row_key`` (here: the position, in a form not to rely on)."""
        size = query.get("size", "20")
        if not size.isdigit() or int(size) < 1:
            return self._reply(record, 1100)
        ids = self._listed()
        start = 0
        row_key = query.get("last_row_key", "")
        if row_key:
            if not row_key.startswith("row-") or not row_key[4:].isdigit():
                return self._reply(record, 1109)
            start = int(row_key[4:])
        page = ids[start : start + int(size)]
        end = start + len(page)
        with self._lock:
            devices = [self._details_of(i) for i in page if i in self.devices]
        result = {
            "devices": devices,
            "has_more": end < len(ids),
            "last_row_key": f"row-{end}",
            "total": len(ids),
        }
        return self._reply(record, None, result)

    def _project_things(self, record: Received, query: Any) -> web.Response:
        """Paged by ``last_id``, at most 20 a page, a bare list with camelCase fields."""
        size = query.get("page_size", "")
        if not size.isdigit() or not 1 <= int(size) <= THING_PAGE_LIMIT:
            return self._reply(record, 1100)
        ids = self._listed()
        last_id = query.get("last_id", "")
        start = ids.index(last_id) + 1 if last_id in ids else 0
        with self._lock:
            page = [_camel(self.devices[i]) for i in ids[start : start + int(size)]]
        return self._reply(record, None, page)

    def _device(
        self, method: str, record: Received, body: bytes, rest: str, family: str = "iot-03"
    ) -> web.Response:
        device, _, action = rest.partition("/")
        if not device:
            return self._reply(record, 1108)
        if self.linked_devices is not None and device not in self.linked_devices:
            return self._reply(record, 1106)
        with self._lock:
            state = self.state.setdefault(device, {})
            status = [{"code": code, "value": value} for code, value in state.items()]
            registered = self._details_of(device) if device in self.devices else None
            specification = self.specifications.get(device)
        if method == "GET" and action in SPECIFICATION_ACTIONS.values():
            if action != SPECIFICATION_ACTIONS[family]:
                return self._reply(record, 1108)
            empty = {"category": "", "functions": [], "status": []}
            return self._reply(record, None, specification or empty)
        if method == "POST" and action == "commands":
            try:
                commands = json.loads(body)["commands"]
                assert isinstance(commands, list) and commands
                updates = {c["code"]: c["value"] for c in commands}
            except (ValueError, KeyError, TypeError, AssertionError):
                return self._reply(record, 1100)
            with self._lock:
                state.update(updates)
            return self._reply(record, None, True)
        if method == "GET" and action == "status":
            return self._reply(record, None, status)
        if method == "GET" and action == "":
            if registered is not None:
                return self._reply(record, None, registered)
            return self._reply(record, None, {"id": device, "online": True, "status": status})
        return self._reply(record, 1108)

    def _token_result(self, token: _Token) -> dict[str, Any]:
        ttl = self.token_ttl
        return {
            "access_token": token.access,
            "refresh_token": token.refresh,
            "expire_time": int(ttl) if float(ttl).is_integer() else ttl,
            "uid": "fake-uid",
        }

    async def _report(self, request: web.Request) -> web.Response:
        """For the benchmark's separate process: commands with their arrival times."""
        with self._lock:
            records = list(self.received)
        return web.json_response(
            {
                "commands": [
                    {"at": r.at, "path": r.path, "body": r.json}
                    for r in records
                    if r.is_command and r.code is None
                ],
                "codes": [r.code for r in records],
            }
        )


def _as_tuya_entry(entry: dict[str, Any]) -> dict[str, Any]:
    values = entry.get("values")
    if isinstance(values, dict):
        return {**entry, "values": json.dumps(values)}
    return dict(entry)


_CAMEL = {
    "product_id": "productId",
    "product_name": "productName",
    "time_zone": "timeZone",
    "active_time": "activeTime",
    "create_time": "createTime",
    "update_time": "updateTime",
    "online": "isOnline",
    "local_key": "localKey",
}


def _camel(record: dict[str, Any]) -> dict[str, Any]:
    """A record as the project query returns it: camelCase; as in Tuya's example, ``name`` a
    default one and ``customName`` the one the user gave (the record's ``name``)."""
    out = {_CAMEL.get(key, key): value for key, value in record.items() if key != "owner_id"}
    out["name"] = f"{record.get('product_name', 'Device')}-{record['id'][:5]}"
    out["customName"] = record.get("name", "")
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m tests.fake_tuya_openapi --access-id ID --access-secret S``: prints
    ``PORT <n>``, serves until SIGTERM/SIGINT or until its stdin closes."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--access-id", required=True)
    parser.add_argument("--access-secret", required=True)
    parser.add_argument("--token-ttl", type=float, default=7200)
    parser.add_argument("--command-limit", type=int, default=4)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    server = FakeTuyaOpenApi(
        args.access_id,
        args.access_secret,
        token_ttl=args.token_ttl,
        command_limit=args.command_limit,
        port=args.port,
    ).start()
    print(f"PORT {server.port}", flush=True)
    done = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: done.set())
    threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
    done.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
