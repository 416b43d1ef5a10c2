"""Resync after a gap longer than ``resync.after``: at start (from the consumption record) and
on reconnecting; the devices' current status from the fake OpenAPI becomes one event each,
through the same handlers, marked as a resync; live traffic goes on; an outage is retried."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.fake_tuya_openapi import FakeTuyaOpenApi
from tests.pipeline_support import Harness
from tests.support.cloud import KNOWN, NEW, fill, publish, serving_cloud, settings_for
from tests.support.metrics import metric_value
from tests.support.waiting import wait_until
from tuya_events.config.settings import HandlerSettings, Settings, state_directory
from tuya_events.delivery import Delivery
from tuya_events.handlers import HandlerContext
from tuya_events.handlers.base import BaseHandler
from tuya_events.handlers.registry import build_handler
from tuya_events.observability.metrics import Metrics
from tuya_events.pipeline.routes import Route
from tuya_events.resync.record import FILE_NAME, ConsumptionRecord
from tuya_events.tuya.events import Event, StatusReport

QUICK = {"after": "1s", "retry_delays": ["50ms", "50ms", "50ms"], "record_interval": "100ms"}


class Documents(BaseHandler):
    """Every event's device, values by code and resync marker, in handling order."""

    def __init__(self) -> None:
        super().__init__("documents")
        self.seen: list[tuple[str | None, dict[str, Any], dict[str, Any] | None, str]] = []

    def handle(self, event: Event, delivery: Delivery) -> None:
        values = (
            {item.code: item.value for item in event.statuses}
            if isinstance(event, StatusReport)
            else {"biz_code": event.biz_code}
        )
        marker = event.document.get("_tuya_events")
        self.seen.append((event.device_id, values, marker, delivery.topic))

    def resynced(self) -> list[tuple[str | None, dict[str, Any], dict[str, Any] | None, str]]:
        return [seen for seen in self.seen if seen[2] is not None]


@pytest.fixture
def cloud() -> Iterator[FakeTuyaOpenApi]:
    with serving_cloud() as server:
        server.state[KNOWN] = {"seq": 42, "va_temperature": 215}
        server.state[NEW] = {"seq": 7}
        yield server


def away(settings: Settings, seconds: float) -> None:
    """The consumption record says we last consumed ``seconds`` ago."""
    path = state_directory(settings) / FILE_NAME
    path.write_bytes(orjson.dumps({"consuming_at": time.time() - seconds}))


def test_a_gap_at_start_resyncs_every_device_through_the_handlers(
    tmp_path: Path, cloud: FakeTuyaOpenApi
) -> None:
    database = tmp_path / "events.sqlite3"
    settings = settings_for(tmp_path, cloud, resync=QUICK)
    asyncio.run(fill(settings, KNOWN, NEW))
    away(settings, 3 * 3600 + 12 * 60)
    documents = Documents()

    async def scenario(harness: Harness) -> Any:
        await wait_until(lambda: len(documents.resynced()) == 2, timeout=20)
        return harness.daemon.metrics.registry

    registry = _run(settings, [documents], scenario, database)
    by_device = {seen[0]: seen for seen in documents.resynced()}
    assert by_device[KNOWN][1] == {"seq": 42, "va_temperature": 215}
    assert by_device[NEW][1] == {"seq": 7}
    marker = by_device[KNOWN][2]
    assert marker is not None and marker["source"] == "resync" and marker["trigger"] == "start"
    assert marker["gap_seconds"] == pytest.approx(3 * 3600 + 12 * 60, abs=30)
    assert metric_value(registry, "tuya_events_resync_runs_total", trigger="start") == 1
    assert metric_value(registry, "tuya_events_resync_devices_total", outcome="resynced") == 2
    assert metric_value(registry, "tuya_events_consumption_gap_seconds") > 3 * 3600
    assert metric_value(registry, "tuya_events_dead_letters_total") == 0
    with sqlite3.connect(database) as db:
        rows = db.execute("SELECT device_id, code, value FROM tuya_latest_status").fetchall()
    assert sorted(rows) == [
        (KNOWN, "seq", "42"),
        (KNOWN, "va_temperature", "215"),
        (NEW, "seq", "7"),
    ]
    record = ConsumptionRecord(state_directory(settings) / FILE_NAME).last_consuming()
    assert record is not None and time.time() - record < 60, "the stop recorded the time"


def _run(
    settings: Settings, handlers: list[BaseHandler], scenario: Any, database: Path | None = None
) -> Any:

    routes: list[Any] = list(handlers)
    if database is not None:
        entry = HandlerSettings(type="database", path=str(database))  # type: ignore[call-arg]
        routes.append(Route(build_handler(entry, HandlerContext(settings, Metrics()))))

    async def main() -> Any:
        async with Harness(settings, routes) as harness:
            return await scenario(harness)

    return asyncio.run(main())


def test_no_resync_on_a_first_start_or_a_short_gap(tmp_path: Path, cloud: FakeTuyaOpenApi) -> None:
    settings = settings_for(tmp_path, cloud, resync=QUICK)
    asyncio.run(fill(settings, KNOWN, NEW))
    cloud.clear()
    documents = Documents()

    async def scenario(harness: Harness) -> Any:
        publish(harness, KNOWN, 1)
        await wait_until(lambda: len(documents.seen) == 1, timeout=20)
        await asyncio.sleep(0.3)  # time for a resync to have started, had there been one
        return harness.daemon.metrics.registry

    registry = _run(settings, [documents], scenario)  # first start: no record
    assert documents.resynced() == []
    assert metric_value(registry, "tuya_events_resync_runs_total", trigger="start") == 0
    away(settings, 0.5)  # shorter than resync.after
    documents = Documents()
    _run(settings, [documents], scenario)
    assert documents.resynced() == []
    assert cloud.requests() == []


