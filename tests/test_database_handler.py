"""The ``database`` handler on real SQLite files and a real PostgreSQL: what is stored, that a
redelivery stores nothing twice, that the latest status only moves forward in time, migrations,
refused data, group commit, and configuration errors with key paths.

PostgreSQL-only behaviour (outages through the pipeline, concurrent migrations) is in
tests/test_database_postgres.py.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.pipeline_support import ENCODER, Harness
from tests.support.events import T0, device_doc, sample, status, status_doc
from tests.support.settings import make_settings, routes_of
from tests.support.waiting import wait_until
from tuya_events.config import ConfigError, load_settings
from tuya_events.config.loader import settings_from_mapping
from tuya_events.config.render import render_effective_config
from tuya_events.delivery import Delivery
from tuya_events.handlers.base import HandlerError
from tuya_events.handlers.database import DatabaseHandler, DatabaseOptions
from tuya_events.handlers.database.errors import REFUSED, UNAVAILABLE, classify
from tuya_events.handlers.database.schema import LATEST_VERSION
from tuya_events.tuya.events import Event, build_event

# --- the two backends -----------------------------------------------------------------------


@dataclass
class Target:
    """Where a test's handler writes, and a way to read it back independently."""

    dialect: str
    location: str  # a file path or a DSN

    def options(self, **extra: Any) -> DatabaseOptions:
        key = "path" if self.dialect == "sqlite" else "dsn"
        return DatabaseOptions.model_validate({key: self.location, **extra})

    async def fetch(self, sql: str) -> list[tuple[Any, ...]]:
        if self.dialect == "sqlite":
            connection = sqlite3.connect(self.location)
            try:
                return [tuple(row) for row in connection.execute(sql).fetchall()]
            finally:
                connection.close()
        connection = await asyncpg.connect(self.location)
        try:
            return [tuple(row) for row in await connection.fetch(sql)]
        finally:
            await connection.close()

    async def execute(self, *statements: str) -> None:
        if self.dialect == "sqlite":
            connection = sqlite3.connect(self.location, isolation_level=None)
            try:
                for statement in statements:
                    connection.execute(statement)
            finally:
                connection.close()
            return
        connection = await asyncpg.connect(self.location)
        try:
            for statement in statements:
                await connection.execute(statement)
        finally:
            await connection.close()

    async def columns(self, table: str) -> set[str]:
        if self.dialect == "sqlite":
            return {row[1] for row in await self.fetch(f"PRAGMA table_info({table})")}
        rows = await self.fetch(
            f"SELECT column_name FROM information_schema.columns WHERE table_name = '{table}'"
        )
        return {row[0] for row in rows}

    async def indexes(self, table: str) -> set[str]:
        if self.dialect == "sqlite":
            return {row[1] for row in await self.fetch(f"PRAGMA index_list({table})")}
        rows = await self.fetch(f"SELECT indexname FROM pg_indexes WHERE tablename = '{table}'")
        return {row[0] for row in rows}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    if request.param == "sqlite":
        yield Target("sqlite", str(tmp_path / "db" / "events.sqlite3"))
    else:
        yield Target("postgres", request.getfixturevalue("postgres_dsn"))


async def handle_all(handler: DatabaseHandler, samples: list[tuple[Event, Delivery]]) -> None:
    """Concurrently, as the pipeline does for different devices."""
    await asyncio.gather(*(handler.handle(event, delivery) for event, delivery in samples))


async def started(target: Target, **options: Any) -> DatabaseHandler:
    handler = DatabaseHandler("db", target.options(**options))
    await handler.start()
    return handler


# --- what is stored -------------------------------------------------------------------------


