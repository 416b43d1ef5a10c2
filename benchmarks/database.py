"""Events per second into PostgreSQL and SQLite through the ``database`` handler.

Run from the project root: ``.venv/bin/python benchmarks/database.py`` (about a minute). It
starts a throwaway PostgreSQL (tests/pg/cluster.py) with the server's durable defaults (fsync
on, unlike the tests' cluster), and stops it at the end.

Measured, on the same pre-built events and in the same run:

- **handler**: ``DatabaseHandler.handle()`` called by ``--in-flight`` concurrent callers, like
  the pipeline with ``max_in_flight``: each call returns once its batch is committed.
- **raw COPY**: asyncpg ``copy_records_to_table`` of the same rows into the same tables, one
  transaction per ``--batch`` rows, one connection: a bulk load with no conflict handling, the
  floor for what a database handler can cost. Printed with the handler as a ratio.
- **write strategies**: the same batches written one after another on one connection, three
  ways of upserting: ``COPY`` into temporary staging tables then ``INSERT ... SELECT ... ON
  CONFLICT`` (the handler's, its own code), whole columns as arrays with ``INSERT ... SELECT FROM
  unnest($1::text[], ...)``, and ``executemany`` of ``INSERT ... VALUES`` (pipelined by asyncpg).
  This is how the handler's strategy was chosen; "client CPU" matters as much as the rate on a
  machine whose cores the server shares.
- **SQLite**: the handler on a file (WAL, synchronous=FULL), same callers.

Every pass starts from empty tables; figures are medians over ``--repeat`` passes, interleaved.
It is a benchmark, not a test: it prints figures and exits 0 whether or not the goal is met.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.pg.cluster import PostgresCluster
from tuya_events.delivery import Delivery
from tuya_events.handlers.database import DatabaseHandler, DatabaseOptions
from tuya_events.handlers.database.postgres import (
    column_type,
    create_staging_tables,
    insert_from_staging,
    write_rows,
)
from tuya_events.handlers.database.rows import Record, RecordBuilder, Rows, batch_rows
from tuya_events.handlers.database.schema import (
    DEVICE_EVENT_COLUMNS,
    EVENT_COLUMNS,
    JSON_COLUMNS,
    STATUS_COLUMNS,
)
from tuya_events.observability.logging import configure_logging
from tuya_events.tuya.events import Event, build_event

GOAL_EVENTS_PER_SECOND = 10_000
PREFIX = "tuya_"
RAW = "raw COPY (same rows, same batches)"
STAGED = "strategy: COPY to staging, INSERT SELECT (handler's)"
TABLES = ("events", "latest_status", "device_events")
DURABLE_SETTINGS = {"fsync": "on", "full_page_writes": "on", "synchronous_commit": "on"}

Sample = tuple[Event, Delivery]

# --- the events -----------------------------------------------------------------------------

_CODES: tuple[tuple[str, Callable[[random.Random], Any]], ...] = (
    ("switch_1", lambda r: r.random() < 0.5),
    ("cur_power", lambda r: r.randint(0, 30_000)),
    ("cur_voltage", lambda r: r.randint(2_150, 2_450)),
    ("cur_current", lambda r: r.randint(0, 15_000)),
    ("bright_value_v2", lambda r: r.randint(10, 1_000)),
    ("work_mode", lambda r: r.choice(("white", "colour", "scene"))),
    ("colour_data_v2", lambda r: f'{{"h":{r.randrange(360)},"s":1000,"v":{r.randrange(1001)}}}'),
    ("va_temperature", lambda r: r.randint(-50, 350)),
    ("va_humidity", lambda r: r.randint(150, 990)),
    ("battery_percentage", lambda r: r.randint(0, 100)),
)
_BIZ_CODES = ("online", "offline", "nameUpdate", "upgradeStatus")


def make_samples(count: int, devices: int, seed: int) -> list[Sample]:
    """About 70% status reports of 1-3 data points, 30% device events, over ``devices``."""
    rng = random.Random(seed)
    device_ids = [f"bf{rng.getrandbits(80):020x}" for _ in range(devices)]
    t_ms = 1_760_000_000_000
    samples: list[Sample] = []
    for n in range(count):
        t_ms += rng.randint(0, 3)
        device = rng.choice(device_ids)
        data_id = f"{rng.getrandbits(128):032x}"
        if rng.random() < 0.7:
            items = [
                {"code": code, "value": make(rng), "t": t_ms - rng.randint(0, 500)}
                for code, make in rng.sample(_CODES, rng.randint(1, 3))
            ]
            document = {"dataId": data_id, "devId": device, "productKey": "pk1", "status": items}
            event = build_event(document, 4, t_ms)
        else:
            biz_code = rng.choice(_BIZ_CODES)
            document = {
                "bizCode": biz_code,
                "bizData": {"devId": device, "uid": "ay1", "time": t_ms // 1000},
                "devId": device,
                "productKey": "pk1",
                "ts": t_ms,
                "dataId": data_id,
            }
            event = build_event(document, 20, t_ms)
        delivery = Delivery(
            body=b"",
            properties={},
            message_id=f"({n},{rng.randint(0, 9)},{n % 16},-1)",
            topic="persistent://tuya/bench",
            partition=n % 16,
            publish_time_ms=t_ms + 20,
        )
        samples.append((event, delivery))
    return samples


# --- passes ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Timing:
    """Wall seconds; CPU seconds of this process (all threads: SQLite's writer included) and
    of the PostgreSQL server (0 for SQLite)."""

    wall: float
    cpu: float
    server_cpu: float


_TICK = os.sysconf("SC_CLK_TCK")


def server_cpu_seconds(postmaster: int | None) -> float:
    """CPU of the postmaster and its children: live ones from /proc, ended ones (reaped by the
    postmaster, which is their parent) from its cutime/cstime."""
    if postmaster is None:
        return 0.0
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, ppid = int(entry.name), int(fields[1])
        if pid == postmaster:
            total += sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
        elif ppid == postmaster:
            total += int(fields[11]) + int(fields[12])
    return total / _TICK


class Clock:
    """Measures from creation to ``stop()``; ``server`` is the postmaster's pid, if any."""

    server: int | None = None

    def __init__(self) -> None:
        self.wall = time.perf_counter()
        self.cpu = time.process_time()
        self.server_cpu = server_cpu_seconds(Clock.server)

    def stop(self) -> Timing:
        return Timing(
            time.perf_counter() - self.wall,
            time.process_time() - self.cpu,
            server_cpu_seconds(Clock.server) - self.server_cpu,
        )


async def drive(handler: DatabaseHandler, samples: list[Sample], in_flight: int) -> Timing:
    """Seconds to handle every sample with ``in_flight`` concurrent callers (start/stop excluded:
    the handler is started by the caller; the final flush is included)."""
    queue = iter(samples)

    async def caller() -> None:
        for event, delivery in queue:
            await handler.handle(event, delivery)

    clock = Clock()
    await asyncio.gather(*(caller() for _ in range(in_flight)))
    return clock.stop()


async def truncate(dsn: str) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute("TRUNCATE " + ", ".join(PREFIX + table for table in TABLES))
        await connection.execute("CHECKPOINT")  # so a pass does not pay for the previous one
    finally:
        await connection.close()


async def handler_pass(options: dict[str, Any], samples: list[Sample], in_flight: int) -> Timing:
    handler = DatabaseHandler("bench", DatabaseOptions.model_validate(options))
    await handler.start()
    try:
        return await drive(handler, samples, in_flight)
    finally:
        await handler.stop()


def chunks(records: list[Record], size: int) -> list[Rows]:
    return [batch_rows(records[i : i + size]) for i in range(0, len(records), size)]


_NEWER = (
    "(device_id, code) DO UPDATE SET value = excluded.value, t_ms = excluded.t_ms, "
    "event_id = excluded.event_id, updated_at_ms = excluded.updated_at_ms "
    "WHERE excluded.t_ms > existing.t_ms"
)


def _unnest_insert(table: str, columns: tuple[str, ...], conflict: str) -> str:
    arrays = ", ".join(f"${n}::{column_type(c)}[]" for n, c in enumerate(columns, 1))
    return (
        f"INSERT INTO {PREFIX}{table} AS existing ({', '.join(columns)}) "
        f"SELECT * FROM unnest({arrays}) ON CONFLICT {conflict}"
    )


async def write_unnest(connection: asyncpg.Connection, rows: Rows) -> None:
    """Whole columns as arrays: one statement per table, whatever the batch size."""
    async with connection.transaction():
        for table, columns, data, conflict in (
            ("events", EVENT_COLUMNS, rows.events, "(id) DO NOTHING"),
            ("latest_status", STATUS_COLUMNS, rows.statuses, _NEWER),
            ("device_events", DEVICE_EVENT_COLUMNS, rows.device_events, "(id) DO NOTHING"),
        ):
            if data:
                await connection.execute(
                    _unnest_insert(table, columns, conflict), *zip(*data, strict=True)
                )


def _values_insert(table: str, columns: tuple[str, ...], conflict: str) -> str:
    marks = ", ".join(
        f"${n}::jsonb" if c in JSON_COLUMNS else f"${n}" for n, c in enumerate(columns, 1)
    )
    return (
        f"INSERT INTO {PREFIX}{table} AS existing ({', '.join(columns)}) VALUES ({marks}) "
        f"ON CONFLICT {conflict}"
    )


async def write_executemany(connection: asyncpg.Connection, rows: Rows) -> None:
    async with connection.transaction():
        await connection.executemany(
            _values_insert("events", EVENT_COLUMNS, "(id) DO NOTHING"), rows.events
        )
        if rows.statuses:
            await connection.executemany(
                _values_insert("latest_status", STATUS_COLUMNS, _NEWER), rows.statuses
            )
        if rows.device_events:
            await connection.executemany(
                _values_insert("device_events", DEVICE_EVENT_COLUMNS, "(id) DO NOTHING"),
                rows.device_events,
            )


async def write_staged(connection: asyncpg.Connection, rows: Rows) -> None:
    """The handler's own write (tuya_events.handlers.database.postgres.write_rows)."""
    async with connection.transaction():
        await write_rows(connection, rows, insert_from_staging(PREFIX))


async def write_raw_copy(connection: asyncpg.Connection, rows: Rows) -> None:
    """Plain COPY, no conflict handling. ``rows.statuses`` is only set on the last batch (the
    final state of every data point): COPY cannot upsert the same key batch after batch."""
    async with connection.transaction():
        await connection.copy_records_to_table(
            PREFIX + "events", records=rows.events, columns=EVENT_COLUMNS
        )
        if rows.statuses:
            await connection.copy_records_to_table(
                PREFIX + "latest_status", records=rows.statuses, columns=STATUS_COLUMNS
            )
        if rows.device_events:
            await connection.copy_records_to_table(
                PREFIX + "device_events", records=rows.device_events, columns=DEVICE_EVENT_COLUMNS
            )


Write = Callable[[asyncpg.Connection, Rows], Awaitable[None]]


async def sequential_pass(dsn: str, batches: list[Rows], write: Write) -> Timing:
    connection = await asyncpg.connect(dsn)
    await connection.execute(create_staging_tables())
    try:
        clock = Clock()
        for rows in batches:
            await write(connection, rows)
        return clock.stop()
    finally:
        await connection.close()


# --- report ---------------------------------------------------------------------------------


def rate(count: int, timings: list[Timing]) -> tuple[float, float]:
    """(median, best) events per second."""
    walls = [timing.wall for timing in timings]
    return count / statistics.median(walls), count / min(walls)


def handler_case(size: int, callers: int) -> str:
    return f"handler -> PostgreSQL, batch {size}, {callers} in flight"


def print_table(count: int, results: dict[str, list[Timing]], reference: str) -> None:
    ref = statistics.median(timing.wall for timing in results[reference])
    print(
        f"| case | events/s median | best | client CPU us/event | server CPU us/event "
        f"| vs {reference} |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name, timings in results.items():
        median, best = rate(count, timings)
        cpu = statistics.median(timing.cpu for timing in timings) / count * 1e6
        server = statistics.median(timing.server_cpu for timing in timings) / count * 1e6
        ratio = ref / statistics.median(timing.wall for timing in timings)
        print(f"| {name} | {median:,.0f} | {best:,.0f} | {cpu:.1f} | {server:.1f} | {ratio:.2f}x |")


async def main(args: argparse.Namespace) -> None:
    configure_logging("warning")
    samples = make_samples(args.events, args.devices, args.seed)
    builder = RecordBuilder()
    records = [builder.build(event, delivery, 1_760_000_000_000) for event, delivery in samples]
    batches = chunks(records, args.batch)
    # The raw COPY writes each data point's final state once, with the last batch.
    final_statuses = batch_rows(records).statuses
    copy_batches = [Rows(b.events, [], b.device_events) for b in batches]
    copy_batches[-1] = Rows(copy_batches[-1].events, final_statuses, copy_batches[-1].device_events)
    rows_total = sum(len(b.events) + len(b.statuses) + len(b.device_events) for b in batches)
    print(
        f"{len(samples):,} events from {args.devices:,} devices -> {rows_total:,} rows "
        f"(events, merged latest statuses, device events); batch {args.batch}, "
        f"{args.in_flight} callers, pool {args.pool}, {args.repeat} passes"
    )
    print(
        f"python {platform.python_version()}, asyncpg {version('asyncpg')}, "
        f"sqlite {__import__('sqlite3').sqlite_version}, {os.cpu_count()} CPUs, "
        f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )

    cluster = PostgresCluster(settings=DURABLE_SETTINGS)
    try:
        cluster.start()
        Clock.server = cluster.pid
        print(cluster.binaries.version, "(fsync on, synchronous_commit on)")
        dsn = cluster.dsn
        setup = DatabaseHandler("setup", DatabaseOptions(dsn=dsn))
        await setup.start()  # migrate once
        await setup.stop()
        # (batch size, callers): the second shows a batch as large as max_in_flight, which
        # cannot overlap writing one batch with filling the next; the third lets it.
        handler_cases = [
            (args.batch, args.in_flight),
            (args.batch * 2, args.in_flight),
            (args.batch * 2, args.in_flight * 2),
        ]
        postgres: dict[str, list[Timing]] = {
            handler_case(size, callers): [] for size, callers in handler_cases
        }
        postgres |= {
            RAW: [],
            STAGED: [],
            "strategy: unnest arrays, INSERT SELECT": [],
            "strategy: executemany, INSERT VALUES": [],
        }
        for _ in range(args.repeat):
            for size, callers in handler_cases:
                await truncate(dsn)
                options = {
                    "dsn": dsn,
                    "batch": {"max_size": size, "max_wait": "50ms"},
                    "pool_size": args.pool,
                }
                postgres[handler_case(size, callers)].append(
                    await handler_pass(options, samples, callers)
                )
            for name, write, data in (
                (RAW, write_raw_copy, copy_batches),
                (STAGED, write_staged, batches),
                ("strategy: unnest arrays, INSERT SELECT", write_unnest, batches),
                ("strategy: executemany, INSERT VALUES", write_executemany, batches),
            ):
                await truncate(dsn)
                postgres[name].append(await sequential_pass(dsn, data, write))
    finally:
        cluster.close()
        Clock.server = None

    sqlite_seconds: list[Timing] = []
    with tempfile.TemporaryDirectory(prefix="tuya-bench-") as directory:
        for n in range(args.repeat):
            path = Path(directory) / f"events-{n}.sqlite3"
            sqlite_options = {"path": str(path), "batch": {"max_size": args.batch}}
            sqlite_seconds.append(await handler_pass(sqlite_options, samples, args.in_flight))

    print()
    print("PostgreSQL:")
    print_table(len(samples), postgres, RAW)
    print()
    print("SQLite:")
    sqlite_case = f"handler -> SQLite, batch {args.batch}, {args.in_flight} in flight"
    print_table(len(samples), {sqlite_case: sqlite_seconds}, sqlite_case)
    handler_rate, _ = rate(len(samples), postgres[handler_case(args.batch, args.in_flight)])
    verdict = "met" if handler_rate >= GOAL_EVENTS_PER_SECOND else "NOT met"
    print()
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(
        f"Goal >= {GOAL_EVENTS_PER_SECOND:,} events/s into PostgreSQL through the handler: "
        f"{verdict} ({handler_rate:,.0f} events/s median)"
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", "--events", type=int, default=30_000)
    parser.add_argument("--devices", type=int, default=5_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--pool", type=int, default=4)
    parser.add_argument("--in-flight", type=int, default=1000)
    parser.add_argument("-r", "--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=11)
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
