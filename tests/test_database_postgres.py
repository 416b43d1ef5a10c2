"""The ``database`` handler against a real PostgreSQL that goes away: the outage through the real
pipeline (nothing acknowledged that is not committed, nothing dead-lettered, nothing lost),
a start while the server is down, concurrent migrations, and refused jsonb values.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.pg.cluster import PostgresCluster
from tests.pipeline_support import ENCODER, Harness
from tests.support.events import T0, sample, status, status_doc
from tests.support.ports import free_port
from tests.support.settings import make_settings
from tests.support.waiting import wait_until
from tuya_events.config import ConfigError
from tuya_events.handlers.base import HandlerError
from tuya_events.handlers.database import DatabaseHandler, DatabaseOptions
from tuya_events.handlers.database.errors import REFUSED, UNAVAILABLE
from tuya_events.handlers.database.schema import LATEST_VERSION
from tuya_events.observability.metrics import RETRY

DEVICES = [f"dev{n:02d}" for n in range(20)]


async def fetch(dsn: str, sql: str) -> list[tuple[Any, ...]]:
    connection = await asyncpg.connect(dsn)
    try:
        return [tuple(row) for row in await connection.fetch(sql)]
    finally:
        await connection.close()


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_outage_mid_stream_loses_nothing_and_dead_letters_nothing(
    tmp_path: Path, postgres_cluster: PostgresCluster, postgres_dsn: str, mode: str
) -> None:
    """Events keep coming while the server stops and starts again. ``fast``: a clean shutdown
    that kills every session; ``immediate``: a crash, recovered from the WAL at the next
    start. Batches are caught mid-transaction: a lock held by the test makes them wait on the
    server when it goes. While it is down nothing is acknowledged; once it is back everything
    arrives, exactly one row per event."""
    settings = make_settings(
        tmp_path,
        retry={"initial_backoff": "20ms", "max_backoff": "200ms", "infrastructure_max_time": "5m"},
    )
    options = DatabaseOptions.model_validate(
        {
            "dsn": postgres_dsn,
            "batch": {"max_size": 50, "max_wait": "10ms"},
            "connect_timeout": "2s",
            "command_timeout": "5s",
        }
    )
    handler = DatabaseHandler("db", options)
    rounds = 40
    total = rounds * len(DEVICES)
    observed: dict[str, Any] = {}

    async def publish(h: Harness) -> None:
        for seq in range(rounds):
            for index, device in enumerate(DEVICES):
                document = status_doc(device, f"{device}-{seq}", ("seq", seq, T0 + seq))
                body, properties = ENCODER.encode(document, em="aes_gcm", protocol=4)
                h.source.publish(body, properties, partition=index % 4, key=device)
            await asyncio.sleep(0.03)

    async def scenario() -> None:
        async with Harness(settings, [handler]) as h:
            publisher = asyncio.get_running_loop().create_task(publish(h))
            await wait_until(lambda: len(h.source.acknowledged) >= total // 4)
            blocker = await asyncpg.connect(postgres_dsn)
            await blocker.execute("BEGIN; LOCK TABLE tuya_events IN SHARE ROW EXCLUSIVE MODE")
            await wait_until(lambda: handler.batcher.writing > 0)
            await asyncio.sleep(0.1)  # their INSERTs have reached the server and wait there
            observed["writing_at_stop"] = handler.batcher.writing
            await asyncio.to_thread(postgres_cluster.stop, mode)
            blocker.terminate()
            acked_when_down = len(h.source.acknowledged)
            await asyncio.sleep(1.0)  # events keep arriving; the handler keeps failing
            observed["acked_while_down"] = len(h.source.acknowledged) - acked_when_down
            observed["pending_while_down"] = len(h.source.unacknowledged)
            observed["dead_letters_while_down"] = h.store.count()
            await asyncio.to_thread(postgres_cluster.start)
            await publisher
            await wait_until(lambda: len(h.source.acknowledged) == total, timeout=60)
            observed["dead_letters"] = h.store.count()
            observed["retries"] = h.outcomes("db", RETRY)
        observed["rows"] = await fetch(postgres_dsn, "SELECT id FROM tuya_events")
        observed["latest"] = await fetch(
            postgres_dsn, "SELECT device_id, value::int FROM tuya_latest_status WHERE code = 'seq'"
        )

    asyncio.run(scenario())
    ids = [row[0] for row in observed["rows"]]
    expected = {f"{device}-{seq}" for device in DEVICES for seq in range(rounds)}
    lost = len(expected - set(ids))
    assert observed["writing_at_stop"] > 0  # batches were cut off mid-transaction
    assert observed["acked_while_down"] == 0  # acknowledged only what had been committed
    assert observed["pending_while_down"] > 0  # the outage really hit messages in flight
    assert observed["dead_letters_while_down"] == 0
    assert observed["retries"] > 0
    assert observed["dead_letters"] == 0  # never dead-lettered for an outage
    assert lost == 0
    assert len(ids) == total  # exactly one row per event
    assert sorted(observed["latest"]) == [(device, rounds - 1) for device in DEVICES]


def test_start_while_the_server_is_down_then_it_comes_back(
    postgres_cluster: PostgresCluster, postgres_dsn: str
) -> None:
    """The daemon starts anyway; events fail as an outage until the server is back, and the
    schema is created then."""
    handler = DatabaseHandler(
        "db", DatabaseOptions.model_validate({"dsn": postgres_dsn, "connect_timeout": "2s"})
    )

    async def scenario() -> tuple[HandlerError, list[tuple[Any, ...]]]:
        await asyncio.to_thread(postgres_cluster.stop)
        try:
            await handler.start()  # logs a warning, does not raise
            with pytest.raises(HandlerError) as caught:
                await handler.handle(*status("dev-a", 1, True, T0))
        finally:
            await asyncio.to_thread(postgres_cluster.start)
        try:
            await handler.handle(*status("dev-a", 1, True, T0))  # the pipeline's retry
        finally:
            await handler.stop()
        return caught.value, await fetch(postgres_dsn, "SELECT id FROM tuya_events")

    error, rows = asyncio.run(scenario())
    assert (error.reason, error.infrastructure) == (UNAVAILABLE, True)
    assert handler.backend.schema_version == LATEST_VERSION
    assert rows == [("dev-a-1",)]


def test_a_refused_connection_is_an_outage_and_its_message_has_no_password() -> None:
    port = free_port()  # nothing listens there
    dsn = f"postgresql://tuya:s3cret-Passw0rd@127.0.0.1:{port}/events"
    handler = DatabaseHandler("db", DatabaseOptions(dsn=dsn, connect_timeout=2))

    async def scenario() -> HandlerError:
        await handler.start()
        try:
            with pytest.raises(HandlerError) as caught:
                await handler.handle(*status("dev-a", 1, True, T0))
        finally:
            await handler.stop()
        return caught.value

    error = asyncio.run(scenario())
    assert (error.reason, error.infrastructure, error.retryable) == (UNAVAILABLE, True, True)
    assert "s3cret-Passw0rd" not in error.message and dsn not in error.message


def test_handlers_starting_at_once_migrate_exactly_once(postgres_dsn: str) -> None:
    """Two (here six) daemons starting together on an empty database: the advisory lock makes
    them take turns, and every one of them starts."""
    handlers = [DatabaseHandler(f"db{n}", DatabaseOptions(dsn=postgres_dsn)) for n in range(6)]

    async def scenario() -> list[tuple[Any, ...]]:
        try:
            await asyncio.gather(*(handler.start() for handler in handlers))
        finally:
            await asyncio.gather(*(handler.stop() for handler in handlers))
        return await fetch(postgres_dsn, "SELECT version FROM tuya_schema_migrations ORDER BY 1")

    assert asyncio.run(scenario()) == [(v,) for v in range(1, LATEST_VERSION + 1)]
    assert {handler.backend.schema_version for handler in handlers} == {LATEST_VERSION}


def test_a_nul_character_jsonb_cannot_hold_is_refused_alone(postgres_dsn: str) -> None:
    """PostgreSQL's jsonb refuses \\u0000 (SQLite would take it): that event fails as refused,
    its batch neighbours are committed."""
    handler = DatabaseHandler("db", DatabaseOptions(dsn=postgres_dsn))
    bad = sample(status_doc("dev-bad", "bad-1", ("name", "a\u0000b", T0)))
    good = [status(f"dev-{n}", 1, n, T0) for n in range(5)]

    async def scenario() -> tuple[list[BaseException | None], list[tuple[Any, ...]]]:
        await handler.start()
        try:
            outcomes = await asyncio.gather(
                *(handler.handle(e, d) for e, d in [bad, *good]), return_exceptions=True
            )
        finally:
            await handler.stop()
        return outcomes, await fetch(postgres_dsn, "SELECT id FROM tuya_events ORDER BY id")

    outcomes, rows = asyncio.run(scenario())
    error = outcomes[0]
    assert isinstance(error, HandlerError)
    assert (error.reason, error.retryable) == (REFUSED, False)
    assert outcomes[1:] == [None] * 5
    assert rows == [(f"dev-{n}-1",) for n in range(5)]


@pytest.mark.parametrize("sslmode", ["verify-full", "require"])
def test_a_dsn_that_requires_tls_of_a_server_without_it_stops_the_start(
    postgres_dsn: str, sslmode: str
) -> None:
    """The test cluster has no TLS: a DSN asking for it must not settle for less (exit 78)."""
    handler = DatabaseHandler("db", DatabaseOptions(dsn=f"{postgres_dsn}?sslmode={sslmode}"))

    async def scenario() -> None:
        try:
            await handler.start()
        finally:
            await handler.stop()

    with pytest.raises(ConfigError) as caught:
        asyncio.run(scenario())
    ((key, problem),) = caught.value.problems
    assert key == "handlers[db].dsn"
    assert "refused TLS" in problem and "the DSN's sslmode requires it" in problem