def test_every_event_is_stored_with_its_metadata_and_document(target: Target) -> None:
    report = status_doc("dev-a", "data-1", ("switch_1", True, T0), ("cur_power", 125, T0 + 1))
    online = device_doc("dev-b", "data-2", "online", T0 + 2)
    unknown = {"devId": "dev-c", "something": [1, 2, {"x": None}]}  # no dataId, protocol 99
    samples = [sample(report), sample(online, 20), sample(unknown, 99, message_id="(7,1,3,-1)")]

    async def scenario() -> list[tuple[Any, ...]]:
        handler = await started(target)
        try:
            await handle_all(handler, samples)
        finally:
            await handler.stop()
        return await target.fetch(
            "SELECT id, kind, protocol, device_id, product_key, biz_code, event_time_ms, "
            "publish_time_ms, received_at_ms, partition, message_id, topic, document "
            "FROM tuya_events ORDER BY id"
        )

    rows = {row[0]: row for row in asyncio.run(scenario())}
    assert set(rows) == {"(7,1,3,-1)", "data-1", "data-2"}  # no dataId: the message id
    assert rows["data-1"][1:8] == ("status", 4, "dev-a", "pk-1", None, T0 + 1, T0 + 5_000)
    assert rows["data-2"][1:8] == (
        "device_event",
        20,
        "dev-b",
        "pk-1",
        "online",
        T0 + 2,
        T0 + 5_000,
    )
    assert rows["(7,1,3,-1)"][1:7] == ("generic", 99, "dev-c", None, None, None)
    topic = "persistent://tuya/test/event"
    assert rows["data-1"][9:12] == (3, "msg-data-1", topic)
    assert rows["(7,1,3,-1)"][9:12] == (3, "(7,1,3,-1)", topic)
    for row, document in (
        (rows["data-1"], report),
        (rows["data-2"], online),
        (rows["(7,1,3,-1)"], unknown),
    ):
        assert row[8] > T0  # received_at_ms, by the wall clock
        assert json.loads(row[12]) == document  # the decrypted JSON, unchanged


def test_device_events_are_stored_once_each(target: Target) -> None:
    events = [
        sample(device_doc("dev-a", "d-1", "online", T0), 20),
        sample(device_doc("dev-a", "d-2", "offline", T0 + 60_000), 20),
        sample(device_doc("dev-b", "d-3", "nameUpdate", T0 + 1), 20),
        sample(status_doc("dev-a", "s-1", ("switch_1", True, T0)), 4),  # not a device event
    ]

    async def scenario() -> list[tuple[Any, ...]]:
        handler = await started(target)
        try:
            await handle_all(handler, events)
            await handle_all(handler, events[:2])  # redelivered
        finally:
            await handler.stop()
        return await target.fetch(
            "SELECT id, device_id, biz_code, biz_data, event_time_ms FROM tuya_device_events "
            "ORDER BY id"
        )

    rows = asyncio.run(scenario())
    assert [row[:3] for row in rows] == [
        ("d-1", "dev-a", "online"),
        ("d-2", "dev-a", "offline"),
        ("d-3", "dev-b", "nameUpdate"),
    ]
    assert json.loads(rows[1][3]) == {
        "devId": "dev-a",
        "name": "Kitchen plug",
        "time": (T0 + 60_000) // 1000,
    }
    assert [row[4] for row in rows] == [T0, T0 + 60_000, T0 + 1]


def test_a_redelivery_stores_nothing_twice(target: Target) -> None:
    """Same messages again, in the same run and after a restart: one row per event."""
    samples = [status(f"dev-{d}", seq, seq, T0 + seq) for d in range(5) for seq in range(4)]
    samples += [sample(device_doc(f"dev-{d}", f"online-{d}", "online", T0), 20) for d in range(5)]

    async def counts() -> tuple[int, int, int]:
        result = []
        for table in ("tuya_events", "tuya_latest_status", "tuya_device_events"):
            result.append((await target.fetch(f"SELECT COUNT(*) FROM {table}"))[0][0])
        return (result[0], result[1], result[2])

    async def scenario() -> list[tuple[int, int, int]]:
        seen = []
        handler = await started(target)
        try:
            for batch in (samples[:10], samples, samples[5:]):
                await handle_all(handler, batch)
                seen.append(await counts())
        finally:
            await handler.stop()
        restarted = await started(target)  # a new daemon gets them all again
        try:
            await handle_all(restarted, samples)
        finally:
            await restarted.stop()
        seen.append(await counts())
        return seen

    after_first, *after_redeliveries = asyncio.run(scenario())
    assert after_first == (10, 3, 0)
    assert after_redeliveries == [(25, 5, 5)] * 3


