"""A dedupe ledger shared by several instances on PostgreSQL: each event's side effects once.

Delivery is at least once: a partition handed to another instance, a restart or a lost
acknowledgement brings an event again, possibly to another instance while the first still works
on it. The local dedupe cache cannot see across instances; this ledger can. Per guarded handler
and event id (Tuya's ``dataId``, else the message id) it keeps a row: *claimed* by one instance
with a lease, then *done*. Before the handler runs, the event is claimed; an event another
instance holds is waited for (it is done, and skipped, or its lease runs out and it is taken
over); after the handler succeeded, the row is marked done before the message is acknowledged.

What remains, honestly: an instance that dies after the side effect and before marking it done
leaves a claim whose lease runs out, and the next instance runs the handler again. At least once
across instances, and once in every case but that one.

Claims and done marks gathered over a couple of milliseconds go to the database as one statement
each, so the ledger costs one round trip per batch of messages, not per message.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import uuid
from collections.abc import Awaitable, Callable
from enum import Enum
from typing import Any

import asyncpg

from tuya_events.config.settings import LedgerSettings
from tuya_events.config.transport_security import postgres_needs_verified_tls
from tuya_events.delivery import Delivery
from tuya_events.handlers.base import BaseHandler, Handler, HandlerError
from tuya_events.handlers.database.postgres import verified_tls
from tuya_events.observability.logging import get_logger
from tuya_events.observability.metrics import Metrics
from tuya_events.observability.redact import REDACTOR
from tuya_events.tuya.events import Event

log = get_logger("tuya_events.ledger")

LEDGER_UNAVAILABLE = "ledger_unavailable"
POLL_SECONDS = 0.2  # how often an event held by another instance is looked at again
BATCH_WINDOW = 0.002  # seconds claims and done marks are gathered for one statement
BATCH_MAX = 500


class Claim(Enum):
    OURS = "ours"  # run the handler
    DONE = "done"  # another instance (or we, before a restart) finished it: skip
    HELD = "held"  # another instance works on it, its lease still running: wait


def _schema(table: str) -> str:
    return f"""
        CREATE TABLE IF NOT EXISTS {table} (
            handler TEXT NOT NULL,
            event_id TEXT NOT NULL,
            state TEXT NOT NULL,
            owner TEXT NOT NULL,
            lease_until TIMESTAMPTZ NOT NULL,
            updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            PRIMARY KEY (handler, event_id)
        );
        CREATE INDEX IF NOT EXISTS {table}_updated_at ON {table} (updated_at);
    """


class Ledger:
    """The PostgreSQL ledger: batched claims and done marks, with leases."""

    def __init__(self, dsn: str, settings: LedgerSettings, metrics: Metrics | None = None) -> None:
        self._dsn = dsn
        self._settings = settings
        self._metrics = metrics
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._pool: asyncpg.Pool | None = None
        self._users = 0
        self._claims: list[tuple[str, str, asyncio.Future[Claim]]] = []
        self._dones: list[tuple[str, str, asyncio.Future[None]]] = []
        self._flush_scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self._flushes: set[asyncio.Task[None]] = set()
        self._cleaner: asyncio.Task[None] | None = None
        t = settings.table
        self._claim_sql = f"""
            INSERT INTO {t} AS l (handler, event_id, state, owner, lease_until)
            SELECT h, e, 'claimed', $3, now() + $4 * interval '1 second'
            FROM unnest($1::text[], $2::text[]) AS batch(h, e)
            ON CONFLICT (handler, event_id) DO UPDATE
                SET owner = EXCLUDED.owner, lease_until = EXCLUDED.lease_until,
                    updated_at = now()
                WHERE l.state = 'claimed' AND (l.lease_until < now() OR l.owner = EXCLUDED.owner)
            RETURNING handler, event_id
        """
        self._state_sql = f"""
            SELECT l.handler, l.event_id, l.state FROM {t} AS l
            JOIN unnest($1::text[], $2::text[]) AS batch(h, e)
                ON l.handler = batch.h AND l.event_id = batch.e
        """
        self._done_sql = f"""
            UPDATE {t} AS l SET state = 'done', updated_at = now()
            FROM unnest($1::text[], $2::text[]) AS batch(h, e)
            WHERE l.handler = batch.h AND l.event_id = batch.e AND l.owner = $3
        """
        self._clean_sql = (
            f"DELETE FROM {t} WHERE state = 'done' "
            "AND updated_at < now() - $1 * interval '1 second'"
        )

    # -- lifecycle (shared by the guards of one daemon) ----------------------------------------

    async def start(self) -> None:
        self._users += 1
        if self._pool is not None:
            return
        settings, dsn = self._settings, self._dsn
        tls: ssl.SSLContext | None = verified_tls(dsn) if postgres_needs_verified_tls(dsn) else None
        try:
            self._pool = await asyncpg.create_pool(
                dsn, min_size=0, max_size=2, timeout=10, command_timeout=30, ssl=tls
            )
            async with self._pool.acquire() as connection:
                await connection.execute(_schema(settings.table))
        except Exception as exc:
            self._pool = None
            raise self._unavailable(exc) from None
        self._cleaner = asyncio.get_running_loop().create_task(self._clean_periodically())
        log.info(
            "dedupe ledger ready", table=settings.table, owner=self.owner, lease=settings.lease
        )

    async def stop(self) -> None:
        self._users -= 1
        if self._users > 0 or self._pool is None:
            return
        if self._cleaner is not None:
            self._cleaner.cancel()
        pool, self._pool = self._pool, None
        await pool.close()

    # -- per event ------------------------------------------------------------------------------

    def claim(self, handler: str, event_id: str) -> Awaitable[Claim]:
        future: asyncio.Future[Claim] = asyncio.get_running_loop().create_future()
        self._claims.append((handler, event_id, future))
        self._schedule()
        return future

    def done(self, handler: str, event_id: str) -> Awaitable[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._dones.append((handler, event_id, future))
        self._schedule()
        return future

    def _schedule(self) -> None:
        """Gather for up to ``BATCH_WINDOW`` (or ``BATCH_MAX`` items), then one statement: a
        millisecond of latency for a round trip shared by a batch instead of one each."""
        if len(self._claims) + len(self._dones) >= BATCH_MAX:
            self._start_flush()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            self._timer = asyncio.get_running_loop().call_later(BATCH_WINDOW, self._start_flush)

    def _start_flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._flush_scheduled = False
        claims, self._claims = self._claims, []
        dones, self._dones = self._dones, []
        loop = asyncio.get_running_loop()
        for batch, run in ((claims, self._claim_batch), (dones, self._done_batch)):
            if batch:
                task = loop.create_task(self._settle(batch, run))
                self._flushes.add(task)
                task.add_done_callback(self._flushes.discard)

    async def _settle(
        self,
        batch: list[tuple[str, str, asyncio.Future[Any]]],
        run: Callable[[list[tuple[str, str]]], Awaitable[list[Any]]],
    ) -> None:
        try:
            results = await run([(handler, key) for handler, key, _ in batch])
        except Exception as exc:
            error = self._unavailable(exc)
            for *_, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        for (*_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)

    async def _claim_batch(self, items: list[tuple[str, str]]) -> list[Claim]:
        pool = self._require_pool()
        unique = list(dict.fromkeys(items))  # one statement may not touch a row twice
        handlers, keys = [h for h, _ in unique], [k for _, k in unique]
        async with pool.acquire() as connection:
            ours = {
                (row["handler"], row["event_id"])
                for row in await connection.fetch(
                    self._claim_sql, handlers, keys, self.owner, self._settings.lease
                )
            }
            others = [item for item in unique if item not in ours]
            states: dict[tuple[str, str], str] = {}
            if others:
                rows = await connection.fetch(
                    self._state_sql, [h for h, _ in others], [k for _, k in others]
                )
                states = {(row["handler"], row["event_id"]): row["state"] for row in rows}
        verdicts: list[Claim] = []
        for item in items:
            if item in ours:
                ours.discard(item)  # a second copy in the same batch waits for the first
                verdicts.append(Claim.OURS)
            elif states.get(item) == "done":
                verdicts.append(Claim.DONE)
            else:
                verdicts.append(Claim.HELD)
        return verdicts

    async def _done_batch(self, items: list[tuple[str, str]]) -> list[None]:
        pool = self._require_pool()
        async with pool.acquire() as connection:
            await connection.execute(
                self._done_sql, [h for h, _ in items], [k for _, k in items], self.owner
            )
        return [None] * len(items)

    async def _clean_periodically(self) -> None:
        """Done rows are kept past Tuya's retention (``keep``, 3 h by default), then dropped."""
        while True:
            await asyncio.sleep(min(600.0, self._settings.keep / 4))
            try:
                pool = self._require_pool()
                async with pool.acquire() as connection:
                    await connection.execute(self._clean_sql, self._settings.keep)
            except Exception as exc:
                log.warning("cannot clean the dedupe ledger", error=self._unavailable(exc).message)

    def _require_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise ConnectionError("the dedupe ledger is not started")
        return self._pool

    def _unavailable(self, exc: BaseException) -> HandlerError:
        detail = REDACTOR(f"the dedupe ledger is unavailable: {type(exc).__name__}: {exc}")
        return HandlerError(LEDGER_UNAVAILABLE, detail, infrastructure=True)


