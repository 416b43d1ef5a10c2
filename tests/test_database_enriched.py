"""The ``database`` handler with enrichment, on real SQLite files and a real PostgreSQL: schema
version 3 on a version 2 database (rows kept), the scaled value, unit and name of each latest
status (moving only forward in time, like the value), the ``devices`` table upserted once per
snapshot of a device, and NULLs and no devices row when enrichment is off or the device unknown.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.enriched_events import (
    BATTERY,
    FETCHED_MS,
    HUMIDITY,
    TEMPERATURE,
    enrich,
    thermometer,
)
from tests.support.events import T0, device_doc, sample, status_doc
from tests.test_database_handler import V1_POSTGRES, V1_ROWS, V1_SQLITE, Target
from tuya_events.delivery import Delivery
from tuya_events.handlers.base import HandlerError
from tuya_events.handlers.database import DatabaseHandler, DatabaseOptions
from tuya_events.tuya.devices import UNKNOWN_DEVICE, Device, DeviceView
from tuya_events.tuya.events import Event


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    if request.param == "sqlite":
        yield Target("sqlite", str(tmp_path / "db" / "events.sqlite3"))
    else:
        yield Target("postgres", request.getfixturevalue("postgres_dsn"))


async def started(target: Target, **options: Any) -> DatabaseHandler:
    handler = DatabaseHandler("db", target.options(**options))
    await handler.start()
    return handler


def reading(
    seq: int,
    device: DeviceView | None,
    t: int = T0,
    device_id: str = "dev-a",
    **values: Any,
) -> tuple[Event, Delivery]:
    """A status report of ``device_id`` (``code=value`` at ``t``), enriched with ``device``."""
    points = [(code, value, t) for code, value in values.items()]
    event, delivery = sample(status_doc(device_id, f"{device_id}-{seq}", *points))
    return (event if device is None else enrich(event, device)), delivery


async def handle_all(handler: DatabaseHandler, samples: list[tuple[Event, Delivery]]) -> None:
    await asyncio.gather(*(handler.handle(event, delivery) for event, delivery in samples))


def loads(value: Any) -> Any:
    return None if value is None else json.loads(value)


async def statuses(target: Target, device_id: str = "dev-a") -> dict[str, tuple[Any, ...]]:
    rows = await target.fetch(
        "SELECT code, value, t_ms, event_id, scaled, unit, name FROM tuya_latest_status "
        f"WHERE device_id = '{device_id}'"
    )
    return {
        code: (loads(value), t_ms, event_id, loads(scaled), unit, name)
        for code, value, t_ms, event_id, scaled, unit, name in rows
    }


DEVICE_SQL = (
    "SELECT id, name, product_id, product_name, category, model, time_zone, specification, "
    "fetched_at_ms, specification_fetched_at_ms FROM tuya_devices ORDER BY id"
)


async def devices(target: Target) -> list[tuple[Any, ...]]:
    return [(*row[:7], loads(row[7]), *row[8:]) for row in await target.fetch(DEVICE_SQL)]


def spec(device: Device) -> list[dict[str, Any]]:
    return [point.as_dict() for point in device.points.values()]


# --- the schema -----------------------------------------------------------------------------

V2 = (
    "ALTER TABLE tuya_events ADD COLUMN topic TEXT",
    "CREATE INDEX tuya_events_device_time ON tuya_events (device_id, event_time_ms)",
    "CREATE INDEX tuya_device_events_device_time ON tuya_device_events (device_id, event_time_ms)",
    "INSERT INTO tuya_schema_migrations VALUES (2, 'events.topic; indexes', 2)",
    "INSERT INTO tuya_latest_status VALUES "
    "('dev-a', 'va_temperature', '199', 1700000000100, 'old-1', 3)",
)


def test_a_version_2_database_is_migrated_to_3_and_keeps_its_rows(target: Target) -> None:
    """Version 2 as the second release left it, written out by hand."""

    async def scenario() -> dict[str, Any]:
        if target.dialect == "sqlite":
            Path(target.location).parent.mkdir()
        await target.execute(
            *(V1_SQLITE if target.dialect == "sqlite" else V1_POSTGRES), *V1_ROWS, *V2
        )
        before = await target.columns("tuya_latest_status")
        handler = await started(target)
        try:
            kept = await statuses(target)
            await handler.handle(*reading(1, thermometer(), T0 + 50, va_temperature=235))  # older
            await handler.handle(*reading(2, thermometer(), T0 + 1000, switch_1=False))  # older
            await handler.handle(*reading(3, thermometer(), T0 + 2000, va_humidity=61))
        finally:
            await handler.stop()
        return {
            "before": before,
            "after": await target.columns("tuya_latest_status"),
            "devices": await target.columns("tuya_devices"),
            "versions": await target.fetch("SELECT version FROM tuya_schema_migrations ORDER BY 1"),
            "events": await target.fetch("SELECT id FROM tuya_events ORDER BY id"),
            "kept": kept,
            "latest": await statuses(target),
        }

    found = asyncio.run(scenario())
    assert found["versions"] == [(1,), (2,), (3,)]
    assert found["after"] == found["before"] | {"scaled", "unit", "name"}
    assert found["devices"] == {
        "id",
        "name",
        "product_id",
        "product_name",
        "category",
        "model",
        "time_zone",
        "specification",
        "fetched_at_ms",
        "specification_fetched_at_ms",
        "updated_at_ms",
    }
    old = {
        "switch_1": (True, T0 + 1000, "old-1", None, None, None),
        "va_temperature": (199, T0 + 100, "old-1", None, None, None),
    }
    assert found["kept"] == old  # the new columns of old rows: NULL
    assert found["events"] == [("dev-a-1",), ("dev-a-2",), ("dev-a-3",), ("old-1",)]
    assert found["latest"] == {
        **old,  # the enriched reports were older: nothing of them replaces the old rows
        "va_humidity": (61, T0 + 2000, "dev-a-3", 61, "%", "Cellar humidity"),
    }


def test_an_empty_database_gets_version_3(target: Target) -> None:
    async def scenario() -> tuple[list[tuple[Any, ...]], set[str]]:
        handler = await started(target)
        await handler.stop()
        again = await started(target)
        await again.stop()
        versions = await target.fetch("SELECT version FROM tuya_schema_migrations ORDER BY 1")
        return versions, await target.columns("tuya_latest_status")

    versions, columns = asyncio.run(scenario())
    assert versions == [(1,), (2,), (3,)]
    assert {"scaled", "unit", "name", "value", "t_ms"} <= columns


# --- latest status --------------------------------------------------------------------------


def test_latest_status_carries_the_scaled_value_unit_and_name(target: Target) -> None:
    async def scenario() -> dict[str, tuple[Any, ...]]:
        handler = await started(target)
        try:
            await handler.handle(
                *reading(
                    1,
                    thermometer(),
                    va_temperature=235,
                    va_humidity=61,
                    battery_state="low",
                    mystery={"not": "specified"},
                )
            )
        finally:
            await handler.stop()
        return await statuses(target)

    assert asyncio.run(scenario()) == {
        "va_temperature": (235, T0, "dev-a-1", 23.5, "℃", None),
        "va_humidity": (61, T0, "dev-a-1", 61, "%", "Cellar humidity"),
        "battery_state": ("low", T0, "dev-a-1", "low", None, None),
        "mystery": ({"not": "specified"}, T0, "dev-a-1", None, None, None),  # no point: NULLs
    }


def test_the_new_columns_move_only_forward_in_time_with_the_value(target: Target) -> None:
    celsius = thermometer()
    tenths = thermometer(
        points=(TEMPERATURE.named("Air"), HUMIDITY, BATTERY), specification_fetched_at_ms=T0
    )

    async def scenario() -> list[tuple[Any, ...]]:
        seen = []
        handler = await started(target)
        try:
            await handler.handle(*reading(1, celsius, T0 + 200, va_temperature=235))
            seen.append((await statuses(target))["va_temperature"])
            await handler.handle(*reading(2, tenths, T0 + 100, va_temperature=100))  # late
            seen.append((await statuses(target))["va_temperature"])
            await handler.handle(*reading(3, tenths, T0 + 200, va_temperature=100))  # equal t
            seen.append((await statuses(target))["va_temperature"])
            await handler.handle(*reading(4, tenths, T0 + 300, va_temperature=240))
            seen.append((await statuses(target))["va_temperature"])
            await handler.handle(*reading(5, None, T0 + 400, va_temperature=250))  # not enriched
            seen.append((await statuses(target))["va_temperature"])
            # In one batch: the newest t wins, with its own scaled value, unit and name.
            await handle_all(
                handler,
                [
                    reading(6, celsius, T0 + 600, va_temperature=260),
                    reading(7, tenths, T0 + 500, va_temperature=255),
                ],
            )
            seen.append((await statuses(target))["va_temperature"])
        finally:
            await handler.stop()
        return seen

    assert asyncio.run(scenario()) == [
        (235, T0 + 200, "dev-a-1", 23.5, "℃", None),
        (235, T0 + 200, "dev-a-1", 23.5, "℃", None),
        (235, T0 + 200, "dev-a-1", 23.5, "℃", None),
        (240, T0 + 300, "dev-a-4", 24.0, "℃", "Air"),
        (250, T0 + 400, "dev-a-5", None, None, None),  # newer and not enriched: NULLs
        (260, T0 + 600, "dev-a-6", 26.0, "℃", None),
    ]


def test_enrichment_off_or_an_unknown_device_writes_nulls_and_no_device(target: Target) -> None:
    online, delivery = sample(device_doc("dev-c", "d-1", "online", T0), 20)

    async def scenario() -> tuple[dict[str, tuple[Any, ...]], ...]:
        handler = await started(target)
        try:
            await handle_all(
                handler,
                [
                    reading(1, None, va_temperature=235),
                    reading(1, UNKNOWN_DEVICE, device_id="dev-b", va_temperature=235),
                    (enrich(online, UNKNOWN_DEVICE), delivery),
                ],
            )
        finally:
            await handler.stop()
        return await statuses(target), await statuses(target, "dev-b")

    off, unknown = asyncio.run(scenario())
    assert off == {"va_temperature": (235, T0, "dev-a-1", None, None, None)}
    assert unknown == {"va_temperature": (235, T0, "dev-b-1", None, None, None)}
    assert asyncio.run(target.fetch("SELECT COUNT(*) FROM tuya_devices")) == [(0,)]


# --- devices --------------------------------------------------------------------------------


def test_a_known_device_is_stored_with_its_specification_and_no_secret(target: Target) -> None:
    cellar = thermometer()

    async def scenario() -> list[tuple[Any, ...]]:
        handler = await started(target)
        try:
            await handler.handle(*reading(1, cellar, va_temperature=235))
            # A device event of a known device stores it too.
            online, delivery = sample(device_doc("dev-b", "d-1", "online", T0), 20)
            await handler.handle(enrich(online, thermometer("dev-b", "Attic")), delivery)
        finally:
            await handler.stop()
        return await target.fetch("SELECT * FROM tuya_devices")

    rows = asyncio.run(scenario())
    assert "never-stored" not in repr(rows)  # the local_key never reaches a table
    details = ("prod-th", "T&H Sensor", "wsdcg", "TH01", "+01:00", spec(cellar))
    assert asyncio.run(devices(target)) == [
        ("dev-a", "Cellar", *details, FETCHED_MS, FETCHED_MS),
        ("dev-b", "Attic", *details, FETCHED_MS, FETCHED_MS),
    ]
    assert spec(cellar)[0] == {
        "code": "va_temperature",
        "type": "Integer",
        "dp_id": "1",
        "unit": "℃",
        "min": -200,
        "max": 600,
        "step": 1,
        "scale": 1,
    }


async def tamper(target: Target) -> None:
    """Change the stored row behind the handler's back: a handler that upserts again undoes
    it, one that skips the upsert leaves it (how "written once" is observed)."""
    await target.execute("UPDATE tuya_devices SET name = 'tampered'")


async def stored_name(target: Target) -> str:
    return str((await target.fetch("SELECT name FROM tuya_devices WHERE id = 'dev-a'"))[0][0])


def test_a_device_is_upserted_once_per_snapshot(target: Target) -> None:
    cellar = thermometer()
    same_times = thermometer()  # another object, the same snapshot
    renamed = thermometer(points=(TEMPERATURE.named("Air"), HUMIDITY, BATTERY))  # dpNameUpdate
    refreshed = thermometer(name="Cellar 2", fetched_at_ms=FETCHED_MS + 1)

    async def scenario() -> list[str]:
        seen = []
        handler = await started(target)
        try:
            await handler.handle(*reading(1, cellar, va_temperature=1))
            await tamper(target)
            await handler.handle(*reading(2, cellar, va_temperature=2))
            await handler.handle(*reading(3, same_times, va_temperature=3))
            seen.append(await stored_name(target))  # neither wrote it again
            await handler.handle(*reading(4, renamed, va_temperature=4))
            seen.append(await stored_name(target))  # a renamed point: written
            await tamper(target)
            await handler.handle(*reading(5, refreshed, va_temperature=5))
            seen.append(await stored_name(target))  # new details: written
            await tamper(target)
            await handler.handle(*reading(6, refreshed, va_temperature=6))
            seen.append(await stored_name(target))
        finally:
            await handler.stop()
        restarted = await started(target)  # a new daemon writes each device once again
        try:
            await restarted.handle(*reading(7, refreshed, va_temperature=7))
            seen.append(await stored_name(target))
        finally:
            await restarted.stop()
        return seen

    assert asyncio.run(scenario()) == ["tampered", "Cellar", "Cellar 2", "tampered", "Cellar 2"]
    points = asyncio.run(devices(target))[0][7]
    assert [point.get("name") for point in points] == [None, "Cellar humidity", None]


def test_one_batch_writes_each_device_once_and_keeps_the_newest_snapshot(target: Target) -> None:
    """PostgreSQL refuses an upsert that touches a row twice: the batch merges per device."""
    older = thermometer(name="Old name")
    newer = thermometer(name="New name", specification_fetched_at_ms=FETCHED_MS + 5)
    samples = [
        reading(1, newer, T0 + 1, va_temperature=1),
        reading(2, older, T0 + 2, va_temperature=2),  # an older snapshot, later in the batch
        reading(3, newer, T0 + 3, va_temperature=3),
        reading(1, thermometer("dev-b", "Attic"), T0, device_id="dev-b", va_temperature=4),
        reading(2, older, T0 + 2, va_humidity=5),
    ]

    async def scenario() -> tuple[int, list[tuple[Any, ...]]]:
        handler = await started(target, batch={"max_size": len(samples), "max_wait": "10s"})
        try:
            await handle_all(handler, samples)
        finally:
            await handler.stop()
        return handler.batcher.batches, await target.fetch(
            "SELECT id, name, specification_fetched_at_ms FROM tuya_devices ORDER BY id"
        )

    batches, rows = asyncio.run(scenario())
    assert batches == 1
    assert rows == [("dev-a", "New name", FETCHED_MS + 5), ("dev-b", "Attic", FETCHED_MS)]


def test_an_older_snapshot_never_replaces_a_newer_stored_one(target: Target) -> None:
    """Two daemons on one database, one with a stale catalogue: the stored row stays."""
    older = thermometer(name="Old name")
    newer = thermometer(name="New name", fetched_at_ms=FETCHED_MS + 10)

    async def scenario() -> list[tuple[Any, ...]]:
        fresh = await started(target)
        stale = await started(target)
        try:
            await fresh.handle(*reading(1, newer, va_temperature=1))
            await stale.handle(*reading(2, older, va_temperature=2))
            await fresh.handle(*reading(3, older, va_temperature=3))  # even in the same handler
        finally:
            await fresh.stop()
            await stale.stop()
        return await target.fetch("SELECT name, fetched_at_ms FROM tuya_devices")

    assert asyncio.run(scenario()) == [("New name", FETCHED_MS + 10)]


def test_after_an_outage_each_device_is_written_again(tmp_path: Path) -> None:
    """The database may come back restored from a backup without the device's row."""
    path = tmp_path / "events.sqlite3"
    target = Target("sqlite", str(path))
    cellar = thermometer()

    async def scenario() -> tuple[HandlerError, list[str]]:
        seen = []
        handler = DatabaseHandler("db", DatabaseOptions(path=str(path), busy_timeout="50ms"))
        await handler.start()
        try:
            await handler.handle(*reading(1, cellar, va_temperature=1))
            await tamper(target)
            await handler.handle(*reading(2, cellar, va_temperature=2))
            seen.append(await stored_name(target))
            other = sqlite3.connect(path, isolation_level=None)
            try:
                other.execute("BEGIN EXCLUSIVE")
                with pytest.raises(HandlerError) as caught:
                    await handler.handle(*reading(3, cellar, va_temperature=3))
                other.execute("ROLLBACK")
            finally:
                other.close()
            await handler.handle(*reading(3, cellar, va_temperature=3))  # the retry
            seen.append(await stored_name(target))
        finally:
            await handler.stop()
        return caught.value, seen

    error, seen = asyncio.run(scenario())
    assert error.infrastructure
    assert seen == ["tampered", "Cellar"]