def test_latest_status_only_moves_forward_in_time(target: Target) -> None:
    async def latest(code: str = "switch_1") -> tuple[Any, int, str]:
        rows = await target.fetch(
            f"SELECT value, t_ms, event_id FROM tuya_latest_status "
            f"WHERE device_id = 'dev-a' AND code = '{code}'"
        )
        value, t_ms, event_id = rows[0]
        return json.loads(value), t_ms, event_id

    async def scenario() -> list[tuple[Any, int, str]]:
        seen = []
        handler = await started(target)
        try:
            await handler.handle(*status("dev-a", 1, "newer", T0 + 200))
            seen.append(await latest())
            await handler.handle(*status("dev-a", 2, "older", T0 + 100))  # arrives late
            seen.append(await latest())
            await handler.handle(*status("dev-a", 3, "same time", T0 + 200))  # equal t
            seen.append(await latest())
            await handler.handle(*status("dev-a", 4, {"h": 120, "s": 1000}, T0 + 300))
            seen.append(await latest())
            # In one batch (and one report): the newest t wins whatever the order.
            await handle_all(
                handler,
                [
                    sample(status_doc("dev-a", "b-1", ("switch_1", "t+500", T0 + 500))),
                    sample(status_doc("dev-a", "b-2", ("switch_1", "t+400", T0 + 400))),
                    sample(
                        status_doc(
                            "dev-a", "b-3", ("cur_power", 7, T0 + 9), ("cur_power", 8, T0 + 8)
                        )
                    ),
                ],
            )
            seen.append(await latest())
            seen.append(await latest("cur_power"))
        finally:
            await handler.stop()
        return seen

    assert asyncio.run(scenario()) == [
        ("newer", T0 + 200, "dev-a-1"),
        ("newer", T0 + 200, "dev-a-1"),  # an older report does not overwrite
        ("newer", T0 + 200, "dev-a-1"),  # nor does one of the same time: the first one stays
        ({"h": 120, "s": 1000}, T0 + 300, "dev-a-4"),
        ("t+500", T0 + 500, "b-1"),
        (7, T0 + 9, "b-3"),
    ]


def test_a_data_point_without_its_own_time_takes_the_report_time(target: Target) -> None:
    document = {"dataId": "x-1", "devId": "dev-a", "status": [{"code": "pir", "value": "pir"}]}
    event = build_event(document, 4, envelope_t_ms=T0 + 42)

    async def scenario() -> list[tuple[Any, ...]]:
        handler = await started(target)
        try:
            await handler.handle(event, sample(document)[1])
        finally:
            await handler.stop()
        return await target.fetch("SELECT code, t_ms FROM tuya_latest_status")

    assert asyncio.run(scenario()) == [("pir", T0 + 42)]


def test_store_options_choose_the_tables(target: Target) -> None:
    samples = [status("dev-a", 1, True, T0), sample(device_doc("dev-a", "d-1", "online", T0), 20)]

    async def scenario() -> list[int]:
        handler = await started(target, store_events=False, store_device_events=False)
        try:
            await handle_all(handler, samples)
            # A device event stores nothing here: handled at once, nothing to wait for.
            assert handler.batcher.items == 1
        finally:
            await handler.stop()
        tables = ("tuya_events", "tuya_latest_status", "tuya_device_events")
        return [(await target.fetch(f"SELECT COUNT(*) FROM {t}"))[0][0] for t in tables]

    assert asyncio.run(scenario()) == [0, 1, 0]


def test_table_prefix_keeps_two_handlers_apart(target: Target) -> None:
    async def scenario() -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        first = await started(target, table_prefix="site_a_")
        second = await started(target, table_prefix="site_b_")
        try:
            await first.handle(*status("dev-a", 1, True, T0))
            await second.handle(*status("dev-b", 1, True, T0))
        finally:
            await first.stop()
            await second.stop()
        return (
            await target.fetch("SELECT id FROM site_a_events"),
            await target.fetch("SELECT version FROM site_b_schema_migrations ORDER BY version"),
        )

    events_a, versions_b = asyncio.run(scenario())
    assert events_a == [("dev-a-1",)]
    assert versions_b == [(v,) for v in range(1, LATEST_VERSION + 1)]


# --- commits and batches --------------------------------------------------------------------