def test_a_fresher_live_report_is_not_overwritten_by_the_resync(
    tmp_path: Path, cloud: FakeTuyaOpenApi
) -> None:
    database = tmp_path / "events.sqlite3"
    settings = settings_for(tmp_path, cloud, resync=QUICK)
    asyncio.run(fill(settings, KNOWN, NEW))
    away(settings, 3 * 3600)
    documents = Documents()
    future_ms = int(time.time() * 1000) + 3_600_000  # a live report newer than the status call

    async def scenario(harness: Harness) -> None:
        from tests.pipeline_support import ENCODER

        document = {
            "dataId": "live-1",
            "devId": KNOWN,
            "status": [{"code": "seq", "value": 1000, "t": future_ms}],
        }
        body, properties = ENCODER.encode(document, em="aes_ecb", protocol=4)
        harness.source.publish(body, properties, partition=0, key=KNOWN)
        await wait_until(lambda: len(documents.resynced()) == 2, timeout=20)
        await wait_until(lambda: len(documents.seen) == 3, timeout=20)

    _run(settings, [documents], scenario, database)
    with sqlite3.connect(database) as db:
        rows = dict(
            db.execute(
                "SELECT code, value FROM tuya_latest_status WHERE device_id = ?", (KNOWN,)
            ).fetchall()
        )
    assert rows == {"seq": "1000", "va_temperature": "215"}


def test_an_openapi_outage_during_a_resync_is_retried_and_live_traffic_goes_on(
    tmp_path: Path, cloud: FakeTuyaOpenApi
) -> None:
    settings = settings_for(tmp_path, cloud, resync=QUICK)
    asyncio.run(fill(settings, KNOWN, NEW))
    away(settings, 3 * 3600)
    cloud.answer(None, times=4, path="/devices", http_status=503)  # two failed batches
    documents = Documents()

    async def scenario(harness: Harness) -> Any:
        for seq in range(5):
            publish(harness, NEW, seq)
        await wait_until(lambda: len(documents.resynced()) == 2, timeout=20)
        await wait_until(lambda: len(documents.seen) == 7, timeout=20)
        return harness.daemon.metrics.registry

    registry = _run(settings, [documents], scenario)
    live = [seen for seen in documents.seen if seen[2] is None]
    assert [seen[1]["seq"] for seen in live] == list(range(5))
    failed = metric_value(
        registry, "tuya_events_catalogue_calls_total", call="details", outcome="http_5xx"
    )
    assert failed >= 1
    assert metric_value(registry, "tuya_events_resync_devices_total", outcome="resynced") == 2
    assert metric_value(registry, "tuya_events_resync_devices_total", outcome="failed") == 0


def test_a_broker_outage_longer_than_resync_after_resyncs_on_reconnect(
    tmp_path: Path, cloud: FakeTuyaOpenApi
) -> None:
    settings = settings_for(tmp_path, cloud, resync=QUICK)
    asyncio.run(fill(settings, KNOWN, NEW))
    documents = Documents()

    async def scenario(harness: Harness) -> Any:
        await asyncio.sleep(0.3)  # consuming, recorded
        harness.source.online = False  # the broker cannot be reached
        await asyncio.sleep(2.5)
        assert documents.resynced() == [], "no resync while still away"
        harness.source.online = True
        await wait_until(lambda: len(documents.resynced()) == 2, timeout=20)
        return harness.daemon.metrics.registry

    registry = _run(settings, [documents], scenario)
    assert {seen[2]["trigger"] for seen in documents.resynced()} == {"reconnect"}  # type: ignore[index]
    assert metric_value(registry, "tuya_events_resync_runs_total", trigger="reconnect") == 1
    assert metric_value(registry, "tuya_events_consumption_gap_seconds") >= 2


def test_a_device_that_went_offline_while_we_were_away_gets_an_offline_event(
    tmp_path: Path, cloud: FakeTuyaOpenApi
) -> None:
    settings = settings_for(tmp_path, cloud, resync=QUICK)
    asyncio.run(fill(settings, KNOWN, NEW))  # both online, as the fake says
    cloud.devices[KNOWN]["online"] = False  # it went offline while we were away
    away(settings, 3 * 3600)
    documents = Documents()

    async def scenario(harness: Harness) -> Any:
        await wait_until(lambda: len(documents.resynced()) == 3, timeout=20)
        return harness.daemon.catalogue

    catalogue = _run(settings, [documents], scenario)
    events = [(seen[0], seen[1]) for seen in documents.resynced() if "biz_code" in seen[1]]
    assert events == [(KNOWN, {"biz_code": "offline"})]
    assert catalogue.devices[KNOWN].online is False
    status = {seen[0] for seen in documents.resynced() if "biz_code" not in seen[1]}
    assert status == {KNOWN, NEW}


def test_with_resync_off_a_gap_is_still_measured_and_said(
    tmp_path: Path, cloud: FakeTuyaOpenApi, captured_logs: Any
) -> None:
    settings = settings_for(tmp_path, cloud, resync={**QUICK, "enabled": False})
    away(settings, 3 * 3600)
    documents = Documents()

    async def scenario(harness: Harness) -> Any:
        await asyncio.sleep(0.3)
        return harness.daemon.metrics.registry

    registry = _run(settings, [documents], scenario)
    assert metric_value(registry, "tuya_events_consumption_gap_seconds") > 3 * 3600 - 60
    assert documents.resynced() == [] and cloud.requests() == []
    assert "resync is off" in captured_logs.getvalue()
