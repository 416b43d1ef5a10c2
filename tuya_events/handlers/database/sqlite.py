"""SQLite: one connection, used only by one worker thread, so the event loop never blocks on
the file. WAL mode with ``synchronous=FULL``: a batch's COMMIT is on disk before any of its
events is acknowledged, and readers (``sqlite3`` shell, dashboards) never block the writer.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from tuya_events.handlers.base import HandlerError
from tuya_events.handlers.database.errors import classify, is_data_error
from tuya_events.handlers.database.rows import Record, Rows, batch_rows
from tuya_events.handlers.database.schema import (
    DEVICE_COLUMNS,
    DEVICE_EVENT_COLUMNS,
    EVENT_COLUMNS,
    SQLITE,
    STATUS_COLUMNS,
    create_versions_table,
    insert_version,
    newer_device,
    newer_status,
    pending,
    versions_table,
)

R = TypeVar("R")


def _insert(table: str, columns: tuple[str, ...], conflict: str) -> str:
    marks = ", ".join("?" for _ in columns)
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks}) ON CONFLICT {conflict}"


def statements(prefix: str) -> tuple[str, str, str, str]:
    """The four writes: events and device events once per id, latest status if newer, devices
    unless older."""
    status_table = f"{prefix}latest_status"
    devices_table = f"{prefix}devices"
    return (
        _insert(f"{prefix}events", EVENT_COLUMNS, "(id) DO NOTHING"),
        _insert(status_table, STATUS_COLUMNS, newer_status(status_table)),
        _insert(f"{prefix}device_events", DEVICE_EVENT_COLUMNS, "(id) DO NOTHING"),
        _insert(devices_table, DEVICE_COLUMNS, newer_device(devices_table)),
    )


class SQLiteBackend:
    dialect = SQLITE
    concurrency = 1  # SQLite has one writer at a time anyway

    def __init__(self, path: str, prefix: str, busy_timeout: float = 5.0) -> None:
        self.path = Path(path)
        self.prefix = prefix
        self.busy_timeout = busy_timeout
        self.schema_version = 0
        (
            self._insert_event,
            self._upsert_status,
            self._insert_device_event,
            self._upsert_device,
        ) = statements(prefix)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tuya-sqlite")
        self._connection: sqlite3.Connection | None = None

    async def _call(self, function: Callable[..., R], *args: object) -> R:
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    async def open(self) -> None:
        """Create the file (and directory) and migrate; any failure stops the daemon's start."""
        await self._call(self._ensure)

    async def write(self, records: list[Record]) -> list[HandlerError | None]:
        return await self._call(self._write, records)

    async def close(self) -> None:
        await self._call(self._disconnect)
        self._executor.shutdown(wait=True)

    # -- on the worker thread ------------------------------------------------------------------

    def _ensure(self) -> sqlite3.Connection:
        if self._connection is not None:
            return self._connection
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(
            self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
        )
        try:
            mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal":
                raise sqlite3.OperationalError(f"cannot switch {self.path} to WAL (it is {mode})")
            connection.execute("PRAGMA synchronous = FULL")
            self._migrate(connection)
        except BaseException:
            connection.close()
            raise
        self._connection = connection
        return connection

    def _migrate(self, connection: sqlite3.Connection) -> None:
        """Apply the missing versions in one transaction; the write lock keeps others out."""
        versions = versions_table(self.prefix)
        connection.execute("BEGIN IMMEDIATE")
        try:
            connection.execute(create_versions_table(self.prefix, "INTEGER"))
            row = connection.execute(f"SELECT COALESCE(MAX(version), 0) FROM {versions}")
            current = row.fetchone()[0]
            for migration in pending(current):
                for statement in migration.statements(SQLITE, self.prefix):
                    connection.execute(statement)
                connection.execute(
                    insert_version(self.prefix, "?"),
                    (migration.version, migration.description, int(time.time() * 1000)),
                )
                current = migration.version
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
        self.schema_version = current

    def _disconnect(self) -> None:
        if self._connection is not None:
            connection, self._connection = self._connection, None
            connection.close()

    def _commit(self, rows: Rows) -> None:
        connection = self._ensure()
        connection.execute("BEGIN IMMEDIATE")
        try:
            if rows.events:
                connection.executemany(self._insert_event, rows.events)
            if rows.statuses:
                connection.executemany(self._upsert_status, rows.statuses)
            if rows.device_events:
                connection.executemany(self._insert_device_event, rows.device_events)
            if rows.devices:
                connection.executemany(self._upsert_device, rows.devices)
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise

    def _failed(self, exc: BaseException) -> HandlerError:
        error = classify(exc)
        if error.infrastructure:
            # Start afresh next time: the file may have been replaced or its disk remounted.
            try:
                self._disconnect()
            except sqlite3.Error:
                self._connection = None
        return error

    def _write(self, records: list[Record]) -> list[HandlerError | None]:
        """One transaction for the batch; when the data is refused, each event alone, so only
        the events at fault fail."""
        try:
            self._commit(batch_rows(records))
            return [None] * len(records)
        except Exception as exc:
            if not is_data_error(exc) or len(records) == 1:
                return [self._failed(exc) for _ in records]
        outcomes: list[HandlerError | None] = []
        for index, record in enumerate(records):
            try:
                self._commit(batch_rows([record]))
                outcomes.append(None)
            except Exception as exc:
                if is_data_error(exc):
                    outcomes.append(self._failed(exc))
                    continue
                outcomes += [self._failed(exc) for _ in records[index:]]
                break
        return outcomes