def test_handle_returns_only_once_its_row_is_committed(target: Target) -> None:
    """What the pipeline relies on before acknowledging: seen by another connection at once."""
    samples = [status(f"dev-{n}", 1, n, T0 + n) for n in range(60)]
    missing: list[str] = []

    async def one(event: Event, delivery: Delivery, handler: DatabaseHandler) -> None:
        await handler.handle(event, delivery)
        rows = await target.fetch(f"SELECT id FROM tuya_events WHERE id = '{event.data_id}'")
        if not rows:
            missing.append(str(event.data_id))

    async def scenario() -> tuple[int, int]:
        handler = await started(target, batch={"max_size": 25, "max_wait": "200ms"})
        try:
            await asyncio.gather(*(one(e, d, handler) for e, d in samples))
        finally:
            await handler.stop()
        return handler.batcher.batches, handler.batcher.items

    batches, items = asyncio.run(scenario())
    assert missing == []
    assert items == 60
    assert batches == 3  # 25 + 25 at once, the last 10 after max_wait


def test_stop_writes_what_is_still_waiting(target: Target) -> None:
    async def scenario() -> list[tuple[Any, ...]]:
        handler = await started(target, batch={"max_size": 500, "max_wait": "10s"})
        tasks = [
            asyncio.ensure_future(handler.handle(*status(f"dev-{n}", 1, n, T0))) for n in range(3)
        ]
        await asyncio.sleep(0.05)
        assert not any(task.done() for task in tasks)  # waiting for the batch to fill
        await handler.stop()
        await asyncio.gather(*tasks)
        return await target.fetch("SELECT id FROM tuya_events ORDER BY id")

    assert asyncio.run(scenario()) == [("dev-0-1",), ("dev-1-1",), ("dev-2-1",)]


# --- refused data ---------------------------------------------------------------------------


def test_a_value_the_database_refuses_fails_alone_and_is_not_retryable(target: Target) -> None:
    """A time beyond 64 bits: neither SQLite nor PostgreSQL can hold it. The other events of
    the same batch are committed all the same. (The codec treats such a time in a message as
    missing; a broker's publish time is the transport's, and reaches the database as it is.)"""
    good = [status(f"dev-{n}", 1, n, T0 + n) for n in range(8)]
    bad = sample(status_doc("dev-bad", "bad-1", ("switch_1", True, T0)))
    bad[1].publish_time_ms = 2**70

    async def scenario() -> tuple[list[BaseException | None], int, list[tuple[Any, ...]]]:
        handler = await started(target)
        try:
            outcomes = await asyncio.gather(
                *(handler.handle(e, d) for e, d in [*good[:4], bad, *good[4:]]),
                return_exceptions=True,
            )
        finally:
            await handler.stop()
        rows = await target.fetch("SELECT id FROM tuya_events ORDER BY id")
        return outcomes, handler.batcher.batches, rows

    outcomes, batches, rows = asyncio.run(scenario())
    assert batches == 1
    errors = [outcome for outcome in outcomes if outcome is not None]
    assert len(errors) == 1 and outcomes[4] is errors[0]
    error = errors[0]
    assert isinstance(error, HandlerError)
    assert (error.reason, error.retryable, error.infrastructure) == (REFUSED, False, False)
    assert "refused" in error.message
    assert rows == [(f"dev-{n}-1",) for n in range(8)]


def test_refused_event_is_dead_lettered_through_the_pipeline_and_the_rest_stored(
    tmp_path: Path,
) -> None:
    db = tmp_path / "events.sqlite3"
    handler = DatabaseHandler("db", DatabaseOptions(path=str(db)))
    documents = [status_doc(f"dev-{n}", f"ok-{n}", ("switch_1", n, T0 + n)) for n in range(10)]
    bad = status_doc("dev-bad", "bad-1", ("switch_1", True, T0))

    async def scenario() -> None:
        async with Harness(make_settings(tmp_path), [handler]) as h:
            for document in documents:
                h.source.publish(*ENCODER.encode(document, em="aes_gcm", protocol=4))
                if document is documents[4]:  # a broker time beyond 64 bits, in the middle
                    body, properties = ENCODER.encode(bad, em="aes_gcm", protocol=4)
                    h.source.publish(body, properties, publish_time_ms=2**70)
            await wait_until(lambda: len(h.source.acknowledged) == len(documents) + 1)
            records = h.store.list()
            assert [(r.device_id, r.handler, r.reason, r.attempts) for r in records] == [
                ("dev-bad", "db", REFUSED, 1)
            ]
            assert "refused" in records[0].message

    asyncio.run(scenario())
    with sqlite3.connect(db) as connection:
        ids = [row[0] for row in connection.execute("SELECT id FROM tuya_events ORDER BY id")]
    assert ids == sorted(f"ok-{n}" for n in range(10))


