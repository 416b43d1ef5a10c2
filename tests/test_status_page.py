"""The status page (observability/status_page.py): what it shows, and who may see it.

A real HTTP listener on 127.0.0.1 (or on all interfaces, for the token rules) serves the page of
a daemon's parts: real metrics counts, real catalogue devices built from Tuya-shaped
specifications, latest values fed with decoded events, a real dead-letter store in SQLite.
The page in a real browser against a running demo: tests/test_status_page_browser.py.
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests import vectors as v
from tests.pipeline_support import status_message
from tests.support.paths import ROOT
from tests.support.ports import free_port
from tests.support.settings import make_settings
from tuya_events.assembly import build_pipeline
from tuya_events.cli.demo import status_page_line
from tuya_events.config.errors import ConfigError
from tuya_events.config.settings import Settings
from tuya_events.deadletter.store import DeadLetterStore
from tuya_events.delivery import Delivery, Failure
from tuya_events.observability.health import Health
from tuya_events.observability.http import HttpServer
from tuya_events.observability.metrics import Metrics
from tuya_events.observability.status_page import StatusPage, is_loopback
from tuya_events.observability.status_state import (
    ConnectionClock,
    FlowHistory,
    LatestValues,
    SharedTap,
    read_dead_letters,
    value_text,
)
from tuya_events.tuya.devices import Device, make_device, parse_specification
from tuya_events.tuya.events import StatusItem, build_event

TOKEN = "page-token-0123456789abcdef"
SENSOR = "bf0sensor0000000000001"
PLUG = "bf0plug000000000000002"
STRANGER = "bf0unknown000000000003"  # reports, but the catalogue does not know it
T0 = 1_700_000_000_000


def _spec(*status: dict[str, Any]) -> dict[str, Any]:
    return {"category": "x", "functions": [], "status": list(status)}


def _integer(code: str, unit: str, scale: int) -> dict[str, Any]:
    values = {"unit": unit, "min": 0, "max": 10000, "scale": scale, "step": 1}
    return {"code": code, "type": "Integer", "values": json.dumps(values)}


CATALOGUE = {
    SENSOR: make_device(
        {"id": SENSOR, "name": "Kitchen sensor", "category": "wsdcg", "online": True,
         "local_key": "0123456789abcdef", "product_name": "TH sensor"},
        list(parse_specification(_spec(
            _integer("va_temperature", "℃", 1), _integer("va_humidity", "%", 0),
            {"code": "battery_state", "type": "Enum", "values": '{"range":["low","high"]}'},
        )).values()),
    ),
    PLUG: make_device(
        {"id": PLUG, "name": "Desk plug", "category": "cz", "online": True},
        list(parse_specification(_spec(
            {"code": "switch_1", "type": "Boolean", "values": "{}"}, _integer("cur_power", "W", 1),
        )).values()),
    ),
}  # fmt: skip


def status(device_id: str, t_ms: int, **values: Any) -> Any:
    document = {
        "devId": device_id,
        "dataId": f"{device_id}-{t_ms}",
        "status": [{"code": code, "value": value, "t": t_ms} for code, value in values.items()],
    }
    return build_event(document, 4)


def device_event(device_id: str, biz_code: str) -> Any:
    return build_event({"devId": device_id, "bizCode": biz_code, "bizData": {}, "ts": T0}, 20)


DELIVERY = Delivery(body=b"{}", properties={}, message_id="m-1", publish_time_ms=T0)


# -- the parts the page reads --------------------------------------------------------------------


@dataclass
class _Source:
    up: bool = True

    def connected(self) -> bool:
        return self.up


@dataclass
class _Pipeline:
    in_flight: int = 3


@dataclass
class _Catalogue:
    devices: Mapping[str, Device] = field(default_factory=lambda: dict(CATALOGUE))


@dataclass
class Parts:
    """A daemon as the page sees it (the structure of tuya_events.daemon.Daemon)."""

    settings: Settings
    source: _Source = field(default_factory=_Source)
    pipeline: _Pipeline = field(default_factory=_Pipeline)
    catalogue: _Catalogue | None = field(default_factory=_Catalogue)
    metrics: Metrics = field(default_factory=Metrics)


def settings_for(
    tmp_path: Path, listen: str = "127.0.0.1:0", token: str | None = None, **sections: Any
) -> Settings:
    http: dict[str, Any] = {"enabled": True, "listen": listen}
    if token is not None:
        http["token"] = token
    return make_settings(tmp_path, http=http, **sections)


class Listener:
    """An HttpServer with the status page, on its own event loop in a thread."""

    def __init__(self, parts: Parts, latest: LatestValues) -> None:
        host, port = parts.settings.http.listen
        health = Health(connected=lambda: True, last_message_at=lambda: 0.0)
        self.server = HttpServer(host, port, parts.metrics, health)
        self.page = StatusPage.of(parts, latest)
        self.server.add_routes(self.page.register)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> Listener:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def get(self, path: str, headers: Mapping[str, str] | None = None) -> Answer:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.server.port}{path}", headers=dict(headers or {})
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return Answer(answer.status, answer.headers, answer.read())
        except urllib.error.HTTPError as error:
            return Answer(error.code, error.headers, error.read())

    def state(self, headers: Mapping[str, str] | None = None) -> dict[str, Any]:
        answer = self.get("/status.json", headers)
        assert answer.status == 200, answer.body
        return json.loads(answer.body)


@dataclass
class Answer:
    status: int
    headers: Any
    body: bytes


def fed(latest: LatestValues) -> LatestValues:
    latest.observe(status(SENSOR, T0, va_temperature=235, va_humidity=45), DELIVERY, False)
    latest.observe(status(SENSOR, T0 + 10, battery_state="high"), DELIVERY, False)
    latest.observe(status(PLUG, T0, switch_1=True, cur_power=1234), DELIVERY, False)
    latest.observe(device_event(PLUG, "offline"), DELIVERY, False)
    latest.observe(status(STRANGER, T0, temp=7, unlock_password="4711-0815"), DELIVERY, False)
    return latest


def dead_letter(store: DeadLetterStore, message_id: str, reason: str, device: str | None) -> None:
    failure = Failure("decode", reason, f"{reason} happened to {message_id}", last_failure=1e9)
    store.put(Delivery(body=b"x", properties={}, message_id=message_id), failure, device)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Listener]:
    parts = Parts(settings_for(tmp_path))
    parts.metrics.counts.received.update({0: 40, 3: 2})
    parts.metrics.counts.acked = 41
    with DeadLetterStore(parts.settings.dead_letter.path) as store:
        dead_letter(store, "m-old", "bad_padding", None)
        dead_letter(store, "m-new", "gcm_auth_failed", SENSOR)
    with Listener(parts, fed(LatestValues())) as listener:
        yield listener


# -- what the page shows ---------------------------------------------------------------------


def by_name(state: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {device["name"] or device["id"]: device for device in state["devices"]}


def values_of(device: dict[str, Any]) -> dict[str, str]:
    return {value["code"]: value["text"] for value in device["values"]}


def test_devices_show_names_categories_online_and_scaled_values_with_units(served) -> None:
    state = served.state()
    devices = by_name(state)
    assert list(devices) == ["Desk plug", "Kitchen sensor", STRANGER]  # by name, unknown last
    sensor, plug = devices["Kitchen sensor"], devices["Desk plug"]
    assert values_of(sensor) == {"va_temperature": "23.5 ℃", "va_humidity": "45 %",
                                 "battery_state": "high"}  # fmt: skip
    assert [value["code"] for value in sensor["values"]] == [
        "va_temperature", "va_humidity", "battery_state"
    ]  # the specification's order  # fmt: skip
    assert (sensor["category"], sensor["product"], sensor["online"]) == ("wsdcg", "TH sensor", True)
    assert sensor["reported_ms"] == T0 + 10
    assert values_of(plug) == {"switch_1": "on", "cur_power": "123.4 W"}
    assert plug["online"] is False  # the offline event is newer than the catalogue's details
    assert values_of(devices[STRANGER]) == {"temp": "7", "unlock_password": "[REDACTED]"}
    assert state["devices_total"] == 3


def test_connection_flow_and_the_newest_dead_letters_first(served) -> None:
    state = served.state()
    connection = state["connection"]
    assert connection["connected"] is True and connection["since_ms"] is not None
    assert connection["topic"] == f"persistent://{v.ACCESS_ID}/out/event"
    assert connection["subscription"] == f"{v.ACCESS_ID}-sub"
    assert connection["broker"].startswith("pulsar+ssl://")
    assert (state["flow"]["received"], state["flow"]["acked"]) == (42, 41)
    assert state["flow"]["in_flight"] == 3
    dead = state["dead_letters"]
    assert dead["count"] == 2 and dead["error"] is None
    newest = dead["newest"]
    assert [record["reason"] for record in newest] == ["gcm_auth_failed", "bad_padding"]
    assert newest[0]["device_name"] == "Kitchen sensor"
    assert newest[0]["message"] == "gcm_auth_failed happened to m-new"
    assert newest[0]["at_ms"] == 1_000_000_000_000


def test_the_page_never_shows_a_secret_or_a_local_key(served) -> None:
    body = served.get("/status.json").body.decode()
    for secret in (v.ACCESS_SECRET, "0123456789abcdef", "local_key", TOKEN, "4711-0815"):
        assert secret not in body


def test_page_assets_are_served_from_the_package_with_a_strict_policy(served) -> None:
    kinds = {"/": "text/html", "/status.css": "text/css", "/status.js": "text/javascript",
             "/favicon.svg": "image/svg+xml"}  # fmt: skip
    for path, kind in kinds.items():
        answer = served.get(path)
        assert answer.status == 200, path
        assert answer.headers["Content-Type"].startswith(kind)
        assert "script-src 'self'" in answer.headers["Content-Security-Policy"]
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
    html = served.get("/").body.decode()
    assert 'src="status.js"' in html and 'href="status.css"' in html
    assert "http://" not in html and "https://" not in html  # no CDN: nothing from elsewhere
    assert 'name="viewport"' in html  # readable on a phone
    assert "innerHTML" not in served.get("/status.js").body.decode()  # data only as text


def test_a_page_elsewhere_cannot_read_the_loopback_page_through_a_rebound_name(served) -> None:
    assert served.get("/status.json", {"Host": "attacker.example:9464"}).status == 403
    assert served.get("/", {"Host": "evil.example"}).status == 403
    for host in ("localhost:9464", "127.0.0.1", "[::1]:9464", "app.localhost"):
        assert served.get("/status.json", {"Host": host}).status == 200, host


def test_without_a_catalogue_devices_are_listed_by_id(tmp_path: Path) -> None:
    parts = Parts(settings_for(tmp_path), catalogue=None)
    with Listener(parts, fed(LatestValues())) as listener:
        state = listener.state()
    devices = {device["id"]: device for device in state["devices"]}
    assert set(devices) == {SENSOR, PLUG, STRANGER}
    assert devices[SENSOR]["name"] is None
    assert values_of(devices[SENSOR])["va_temperature"] == "235"  # no specification: as sent
    assert state["dead_letters"] == {"count": 0, "error": None, "newest": []}
    assert not Path(parts.settings.dead_letter.path).exists()  # reading never creates the store


# -- who may see it --------------------------------------------------------------------------


def basic(password: str, user: str = "me") -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


PAGE_PATHS = ("/", "/status.css", "/status.js", "/favicon.svg", "/status.json")


def test_beyond_loopback_the_page_refuses_a_request_without_the_token(tmp_path: Path) -> None:
    parts = Parts(settings_for(tmp_path, f"0.0.0.0:{free_port()}", token=TOKEN))
    with Listener(parts, fed(LatestValues())) as listener:
        for path in PAGE_PATHS:
            refused = listener.get(path)
            assert refused.status == 401, path
            assert TOKEN not in refused.body.decode()
            challenges = refused.headers.get_all("WWW-Authenticate")
            assert any(c.startswith("Bearer ") for c in challenges)
            assert any(c.startswith("Basic ") for c in challenges)  # a browser asks for it
            for wrong in ({"Authorization": "Bearer nope"}, basic("nope"), basic(TOKEN[:-1]),
                          {"Authorization": TOKEN}, {"Authorization": "Basic !!"}):  # fmt: skip
                assert listener.get(path, wrong).status == 401, (path, wrong)
            assert listener.get(path, {"Authorization": f"Bearer {TOKEN}"}).status == 200, path
            assert listener.get(path, basic(TOKEN)).status == 200, path
        assert listener.state(basic(TOKEN, user=""))["devices_total"] == 3
        # The probes and /metrics are the operator's and stay as they were.
        assert listener.get("/healthz").status == 200
        assert listener.get("/metrics").status == 200


def test_beyond_loopback_without_a_token_the_page_is_not_served(tmp_path: Path) -> None:
    parts = Parts(settings_for(tmp_path, f"0.0.0.0:{free_port()}"))
    with Listener(parts, fed(LatestValues())) as listener:
        for path in PAGE_PATHS:
            answer = listener.get(path)
            assert answer.status == 403, path
            assert b"http.token or tail.token" in answer.body
        assert listener.get("/healthz").status == 200


def test_a_token_set_is_asked_for_on_loopback_too(tmp_path: Path) -> None:
    with Listener(Parts(settings_for(tmp_path, token=TOKEN)), LatestValues()) as listener:
        assert listener.get("/status.json").status == 401
        assert listener.get("/status.json", {"Authorization": f"Bearer {TOKEN}"}).status == 200


def test_the_page_takes_the_live_tails_token(tmp_path: Path) -> None:
    tail = "tail-token-0123456789abcdef"
    settings = settings_for(tmp_path, f"0.0.0.0:{free_port()}", token=TOKEN, tail={"token": tail})
    with Listener(Parts(settings), LatestValues()) as listener:
        assert listener.get("/status.json", {"Authorization": f"Bearer {tail}"}).status == 200
        assert listener.get("/", basic(tail)).status == 200
        assert listener.get("/status.json", {"Authorization": f"Bearer {TOKEN}"}).status == 401


def test_the_token_comes_from_http_token_and_is_not_a_short_word(tmp_path: Path) -> None:
    assert settings_for(tmp_path, token=TOKEN).http.token.get_secret_value() == TOKEN
    assert "page-token" not in repr(settings_for(tmp_path, token=TOKEN).http)
    with pytest.raises(ConfigError, match=r"http\.token"):
        settings_for(tmp_path, token="short")


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.3.2.1", True), ("::1", True), ("[::1]", True),
     ("localhost", True), ("LOCALHOST.", True), ("0.0.0.0", False), ("::", False), ("", False),
     ("192.168.1.4", False), ("myhost", False), ("localhost.example.com", False)],
)  # fmt: skip
def test_loopback_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


# -- the state behind it ---------------------------------------------------------------------


def test_latest_values_keep_the_newest_value_of_each_code() -> None:
    latest = LatestValues()
    latest.observe(status(SENSOR, T0 + 100, va_temperature=250), DELIVERY, False)
    latest.observe(status(SENSOR, T0, va_temperature=200, va_humidity=40), DELIVERY, False)
    state = latest.devices[SENSOR]
    assert {code: item.value for code, item in state.values.items()} == {
        "va_temperature": 250,  # the older report (a redelivery) did not replace it
        "va_humidity": 40,
    }
    assert state.reported_ms == T0 + 100
    latest.observe(device_event(SENSOR, "offline"), DELIVERY, False)
    assert state.online is False
    latest.observe(device_event(SENSOR, "deviceOnline"), DELIVERY, True)
    assert state.online is True
    latest.observe(None, DELIVERY, True)  # undecodable: nothing to learn
    latest.observe(device_event(PLUG, "nameUpdate"), DELIVERY, False)
    assert set(latest.devices) == {SENSOR}


def test_latest_values_are_bounded_whatever_arrives() -> None:
    latest = LatestValues(max_devices=2, max_codes=2)
    for index in range(5):
        latest.observe(status(f"bf{index}", T0, a=1, b=2, c=3), DELIVERY, False)
    assert list(latest.devices) == ["bf0", "bf1"]
    assert set(latest.devices["bf0"].values) == {"a", "b"}
    latest.observe(status("bf0", T0 + 1, a=9, z=1), DELIVERY, False)
    assert {code: item.value for code, item in latest.devices["bf0"].values.items()} == {
        "a": 9,
        "b": 2,
    }


def test_the_latest_values_stay_on_the_pipelines_tap_beside_the_tails(tmp_path: Path) -> None:
    """A real pipeline (no handlers: each message settles inside submit) and its one tap."""
    settings = make_settings(tmp_path, handlers=[])
    latest, watched = LatestValues(), []
    with DeadLetterStore(settings.dead_letter.path) as store:

        async def run() -> None:
            pipeline = build_pipeline(settings, [], store, lambda *_: None, Metrics())
            taps = SharedTap(pipeline, latest.observe)
            assert taps.routes == pipeline.routes

            def submit(seq: int) -> None:
                body, properties = status_message(SENSOR, seq)
                pipeline.submit(Delivery(body=body, properties=properties, message_id=str(seq)))

            submit(1)
            taps.set_tap(lambda event, *_: watched.append(event.statuses[0].value))  # a viewer
            submit(2)
            taps.set_tap(None)  # it went away
            submit(3)
            assert await pipeline.join(5)

        asyncio.run(run())
    assert watched == [2]
    assert latest.devices[SENSOR].values["seq"].value == 3  # told of every message


def test_value_text() -> None:
    points = CATALOGUE[SENSOR].points
    temperature, humidity = points["va_temperature"], points["va_humidity"]
    assert value_text(StatusItem("va_temperature", 235), temperature) == "23.5 ℃"
    assert value_text(StatusItem("va_temperature", -5), temperature) == "-0.5 ℃"
    assert value_text(StatusItem("va_humidity", 45), humidity) == "45 %"
    huge = value_text(StatusItem("va_temperature", 10**400), temperature)  # no float holds it
    assert huge.startswith("1000000") and len(huge) == 80
    assert value_text(StatusItem("x", 10**5000), None) == "(a huge number)"
    assert value_text(StatusItem("x", False), None) == "off"
    assert value_text(StatusItem("x", 2.5), None) == "2.5"
    assert value_text(StatusItem("x", None), None) == "—"
    assert value_text(StatusItem("x", {"a": 1}), None) == "{'a': 1}"
    long = value_text(StatusItem("pic", "eyJ" + "A" * 500), None)
    assert len(long) == 80 and long.endswith("…")
    enriched = StatusItem("va_temperature", 215, point=temperature)
    assert value_text(enriched, None) == "21.5 ℃"  # the event's own point when no device


def test_flow_history_is_messages_per_second_between_samples() -> None:
    now, total = [100.0], [0]
    flow = FlowHistory(lambda: total[0], samples=3, clock=lambda: now[0])
    flow.sample()
    assert flow.series() == []
    for step in (10, 30, 0, 4):
        now[0] += 2
        total[0] += step
        flow.sample()
    assert flow.series() == [[104000, 15.0], [106000, 0.0], [108000, 2.0]]  # the last 3


def test_connection_clock() -> None:
    up, now = [False], [5.0]
    clock = ConnectionClock(lambda: up[0], clock=lambda: now[0])
    assert clock.check() is False and clock.since is None
    up[0] = True
    assert clock.check() is True and clock.since == 5.0
    now[0] = 9.0
    clock.check()
    assert clock.since == 5.0
    up[0] = False
    clock.check()
    up[0] = True
    clock.check()
    assert clock.since == 9.0


def test_an_unreadable_dead_letter_store_is_reported_not_raised(tmp_path: Path) -> None:
    broken = tmp_path / "dead-letters.sqlite3"
    broken.write_bytes(b"not a database at all" * 100)
    summary = read_dead_letters(broken)
    assert summary.count == 0 and summary.error is not None
    assert "dead-letter store" in summary.error


# -- shipping and announcing it ------------------------------------------------------------


def test_the_static_files_are_package_data() -> None:
    static = ROOT / "tuya_events" / "observability" / "static"
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["tuya_events.observability"]
    files = sorted(path.name for path in static.iterdir())
    assert files == ["favicon.svg", "status.css", "status.html", "status.js"]
    for name in files:
        assert any((static / name).match(pattern) for pattern in patterns), name


def test_the_demo_announces_the_page() -> None:
    assert status_page_line("127.0.0.1", 9464) == "status page: http://127.0.0.1:9464/"
    assert status_page_line("::1", 9464) == "status page: http://[::1]:9464/"
    assert "http.token" in status_page_line("0.0.0.0", 9464)
    assert "http listening" in status_page_line("127.0.0.1", 0)