class LedgerGuard(BaseHandler):
    """A handler that runs once per event across instances, through the ledger.

    It takes the guarded handler's name, so routes, metrics and the local dedupe cache are as
    before; the handler's own timeout bounds the handler, not the waiting for the ledger.
    """

    def __init__(self, inner: Handler, ledger: Ledger, metrics: Metrics | None = None) -> None:
        super().__init__(inner.name)
        self.inner = inner
        self.ledger = ledger
        self._metrics = metrics
        self._unmarked: set[str] = set()  # ran, but the done mark did not reach the ledger

    async def start(self) -> None:
        await self.ledger.start()
        await self.inner.start()

    async def stop(self) -> None:
        try:
            await self.inner.stop()
        finally:
            await self.ledger.stop()

    async def handle(self, event: Event, delivery: Delivery) -> None:
        key = event.data_id or delivery.message_id
        if key not in self._unmarked:
            while True:
                claim = await self.ledger.claim(self.name, key)
                if claim is Claim.OURS:
                    break
                if claim is Claim.DONE:
                    if self._metrics is not None:
                        self._metrics.ledger_skipped.labels(self.name).inc()
                    return
                await asyncio.sleep(POLL_SECONDS)  # another instance holds it: wait
            pending = self.inner.handle(event, delivery)
            if pending is not None:
                timeout = self.inner.timeout
                await (pending if timeout is None else asyncio.wait_for(pending, timeout))
            self._unmarked.add(key)
        await self.ledger.done(self.name, key)
        self._unmarked.discard(key)
