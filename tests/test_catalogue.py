"""The device catalogue in the running daemon, against the fake Tuya OpenAPI (which checks
signatures and tokens and counts every call): a new device mid-stream, an OpenAPI outage, quota
errors, a restart, renames, the 1106 fallback."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fake_tuya_openapi import FakeTuyaOpenApi
from tests.pipeline_support import Harness
from tests.support.cloud import (
    KNOWN,
    NEW,
    SENSOR_SPEC,
    Seen,
    fill,
    publish,
    publish_event,
    run,
    serving_cloud,
    settings_for,
)
from tests.support.metrics import metric_value
from tests.support.settings import make_settings
from tests.support.waiting import wait_until
from tuya_events.catalogue.store import CatalogueStore
from tuya_events.config.settings import catalogue_path
from tuya_events.delivery import Delivery
from tuya_events.handlers.base import BaseHandler
from tuya_events.tuya.events import Event, StatusReport


@pytest.fixture
def cloud() -> Iterator[FakeTuyaOpenApi]:
    with serving_cloud() as server:
        yield server


def device_calls(cloud: FakeTuyaOpenApi) -> list[Any]:
    return [r for r in cloud.requests("/devices") if "commands" not in r.path]


def test_a_new_device_mid_stream_waits_alone_keeps_its_order_and_is_enriched(
    tmp_path: Path, cloud: FakeTuyaOpenApi
) -> None:
    settings = settings_for(tmp_path, cloud, max_wait="5s")
    asyncio.run(fill(settings, KNOWN))
    cloud.clear()
    cloud.delay = 0.3  # the new device's lookup takes a while
    seen = Seen()

    async def scenario(harness: Harness) -> None:
        for seq in range(10):
            publish(harness, KNOWN, seq)
            publish(harness, NEW, seq)
        await wait_until(lambda: len(seen.events) == 20, timeout=20)

    run(settings, seen, scenario)
    known = [e for e in seen.events if e[0] == KNOWN]
    new = [e for e in seen.events if e[0] == NEW]
    assert [e[1] for e in known] == list(range(10))
    assert [e[1] for e in new] == list(range(10))
    # The known device never waited behind the new one's lookup.
    assert seen.events[:10] == known
    assert all(e[2] == "Kitchen sensor" and e[4] is True for e in known)
    assert all(e[2] == "Hall sensor" and e[4] is True for e in new)
    assert [e[3] for e in new] == [seq / 10 for seq in range(10)]
    # One details call and one specification for the new device, nothing for the known one.
    paths = [r.path for r in device_calls(cloud)]
    assert paths == ["/v1.0/iot-03/devices", f"/v1.0/iot-03/devices/{NEW}/specification"]


def test_an_openapi_outage_lets_messages_go_on_unenriched_within_max_wait(
    tmp_path: Path, cloud: FakeTuyaOpenApi
) -> None:
    settings = settings_for(tmp_path, cloud, max_wait="300ms")
    cloud.answer(None, times=None, path="/devices", http_status=503)
    seen = Seen()

    async def scenario(harness: Harness) -> Any:
        for seq in range(5):
            publish(harness, NEW, seq)
        await wait_until(lambda: len(seen.events) == 5, timeout=20)
        return harness.daemon.metrics.registry

    registry = run(settings, seen, scenario)
    assert [e[1] for e in seen.events] == list(range(5))
    assert all(e[4] is False and e[2] is None and e[3] is None for e in seen.events)
    assert metric_value(registry, "tuya_events_dead_letters_total") == 0
    went_on = sum(
        metric_value(registry, "tuya_events_enrichment_total", outcome=outcome)
        for outcome in ("timed_out", "unknown")
    )
    assert went_on == 5
    assert (
        metric_value(
            registry, "tuya_events_catalogue_calls_total", call="details", outcome="http_5xx"
        )
        >= 1
    )


def test_quota_errors_stop_the_calls_across_a_restart(
    tmp_path: Path, cloud: FakeTuyaOpenApi
) -> None:
    settings = settings_for(tmp_path, cloud, max_wait="1s")
    cloud.answer(28841004, times=None, path="/devices")
    seen = Seen()
    others = [f"bfother{i:015d}" for i in range(5)]
    for other in others:
        cloud.add_device(other, status_spec=SENSOR_SPEC)

    async def scenario(harness: Harness) -> Any:
        publish(harness, NEW, 0)
        await wait_until(lambda: len(seen.events) == 1, timeout=20)
        for index, other in enumerate(others):
            publish(harness, other, index)
        await wait_until(lambda: len(seen.events) == 6, timeout=20)
        return harness.daemon.metrics.registry

    registry = run(settings, seen, scenario)
    assert len(device_calls(cloud)) == 1  # the one that was refused, and none after it
    assert metric_value(registry, "tuya_events_catalogue_paused") == 1
    assert metric_value(registry, "tuya_events_catalogue_pauses_total", code="28841004") == 1
    assert all(e[4] is False for e in seen.events)

    seen_again = Seen()
    run(settings, seen_again, lambda h: _one(h, seen_again, NEW))
    assert len(device_calls(cloud)) == 1, "the pause is kept in the catalogue file"


async def _one(harness: Harness, seen: Seen, device: str) -> None:
    publish(harness, device, 0)
    await wait_until(lambda: len(seen.events) == 1, timeout=20)


def test_a_restart_reuses_the_catalogue_with_no_call_at_all(
    tmp_path: Path, cloud: FakeTuyaOpenApi
) -> None:
    settings = settings_for(tmp_path, cloud)
    asyncio.run(fill(settings, KNOWN, NEW))
    cloud.clear()
    seen = Seen()

    async def scenario(harness: Harness) -> None:
        publish(harness, KNOWN, 235)
        publish(harness, NEW, 7)
        await wait_until(lambda: len(seen.events) == 2, timeout=20)

    run(settings, seen, scenario)
    assert cloud.requests() == []  # not even a token
    assert sorted(seen.events) == sorted(
        [(KNOWN, 235, "Kitchen sensor", 23.5, True), (NEW, 7, "Hall sensor", 0.7, True)]
    )
    stored = catalogue_path(settings).read_bytes()
    for record in cloud.devices.values():
        assert record["local_key"].encode() not in stored


def test_renames_update_the_catalogue_with_a_call_only_when_the_event_lacks_the_name(
    tmp_path: Path, cloud: FakeTuyaOpenApi
) -> None:
    settings = settings_for(tmp_path, cloud)
    asyncio.run(fill(settings, KNOWN, NEW))
    cloud.clear()
    cloud.devices[NEW]["name"] = "Hall sensor, renamed in the app"
    seen = Seen()

    async def scenario(harness: Harness) -> None:
        publish_event(harness, KNOWN, "nameUpdate", name="Kitchen, by the window")
        publish(harness, KNOWN, 1)
        publish_event(harness, NEW, "nameUpdate")  # no name: the catalogue asks
        await wait_until(lambda: len(seen.events) == 3, timeout=20)
        catalogue = harness.daemon.catalogue
        assert catalogue is not None
        await wait_until(
            lambda: catalogue.devices[NEW].name == "Hall sensor, renamed in the app", timeout=20
        )

    run(settings, seen, scenario)
    assert seen.events[0][2] == "Kitchen, by the window"  # the rename event carries the new name
    assert seen.events[1][2] == "Kitchen, by the window"
    assert [r.path for r in device_calls(cloud)] == ["/v1.0/iot-03/devices"]
    with CatalogueStore(catalogue_path(settings)) as store:
        names = {device.id: device.name for device in store.load()}
    assert names == {KNOWN: "Kitchen, by the window", NEW: "Hall sensor, renamed in the app"}


def test_dp_name_updates_name_the_data_point(tmp_path: Path, cloud: FakeTuyaOpenApi) -> None:
    settings = settings_for(tmp_path, cloud)
    asyncio.run(fill(settings, KNOWN))
    cloud.clear()
    seen = Seen()
    names: list[str | None] = []

    class Names(BaseHandler):
        def handle(self, event: Event, delivery: Delivery) -> None:
            if isinstance(event, StatusReport):
                names.append(event.statuses[0].name)

    async def scenario(harness: Harness) -> None:
        publish_event(harness, KNOWN, "dpNameUpdate", dpId="1", name="Counter")
        publish(harness, KNOWN, 3)
        await wait_until(lambda: len(names) == 1, timeout=20)

    async def main() -> None:
        async with Harness(settings, [seen, Names("names")]) as harness:
            await scenario(harness)

    asyncio.run(main())
    assert names == ["Counter"]
    assert cloud.requests() == []


def test_1106_on_iot_03_falls_back_and_the_catalogue_remembers(
    tmp_path: Path, cloud: FakeTuyaOpenApi
) -> None:
    settings = settings_for(tmp_path, cloud)
    cloud.denied_families.add("iot-03")
    asyncio.run(fill(settings, KNOWN))
    asyncio.run(fill(settings, NEW))
    iot_03 = [r for r in device_calls(cloud) if r.path.startswith("/v1.0/iot-03/")]
    assert len(iot_03) == 1, "only the very first call tried iot-03"
    with CatalogueStore(catalogue_path(settings)) as store:
        assert {device.id: device.name for device in store.load()} == {
            KNOWN: "Kitchen sensor",
            NEW: "Hall sensor",
        }
        assert store.meta("api_family") == "devices"


def test_enrichment_off_leaves_events_as_they_were(tmp_path: Path, cloud: FakeTuyaOpenApi) -> None:
    settings = settings_for(tmp_path, cloud)
    asyncio.run(fill(settings, KNOWN))
    cloud.clear()
    off = make_settings(tmp_path, tuya={"openapi_url": cloud.url})
    seen = Seen()

    async def scenario(harness: Harness) -> None:
        publish(harness, KNOWN, 1)
        await wait_until(lambda: len(seen.events) == 1, timeout=20)

    run(off, seen, scenario)
    assert seen.events == [(KNOWN, 1, None, None, None)]
    assert cloud.requests() == []


def test_a_running_catalogue_follows_a_pause_ended_by_devices_sync_force(
    tmp_path: Path, cloud: FakeTuyaOpenApi
) -> None:
    from tuya_events.catalogue.catalogue import PAUSED_UNTIL_KEY, Catalogue
    from tuya_events.config.settings import CatalogueSettings

    path = tmp_path / "catalogue.sqlite3"
    with CatalogueStore(path) as store:
        store.set_meta(PAUSED_UNTIL_KEY, str(10**10))  # paused, by an earlier quota error

    async def scenario() -> tuple[bool, bool]:
        catalogue = Catalogue(CatalogueStore(path), None, CatalogueSettings(), periodic_check=0.05)
        await catalogue.open()
        before = catalogue.paused
        catalogue.start()
        with CatalogueStore(path) as other:  # what `devices sync --force` writes
            other.set_meta(PAUSED_UNTIL_KEY, "0")
        await wait_until(lambda: not catalogue.paused, timeout=10)
        after = catalogue.paused
        await catalogue.close()
        return before, after

    assert asyncio.run(scenario()) == (True, False)


def test_devices_are_fetched_again_after_the_refresh_interval_and_not_before(
    tmp_path: Path, cloud: FakeTuyaOpenApi
) -> None:
    from tuya_events.assembly import opened_catalogue
    from tuya_events.handlers import HandlerContext
    from tuya_events.observability.metrics import Metrics

    settings = settings_for(tmp_path, cloud)
    asyncio.run(fill(settings, KNOWN, NEW))
    cloud.clear()
    cloud.devices[KNOWN]["name"] = "Kitchen sensor, renamed"

    async def scenario() -> tuple[int, str | None]:
        async with opened_catalogue(
            settings, HandlerContext(settings, Metrics()), background=False
        ) as catalogue:
            catalogue.periodic_check = 0.05
            catalogue.start()
            await asyncio.sleep(0.3)  # checks ran, nothing was due (interval: 24 h)
            quiet = len(device_calls(cloud))
            catalogue.settings = catalogue.settings.model_copy(update={"refresh_interval": 0.01})
            await wait_until(lambda: len(device_calls(cloud)) > 0, timeout=10)
            await wait_until(
                lambda: catalogue.devices[KNOWN].name == "Kitchen sensor, renamed", timeout=10
            )
            return quiet, catalogue.devices[KNOWN].name

    quiet, name = asyncio.run(scenario())
    assert quiet == 0
    assert name == "Kitchen sensor, renamed"
    details = [r for r in device_calls(cloud) if r.path == "/v1.0/iot-03/devices"]
    assert len(details) >= 1
    assert all(len(dict(r.query)["device_ids"].split(",")) == 2 for r in details), "batched"
