"""PostgreSQL through asyncpg: a small pool, one transaction per batch, and reconnection that
needs nothing but the next attempt.

A batch is written with binary ``COPY`` into temporary staging tables (one set per connection,
created when it connects, emptied at each commit), then one ``INSERT ... SELECT ... ON
CONFLICT`` per table: conflicts are handled by the server, rows cross the wire in COPY's binary
format. benchmarks/database.py measured it against ``executemany`` and against
``INSERT ... SELECT FROM unnest($1::text[], ...)``: it costs the least client CPU per event,
which is what limits a 2-core machine that also runs the server (see benchmarks/README.md).

TLS: a DSN without ``sslmode`` would get asyncpg's ``prefer``, which falls back to plaintext
and then sends the password to whoever answers. So a server that is not on this machine (see
:mod:`tuya_events.config.transport_security` for how that is decided) gets ``verify-full``
semantics: TLS or nothing, the certificate checked against the DSN's ``sslrootcert`` or the
system's CAs, and the host name checked; so does ``sslmode=verify-full``. Any other
``sslmode`` in the DSN is left to asyncpg as written (the daemon warns at start when it allows
plaintext or skips a check); this machine's server keeps asyncpg's default.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, TypeAlias
from urllib.parse import urlsplit

import asyncpg

from tuya_events.config.transport_security import (
    postgres_needs_verified_tls,
    postgres_query,
    postgres_remote_hosts,
    postgres_sslmode,
)
from tuya_events.handlers.base import HandlerError
from tuya_events.handlers.database.errors import classify, is_data_error, scrub
from tuya_events.handlers.database.rows import Record, Rows, batch_rows
from tuya_events.handlers.database.schema import (
    DEVICE_COLUMNS,
    DEVICE_EVENT_COLUMNS,
    EVENT_COLUMNS,
    JSON_COLUMNS,
    POSTGRES,
    STATUS_COLUMNS,
    SchemaTooNew,
    create_versions_table,
    insert_version,
    newer_device,
    newer_status,
    pending,
    versions_table,
)
from tuya_events.observability.logging import get_logger

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    # A connection of its own or one lent by the pool: the same methods.
    AnyConnection: TypeAlias = asyncpg.Connection | PoolConnectionProxy

log = get_logger("tuya_events.handlers.database")

POOL_CLOSE_TIMEOUT = 10.0
TLS_REFUSED = "database_tls"
_ALPN = ["postgresql"]  # what PostgreSQL 17 asks for with direct TLS; harmless otherwise
_INTEGER_COLUMNS = frozenset({"protocol", "partition"})
# (table, its columns, the conflict clause): the order rows are written in.
_TABLES = (
    ("events", EVENT_COLUMNS, "(id) DO NOTHING"),
    ("latest_status", STATUS_COLUMNS, newer_status("existing")),
    ("device_events", DEVICE_EVENT_COLUMNS, "(id) DO NOTHING"),
    ("devices", DEVICE_COLUMNS, newer_device("existing")),
)


def column_type(column: str) -> str:
    if column in JSON_COLUMNS:
        return "jsonb"
    if column in _INTEGER_COLUMNS:
        return "integer"
    return "bigint" if column.endswith("_ms") else "text"


def staging_table(table: str) -> str:
    """Session-private (pg_temp), so connections never see each other's rows."""
    return f"tuya_events_staging_{table}"


def create_staging_tables() -> str:
    """Run once per new connection; ON COMMIT DELETE ROWS empties them after every batch."""
    return ";\n".join(
        f"CREATE TEMP TABLE IF NOT EXISTS {staging_table(table)} ("
        + ", ".join(f"{column} {column_type(column)}" for column in columns)
        + ") ON COMMIT DELETE ROWS"
        for table, columns, _ in _TABLES
    )


def insert_from_staging(prefix: str) -> dict[str, str]:
    """Per table: move the staged rows in, the server resolving conflicts."""
    statements = {}
    for table, columns, conflict in _TABLES:
        names = ", ".join(columns)
        statements[table] = (
            f"INSERT INTO {prefix}{table} AS existing ({names}) "
            f"SELECT {names} FROM {staging_table(table)} ON CONFLICT {conflict}"
        )
    return statements