# --- migrations -----------------------------------------------------------------------------

# Version 1 as the first release created it, written out by hand: the migration to version 2
# must work on exactly this.
V1_SQLITE = (
    "CREATE TABLE tuya_schema_migrations (version INTEGER PRIMARY KEY, "
    "description TEXT NOT NULL, applied_at_ms INTEGER NOT NULL)",
    "CREATE TABLE tuya_events (id TEXT PRIMARY KEY, kind TEXT NOT NULL, protocol INTEGER, "
    "device_id TEXT, product_key TEXT, biz_code TEXT, event_time_ms INTEGER, "
    "publish_time_ms INTEGER, received_at_ms INTEGER NOT NULL, partition INTEGER, "
    "message_id TEXT NOT NULL, document TEXT NOT NULL)",
    "CREATE TABLE tuya_latest_status (device_id TEXT NOT NULL, code TEXT NOT NULL, "
    "value TEXT NOT NULL, t_ms INTEGER NOT NULL, event_id TEXT NOT NULL, "
    "updated_at_ms INTEGER NOT NULL, PRIMARY KEY (device_id, code))",
    "CREATE TABLE tuya_device_events (id TEXT PRIMARY KEY, device_id TEXT, "
    "biz_code TEXT NOT NULL, biz_data TEXT NOT NULL, event_time_ms INTEGER, "
    "received_at_ms INTEGER NOT NULL)",
)
V1_POSTGRES = (
    "CREATE TABLE tuya_schema_migrations (version INTEGER PRIMARY KEY, "
    "description TEXT NOT NULL, applied_at_ms BIGINT NOT NULL)",
    "CREATE TABLE tuya_events (id TEXT PRIMARY KEY, kind TEXT NOT NULL, protocol INTEGER, "
    "device_id TEXT, product_key TEXT, biz_code TEXT, event_time_ms BIGINT, "
    "publish_time_ms BIGINT, received_at_ms BIGINT NOT NULL, partition INTEGER, "
    "message_id TEXT NOT NULL, document JSONB NOT NULL)",
    "CREATE TABLE tuya_latest_status (device_id TEXT NOT NULL, code TEXT NOT NULL, "
    "value JSONB NOT NULL, t_ms BIGINT NOT NULL, event_id TEXT NOT NULL, "
    "updated_at_ms BIGINT NOT NULL, PRIMARY KEY (device_id, code))",
    "CREATE TABLE tuya_device_events (id TEXT PRIMARY KEY, device_id TEXT, "
    "biz_code TEXT NOT NULL, biz_data JSONB NOT NULL, event_time_ms BIGINT, "
    "received_at_ms BIGINT NOT NULL)",
)
V1_ROWS = (
    "INSERT INTO tuya_schema_migrations VALUES (1, 'events, latest_status, device_events', 1)",
    "INSERT INTO tuya_events VALUES ('old-1', 'status', 4, 'dev-a', 'pk', NULL, 1, 2, 3, 0, "
    "'m-1', '{\"devId\": \"dev-a\"}')",
    "INSERT INTO tuya_latest_status VALUES "
    "('dev-a', 'switch_1', 'true', 1700000001000, 'old-1', 3)",
)


