"""``type: database``: every event into SQLite (``path``) or PostgreSQL (``dsn``).

``handle()`` returns only once the batch carrying its event is committed, so the pipeline
acknowledges a message only after its rows are durable. Redeliveries insert nothing new (the
event id is unique), and the latest status of a data point moves only forward in time, so a
retried batch or a replayed message can never corrupt what is stored.

With enrichment on, a batch also upserts the ``devices`` row of each known device it writes
events of, but only while this handler has not yet committed that snapshot of the device:
a device that reports every second costs one devices row per change, not one per batch.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Protocol

import orjson

from tuya_events.config.errors import ConfigError
from tuya_events.delivery import Delivery
from tuya_events.handlers.base import BaseHandler, HandlerContext, HandlerError
from tuya_events.handlers.database.batcher import Batcher, BatcherClosed
from tuya_events.handlers.database.errors import REFUSED, UNAVAILABLE
from tuya_events.handlers.database.options import DatabaseOptions, describe
from tuya_events.handlers.database.postgres import PostgresBackend
from tuya_events.handlers.database.rows import Record, RecordBuilder
from tuya_events.handlers.database.schema import SchemaTooNew
from tuya_events.handlers.database.sqlite import SQLiteBackend
from tuya_events.observability.logging import get_logger
from tuya_events.observability.redact import REDACTOR
from tuya_events.tuya.devices import Device, DeviceView
from tuya_events.tuya.events import Event

log = get_logger("tuya_events.handlers.database")


class WrittenDevices:
    """The device snapshots this handler has committed, by device id.

    A snapshot counts as written when it is the same object, or has the same fetch times and
    data points (a ``dpNameUpdate`` renames a point without fetching anything). Forgotten
    after an outage: the database may come back restored from an older backup.
    """

    __slots__ = ("_written",)

    def __init__(self) -> None:
        self._written: dict[str, Device] = {}

    def needs(self, device: DeviceView | None) -> bool:
        """Whether an event of ``device`` should carry its devices row."""
        if not isinstance(device, Device):
            return False
        written = self._written.get(device.id)
        if written is None:
            return True
        if written is device:
            return False
        return (
            written.fetched_at_ms != device.fetched_at_ms
            or written.specification_fetched_at_ms != device.specification_fetched_at_ms
            or written.points != device.points
        )

    def remember(self, device: DeviceView | None) -> None:
        """After the commit; an older snapshot committed late does not replace a newer one."""
        if not isinstance(device, Device):
            return
        written = self._written.get(device.id)
        if written is None or (device.fetched_at_ms, device.specification_fetched_at_ms) >= (
            written.fetched_at_ms,
            written.specification_fetched_at_ms,
        ):
            self._written[device.id] = device

    def forget(self) -> None:
        self._written.clear()


class Backend(Protocol):
    dialect: str
    concurrency: int
    schema_version: int

    async def open(self) -> None: ...

    async def write(self, records: list[Record]) -> list[HandlerError | None]: ...

    async def close(self) -> None: ...


def make_backend(options: DatabaseOptions) -> Backend:
    if options.dsn is not None:
        return PostgresBackend(
            options.dsn.get_secret_value(),
            options.table_prefix,
            pool_size=options.pool_size,
            connect_timeout=options.connect_timeout,
            command_timeout=options.command_timeout,
            secrets=options.dsn_secrets(),
        )
    assert options.path is not None  # the options allow exactly one of the two
    return SQLiteBackend(options.path, options.table_prefix, options.busy_timeout)


class DatabaseHandler(BaseHandler):
    Options = DatabaseOptions

    def __init__(
        self, name: str, options: DatabaseOptions, context: HandlerContext | None = None
    ) -> None:
        super().__init__(name)
        self.options = options
        # Where configuration errors found at start point; a handler built in code has no key.
        self._where = context.key() if context is not None else f"handlers[{name}]"
        # The redactor masks configured secrets already; this covers handlers built in code.
        REDACTOR.add(options.dsn_secrets())
        self.builder = RecordBuilder(
            options.store_events, options.store_latest_status, options.store_device_events
        )
        self.backend = make_backend(options)
        self.devices_written = WrittenDevices()
        self.batcher: Batcher[Record] = Batcher(
            self.backend.write,
            options.batch.max_size,
            options.batch.max_wait,
            self.backend.concurrency,
        )

    async def start(self) -> None:
        """Connect and migrate. PostgreSQL being down is no reason not to start: the first
        batches then fail as an outage and are retried. Anything else that stops it from
        opening (a SQLite path that cannot be a database, no right to create the tables, a
        schema newer than this code) is a setup error: a ConfigError, so the daemon exits 78
        naming the handler's key."""
        where = describe(self.options)
        target = "dsn" if self.options.dsn is not None else "path"
        try:
            await self.backend.open()
        except HandlerError as error:
            if not error.infrastructure:
                raise ConfigError([(f"{self._where}.{target}", error.message)]) from None
            log.warning(
                "database unavailable at start; events wait unacknowledged until it is back",
                handler=self.name,
                error=error.message,
                **where,
            )
            return
        except SchemaTooNew as exc:
            raise ConfigError([(f"{self._where}.table_prefix", str(exc))]) from None
        except (sqlite3.Error, OSError) as exc:
            raise ConfigError(
                [
                    (
                        f"{self._where}.path",
                        f"cannot open {self.options.path} as a SQLite database: {exc}",
                    )
                ]
            ) from None
        log.info(
            "database ready", handler=self.name, schema_version=self.backend.schema_version, **where
        )

    async def handle(self, event: Event, delivery: Delivery) -> None:
        """Return once the event's rows are committed: only then may the pipeline ack it."""
        device = event.device
        with_device = self.devices_written.needs(device)
        try:
            record = self.builder.build(event, delivery, int(time.time() * 1000), with_device)
        except (orjson.JSONEncodeError, TypeError) as exc:
            raise HandlerError(
                REFUSED, f"the event cannot be stored as JSON: {exc}", retryable=False
            ) from None
        if record.event is None and not record.statuses and record.device_event is None:
            return  # nothing of this event is stored (store_* options)
        try:
            future = self.batcher.submit(record)
        except BatcherClosed as exc:
            raise HandlerError(UNAVAILABLE, str(exc), infrastructure=True) from None
        # A caller that stops waiting (cancelled) cancels only its own future: the batch, shared
        # with other events, is written anyway and the batcher skips the cancelled future.
        try:
            await future
        except HandlerError as error:
            if error.infrastructure:
                self.devices_written.forget()
            raise
        if with_device:
            self.devices_written.remember(device)

    async def stop(self) -> None:
        """Write what is pending, then disconnect."""
        try:
            await self.batcher.close()
        finally:
            await self.backend.close()