async def write_rows(connection: AnyConnection, rows: Rows, inserts: dict[str, str]) -> None:
    """One batch, inside the caller's transaction: COPY each table's rows, then one simple
    query with the INSERTs of the tables that got rows."""
    staged: list[str] = []
    for (table, columns, _), data in zip(
        _TABLES, (rows.events, rows.statuses, rows.device_events, rows.devices), strict=True
    ):
        if data:
            await connection.copy_records_to_table(
                staging_table(table), records=data, columns=columns
            )
            staged.append(inserts[table])
    if staged:
        await connection.execute(";\n".join(staged))


def advisory_lock_key(prefix: str) -> int:
    """A bigint per table prefix: daemons sharing tables serialise their migrations."""
    digest = hashlib.blake2b(f"tuya_events.database:{prefix}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


async def migrate(connection: AnyConnection, prefix: str) -> int:
    """Apply the missing versions in one transaction, under a transaction-scoped advisory lock
    (PostgreSQL's DDL is transactional: a failed migration leaves nothing behind)."""
    versions = versions_table(prefix)
    async with connection.transaction():
        await connection.execute("SELECT pg_advisory_xact_lock($1)", advisory_lock_key(prefix))
        await connection.execute(create_versions_table(prefix, "BIGINT"))
        current = await connection.fetchval(f"SELECT COALESCE(MAX(version), 0) FROM {versions}")
        for migration in pending(current):
            for statement in migration.statements(POSTGRES, prefix):
                await connection.execute(statement)
            await connection.execute(
                insert_version(prefix, "$"),
                migration.version,
                migration.description,
                int(time.time() * 1000),
            )
            current = migration.version
    return int(current)


async def _prepare_connection(connection: asyncpg.Connection) -> None:
    await connection.execute(create_staging_tables())


def verified_tls(dsn: str) -> ssl.SSLContext:
    """``verify-full`` as a context: asyncpg's own knows only ``~/.postgresql/root.crt``, not
    the system's CAs. Honours the DSN's ``sslrootcert`` and client certificate, which asyncpg
    ignores once it is given a context."""
    query = postgres_query(dsn)
    root = query.get("sslrootcert")
    context = ssl.create_default_context(cafile=None if root in (None, "system") else root)
    if query.get("sslcert"):
        context.load_cert_chain(
            query["sslcert"], query.get("sslkey"), password=query.get("sslpassword")
        )
    context.set_alpn_protocols(_ALPN)
    return context


def tls_refused(exc: BaseException) -> bool:
    """The server will not speak TLS, or its certificate fails the check: trying again will
    not change that, someone has to fix the server, its CA or the DSN."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return True
    # asyncpg's words when the server answers "N" to the SSLRequest (a test pins them).
    return isinstance(exc, ConnectionError) and "rejected SSL upgrade" in str(exc)


class PostgresBackend:
    dialect = POSTGRES

    def __init__(
        self,
        dsn: str,
        prefix: str,
        pool_size: int = 4,
        connect_timeout: float = 10.0,
        command_timeout: float = 30.0,
        secrets: Sequence[str] = (),
    ) -> None:
        self._dsn = dsn
        self.prefix = prefix
        self.concurrency = pool_size
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self._secrets = tuple(secrets) or (dsn,)
        self.verify_tls = postgres_needs_verified_tls(dsn)
        self.schema_version = 0
        self._inserts = insert_from_staging(prefix)
        self._pool: asyncpg.Pool | None = None
        self._migrated = False
        self._migrating = asyncio.Lock()

    async def open(self) -> None:
        """Connect and migrate. An outage is raised as a HandlerError(infrastructure=True); a
        schema newer than this code as itself, to stop the start."""
        try:
            await self._ensure()
        except SchemaTooNew:
            raise
        except Exception as exc:
            if tls_refused(exc):
                raise self._tls_error(exc) from None
            raise (await self._failed(exc, 1))[0] from None

    def _tls_error(self, exc: BaseException) -> HandlerError:
        """At start, a server that refuses TLS or fails the check stops the daemon (exit 78):
        waiting for it would only hide a setup mistake, or someone in the way."""
        host = urlsplit(self._dsn).hostname or ", ".join(postgres_remote_hosts(self._dsn))
        if isinstance(exc, ssl.SSLCertVerificationError):
            detail = (
                f"the TLS certificate of the PostgreSQL server {host} could not be verified "
                f"({exc.verify_message}); give its CA as sslrootcert=PATH in the DSN, or use the "
                "host name the certificate is for"
            )
        else:
            detail = f"the PostgreSQL server {host} refused TLS; "
            detail += (
                "a server on another machine gets verified TLS unless the DSN says otherwise: "
                "enable TLS on the server, or accept plaintext explicitly with sslmode=disable"
                if postgres_sslmode(self._dsn) is None
                else "the DSN's sslmode requires it"
            )
        return HandlerError(TLS_REFUSED, scrub(detail, self._secrets), retryable=False)

    def _tls_context(self) -> ssl.SSLContext | None:
        """None leaves TLS to asyncpg (the DSN's sslmode, or its default on this machine)."""
        if not self.verify_tls:
            return None
        try:
            return verified_tls(self._dsn)
        except (OSError, ssl.SSLError) as exc:
            detail = f"cannot load the DSN's TLS files: {type(exc).__name__}: {exc}"
            raise HandlerError(TLS_REFUSED, scrub(detail, self._secrets), retryable=False) from None

    async def _ensure(self) -> asyncpg.Pool:
        if self._pool is None:
            # min_size=0: creating the pool connects nothing, so it cannot fail for an outage;
            # connections are made (and remade after one broke) on acquire.
            self._pool = await asyncpg.create_pool(
                self._dsn,
                min_size=0,
                max_size=self.concurrency,
                timeout=self.connect_timeout,
                command_timeout=self.command_timeout,
                init=_prepare_connection,
                ssl=self._tls_context(),
            )
        if not self._migrated:
            async with self._migrating:
                if not self._migrated:
                    async with self._pool.acquire(timeout=self.connect_timeout) as connection:
                        self.schema_version = await migrate(connection, self.prefix)
                    self._migrated = True
        return self._pool

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            await asyncio.wait_for(pool.close(), POOL_CLOSE_TIMEOUT)
        except (asyncio.TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            pool.terminate()

    async def write(self, records: list[Record]) -> list[HandlerError | None]:
        """One transaction for the batch; when the data is refused, each event alone, so only
        the events at fault fail."""
        try:
            await self._commit(batch_rows(records))
            return [None] * len(records)
        except Exception as exc:
            if not is_data_error(exc) or len(records) == 1:
                return list(await self._failed(exc, len(records)))
        outcomes: list[HandlerError | None] = []
        for index, record in enumerate(records):
            try:
                await self._commit(batch_rows([record]))
                outcomes.append(None)
            except Exception as exc:
                if is_data_error(exc):
                    outcomes += await self._failed(exc, 1)
                    continue
                outcomes += await self._failed(exc, len(records) - index)
                break
        return outcomes

    async def _commit(self, rows: Rows) -> None:
        pool = await self._ensure()
        async with (
            pool.acquire(timeout=self.connect_timeout) as connection,
            connection.transaction(),
        ):
            await write_rows(connection, rows, self._inserts)

    async def _failed(self, exc: BaseException, count: int) -> list[HandlerError]:
        """``count`` errors for ``exc`` (one per event: each is raised in its own caller)."""
        errors = [classify(exc, self._secrets) for _ in range(count)]
        if errors[0].infrastructure:
            # The server may have restarted: idle connections are dead, and it may even be a
            # restored one with an older schema. Both are checked again on the next attempt.
            self._migrated = False
            if self._pool is not None:
                await self._pool.expire_connections()
        return errors