def test_an_empty_database_is_migrated_to_the_latest_version(target: Target) -> None:
    async def scenario() -> tuple[list[tuple[Any, ...]], set[str], set[str]]:
        handler = await started(target)
        await handler.stop()
        again = await started(target)  # nothing left to do the second time
        await again.stop()
        versions = await target.fetch("SELECT version FROM tuya_schema_migrations ORDER BY 1")
        return versions, await target.columns("tuya_events"), await target.indexes("tuya_events")

    versions, columns, indexes = asyncio.run(scenario())
    assert versions == [(v,) for v in range(1, LATEST_VERSION + 1)]
    assert {"id", "document", "topic", "event_time_ms", "received_at_ms"} <= columns
    assert "tuya_events_device_time" in indexes
    if target.dialect == "sqlite":
        with sqlite3.connect(target.location) as connection:
            assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_version_1_database_is_migrated_and_keeps_its_rows(target: Target) -> None:
    async def scenario() -> dict[str, Any]:
        if target.dialect == "sqlite":
            Path(target.location).parent.mkdir()
        await target.execute(*(V1_SQLITE if target.dialect == "sqlite" else V1_POSTGRES), *V1_ROWS)
        before = await target.columns("tuya_events")
        handler = await started(target)
        try:
            await handler.handle(*status("dev-a", 9, False, T0))  # older than the stored t
            await handler.handle(*status("dev-b", 9, True, T0))
        finally:
            await handler.stop()
        return {
            "before": before,
            "after": await target.columns("tuya_events"),
            "indexes": await target.indexes("tuya_device_events"),
            "versions": await target.fetch("SELECT version FROM tuya_schema_migrations ORDER BY 1"),
            "events": await target.fetch("SELECT id, topic FROM tuya_events ORDER BY id"),
            "latest": await target.fetch(
                "SELECT device_id, t_ms, event_id FROM tuya_latest_status ORDER BY device_id"
            ),
        }

    found = asyncio.run(scenario())
    assert "topic" not in found["before"]
    assert found["after"] == found["before"] | {"topic"}
    assert "tuya_device_events_device_time" in found["indexes"]
    assert found["versions"] == [(v,) for v in range(1, LATEST_VERSION + 1)]
    assert found["events"] == [
        ("dev-a-9", "persistent://tuya/test/event"),
        ("dev-b-9", "persistent://tuya/test/event"),
        ("old-1", None),  # written by version 1: no topic
    ]
    assert found["latest"] == [("dev-a", T0 + 1000, "old-1"), ("dev-b", T0, "dev-b-9")]


def test_a_schema_newer_than_the_code_stops_the_start(target: Target) -> None:
    async def scenario() -> None:
        handler = await started(target)
        await handler.stop()
        await target.execute("INSERT INTO tuya_schema_migrations VALUES (99, 'from the future', 1)")
        newer = DatabaseHandler("db", target.options())
        try:
            with pytest.raises(ConfigError) as caught:
                await newer.start()
        finally:
            await newer.stop()
        ((key, problem),) = caught.value.problems
        assert key.endswith(".table_prefix")
        assert f"version 99, newer than this tuya-events knows ({LATEST_VERSION})" in problem

    asyncio.run(scenario())


# --- SQLite specifics -----------------------------------------------------------------------


def test_sqlite_locked_by_another_process_is_an_outage_then_recovers(tmp_path: Path) -> None:
    """A backup or a reader that holds the write lock: retried later, never dead-lettered."""
    path = tmp_path / "events.sqlite3"

    async def scenario() -> tuple[HandlerError, list[tuple[Any, ...]]]:
        handler = DatabaseHandler("db", DatabaseOptions(path=str(path), busy_timeout="50ms"))
        await handler.start()
        other = sqlite3.connect(path, isolation_level=None)
        try:
            other.execute("BEGIN EXCLUSIVE")
            with pytest.raises(HandlerError) as caught:
                await handler.handle(*status("dev-a", 1, True, T0))
            other.execute("ROLLBACK")
            await handler.handle(*status("dev-a", 1, True, T0))  # the retry
        finally:
            other.close()
            await handler.stop()
        with sqlite3.connect(path) as check:
            rows = check.execute("SELECT id FROM tuya_events").fetchall()
        return caught.value, rows

    error, rows = asyncio.run(scenario())
    assert (error.reason, error.infrastructure, error.retryable) == (UNAVAILABLE, True, True)
    assert "locked" in error.message
    assert rows == [("dev-a-1",)]


def test_an_unusable_sqlite_path_fails_the_start_as_a_configuration_error(
    tmp_path: Path,
) -> None:
    (tmp_path / "a-directory").mkdir()
    settings = _settings(
        {"type": "log"}, {"type": "database", "path": str(tmp_path / "a-directory")}
    )
    (_, route) = routes_of(settings)

    async def scenario() -> None:
        try:
            await route.handler.start()
        finally:
            await route.handler.stop()

    with pytest.raises(ConfigError) as caught:
        asyncio.run(scenario())
    ((key, problem),) = caught.value.problems
    assert key == "handlers[1].path"  # exits 78, naming the key
    assert "cannot open" in problem and "a-directory" in problem


# --- errors never carry the DSN's password --------------------------------------------------


def test_error_messages_are_scrubbed_of_the_dsn_and_its_password() -> None:
    dsn = "postgresql://tuya:pa55-w0rd-x@db.example:5432/events?sslmode=require"
    options = DatabaseOptions(dsn=dsn)
    leaked = OSError(f"could not reach {dsn} (password pa55-w0rd-x)")
    error = classify(leaked, options.dsn_secrets())
    assert error.infrastructure
    assert "pa55-w0rd-x" not in error.message and dsn not in error.message
    assert "could not reach *** (password ***)" in error.message
    assert "pa55-w0rd-x" not in repr(options)  # SecretStr


# --- configuration --------------------------------------------------------------------------


def _settings(*handlers: dict[str, Any]) -> Any:
    tree = {
        "tuya": {"access_id": "a" * 20, "access_secret": "s" * 32, "region": "eu"},
        "handlers": list(handlers),
    }
    return settings_from_mapping(tree, {})


def test_configuration_errors_name_their_key_paths() -> None:
    settings = _settings(
        {"type": "database", "name": "both", "path": "a.db", "dsn": "postgresql://h/db"},
        {"type": "database", "name": "neither"},
        {"type": "database", "name": "pg-only", "path": "a.db", "pool_size": 8},
        {"type": "database", "name": "prefix", "path": "a.db", "table_prefix": "Bad-"},
        {"type": "database", "name": "batch", "path": "a.db", "batch": {"max_size": 0}},
        {"type": "database", "name": "typo", "path": "a.db", "store_event": False},
        {
            "type": "database",
            "name": "nothing",
            "path": "a.db",
            "store_events": False,
            "store_latest_status": False,
            "store_device_events": False,
        },
        {"type": "database", "name": "fine", "path": "a.db", "batch": {"max_wait": "20ms"}},
    )
    with pytest.raises(ConfigError) as caught:
        routes_of(settings)
    problems = dict(caught.value.problems)
    assert "not both" in problems.pop("handlers[0].dsn")
    assert "neither" in problems.pop("handlers[1].path")
    assert "PostgreSQL (dsn) only" in problems.pop("handlers[2].pool_size")
    assert "pattern" in problems.pop("handlers[3].table_prefix")
    assert "greater than or equal to 1" in problems.pop("handlers[4].batch.max_size")
    assert "Extra inputs" in problems.pop("handlers[5].store_event")
    assert "nothing would be stored" in problems.pop("handlers[6].store_events")
    assert problems == {}  # handlers[7] is fine


def test_a_bad_dsn_scheme_is_a_configuration_error() -> None:
    settings = _settings({"type": "database", "dsn": "mysql://h/db"})
    with pytest.raises(ConfigError) as caught:
        routes_of(settings)
    assert "postgresql://" in dict(caught.value.problems)["handlers[0].dsn"]


def test_dsn_file_is_read_and_masked(tmp_path: Path) -> None:
    secret = tmp_path / "dsn"
    secret.write_text("postgresql://tuya:f1le-secret-pw@db.example/events\n")
    config = tmp_path / "config.yaml"
    config.write_text(
        "tuya: {access_id: aaaaaaaaaaaaaaaaaaaa, region: eu,\n"
        "       access_secret: ssssssssssssssssssssssssssssssss}\n"
        f"handlers:\n  - type: database\n    dsn_file: {secret}\n"
    )
    settings = load_settings(config)
    (route,) = routes_of(settings)
    handler = route.handler
    assert isinstance(handler, DatabaseHandler)
    assert handler.options.dsn is not None
    assert handler.options.dsn.get_secret_value().endswith("@db.example/events")
    assert handler.options.backend == "postgres"
    assert "f1le-secret-pw" not in render_effective_config(settings)
