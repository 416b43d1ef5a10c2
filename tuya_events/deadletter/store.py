"""The dead-letter store: SQLite in WAL mode with ``synchronous=FULL``.

``put`` commits before it returns, so once it has returned the pipeline may acknowledge the
message: the record survives a crash or SIGKILL of the process. The API is synchronous; the
pipeline calls it through ``asyncio.to_thread``, hence one connection shared across threads
behind a lock.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from tuya_events.deadletter.errors import DeadLetterStoreError
from tuya_events.deadletter.filters import RecordFilter
from tuya_events.deadletter.record import COLUMNS, DeadLetterRecord
from tuya_events.deadletter.schema import TABLE, migrate
from tuya_events.delivery import Delivery, Failure

PRIVATE_FILE = 0o600  # with store_plaintext the store holds decrypted device data
PRIVATE_DIRECTORY = 0o700
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
BUSY_TIMEOUT = 30.0  # seconds to wait for another process (daemon vs. CLI) holding the lock
ITER_BATCH = 256

_SELECT = f"SELECT {', '.join(COLUMNS)} FROM {TABLE}"
_INSERT_COLUMNS = COLUMNS[1:]  # all but id, which SQLite assigns
_INSERT = "INSERT INTO {} ({}) VALUES ({})".format(
    TABLE, ", ".join(_INSERT_COLUMNS), ", ".join("?" for _ in _INSERT_COLUMNS)
)
_UPDATE = (
    f"UPDATE {TABLE} SET attempts = attempts + ?, last_failure = ?, stage = ?, handler = ?, "
    "reason = ?, message = ?, device_id = COALESCE(?, device_id), "
    "plaintext = COALESCE(?, plaintext), seen = seen + ? WHERE id = ?"
)
# The record of an earlier failure of the same message at the same place.
_EARLIER = (
    f"SELECT id FROM {TABLE} WHERE message_id = ? AND topic = ? AND stage = ? AND handler IS ? "
    "ORDER BY id LIMIT 1"
)


@dataclass(frozen=True, slots=True)
class Kept:
    """What :meth:`DeadLetterStore.keep` did: the record, and whether it already held the
    message (delivered again after it was dead-lettered: the record was updated)."""

    record_id: int
    again: bool


@contextmanager
def _transaction(connection: sqlite3.Connection) -> Iterator[None]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``: the commit (and its fsync) happens before exit."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise


def _fsync_directory(directory: Path) -> None:
    """Make a newly created file's directory entry durable too (POSIX; a no-op elsewhere)."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def _private_directories(directory: Path) -> None:
    """Create the missing directories, each 0700: the store may hold device data."""
    missing = []
    while not directory.exists() and directory != directory.parent:
        missing.append(directory)
        directory = directory.parent
    for path in reversed(missing):
        with suppress(FileExistsError):  # another process made it meanwhile
            path.mkdir(mode=PRIVATE_DIRECTORY)


def _create_private(path: Path) -> bool:
    """Create the database file 0600 (a umask can only narrow it) before SQLite opens it; SQLite
    then gives its ``-wal``, ``-shm`` and journal files the same mode. True if created."""
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    except FileExistsError:
        return False
    os.close(descriptor)
    return True


class DeadLetterStore:
    """Durable, thread-safe store of messages that could not be handled.

    ``store_plaintext=False`` (the default) keeps only the encrypted body: a plaintext passed to
    :meth:`put` is then dropped, never written.
    """

    def __init__(self, path: str | Path, store_plaintext: bool = False) -> None:
        self.path = Path(path)
        self.store_plaintext = store_plaintext
        self._lock = threading.Lock()
        self._connection: sqlite3.Connection | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def open(self) -> DeadLetterStore:
        """Open (creating the file and its directory) and migrate; idempotent."""
        with self._lock:
            self._connect()
        return self

    def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                connection, self._connection = self._connection, None
                try:
                    connection.close()
                except sqlite3.Error as error:
                    raise self._error("close", error) from None

    def __enter__(self) -> DeadLetterStore:
        return self.open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _error(self, action: str, error: sqlite3.Error) -> DeadLetterStoreError:
        return DeadLetterStoreError(f"dead-letter store {self.path}: cannot {action}: {error}")

    def _connect(self) -> sqlite3.Connection:
        """The connection, opened on first use. The caller holds the lock."""
        if self._connection is not None:
            return self._connection
        try:
            _private_directories(self.path.parent)
            created = _create_private(self.path)
        except OSError as error:
            raise DeadLetterStoreError(
                f"dead-letter store {self.path}: cannot create it: {error.strerror or error}"
            ) from None
        try:
            connection = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as error:
            raise self._error("open", error) from None
        try:
            connection.execute("PRAGMA journal_mode = WAL").fetchone()
            connection.execute("PRAGMA synchronous = FULL")
            migrate(connection, str(self.path))
        except (sqlite3.Error, DeadLetterStoreError) as error:
            connection.close()
            if isinstance(error, DeadLetterStoreError):
                raise
            raise self._error("open", error) from None
        if created:
            _fsync_directory(self.path.parent)
        self._connection = connection
        return connection

    @contextmanager
    def _locked(self, action: str) -> Iterator[sqlite3.Connection]:
        """The connection under the lock, with sqlite3 errors turned into store errors."""
        with self._lock:
            connection = self._connect()
            try:
                yield connection
            except sqlite3.Error as error:
                raise self._error(action, error) from None

    # -- writing -----------------------------------------------------------------------------

    def put(
        self,
        delivery: Delivery,
        failure: Failure,
        device_id: str | None = None,
        plaintext: bytes | None = None,
    ) -> int:
        """Record a failed message (see :meth:`keep`); returns the record id."""
        return self.keep(delivery, failure, device_id, plaintext).record_id

    def keep(
        self,
        delivery: Delivery,
        failure: Failure,
        device_id: str | None = None,
        plaintext: bytes | None = None,
    ) -> Kept:
        """Record a failed message; committed (durable) when this returns.

        One record per message and place of failure (stage and handler): a message delivered
        again after it was dead-lettered (the broker lost the acknowledgement) updates its
        record, ``seen`` counting the times. A replayed message (``delivery.dead_letter_id``
        set) updates the record it came from. Either way attempts add up, the latest failure
        replaces the reason, ``first_failure`` stays; if the record was deleted meanwhile, a
        new one is written, so the message is still not lost.
        """
        kept = bytes(plaintext) if self.store_plaintext and plaintext is not None else None
        with self._locked("write a record") as connection, _transaction(connection):
            replayed = delivery.dead_letter_id is not None
            record_id = delivery.dead_letter_id
            if record_id is None:
                row = connection.execute(
                    _EARLIER,
                    (delivery.message_id, delivery.topic, failure.stage, failure.handler),
                ).fetchone()
                record_id = None if row is None else int(row[0])
            if record_id is not None:
                cursor = connection.execute(
                    _UPDATE,
                    (
                        _int64(failure.attempts),
                        failure.last_failure,
                        failure.stage,
                        failure.handler,
                        failure.reason,
                        failure.detail,
                        device_id,
                        kept,
                        0 if replayed else 1,
                        record_id,
                    ),
                )
                if cursor.rowcount == 1:
                    return Kept(record_id, again=not replayed)
            cursor = connection.execute(_INSERT, _insert_values(delivery, failure, device_id, kept))
            new_id = cursor.lastrowid
        assert new_id is not None
        return Kept(new_id, again=False)

    def delete(self, record_id: int) -> bool:
        """Remove one record (after a successful replay); False if it was not there."""
        with self._locked("delete a record") as connection:
            cursor = connection.execute(f"DELETE FROM {TABLE} WHERE id = ?", (record_id,))
            return cursor.rowcount == 1

    def purge(self, filters: RecordFilter | None = None) -> int:
        """Remove every matching record (all of them without a filter); returns how many."""
        condition, parameters = (filters or RecordFilter()).to_sql()
        with self._locked("purge records") as connection:
            cursor = connection.execute(f"DELETE FROM {TABLE} WHERE {condition}", parameters)
            return cursor.rowcount

    # -- reading -----------------------------------------------------------------------------

    def count(self, filters: RecordFilter | None = None) -> int:
        condition, parameters = (filters or RecordFilter()).to_sql()
        with self._locked("count records") as connection:
            row = connection.execute(
                f"SELECT count(*) FROM {TABLE} WHERE {condition}", parameters
            ).fetchone()
            return int(row[0])

    def get(self, record_id: int) -> DeadLetterRecord | None:
        with self._locked("read a record") as connection:
            row = connection.execute(f"{_SELECT} WHERE id = ?", (record_id,)).fetchone()
        return None if row is None else DeadLetterRecord.from_row(row)

    def list(
        self, filters: RecordFilter | None = None, limit: int | None = None
    ) -> list[DeadLetterRecord]:
        """Matching records, oldest first, at most ``limit`` of them."""
        condition, parameters = (filters or RecordFilter()).to_sql()
        query = f"{_SELECT} WHERE {condition} ORDER BY id"
        if limit is not None:
            query += " LIMIT ?"
            parameters.append(int(limit))
        with self._locked("read records") as connection:
            rows = connection.execute(query, parameters).fetchall()
        return [DeadLetterRecord.from_row(row) for row in rows]

    def iter(
        self, filters: RecordFilter | None = None, batch_size: int = ITER_BATCH
    ) -> Iterator[DeadLetterRecord]:
        """Matching records, oldest first, read in batches by id.

        No cursor or lock is held between batches, so the consumer may ``put`` or ``delete``
        while iterating (a replay does both) and memory stays bounded for any store size.
        """
        condition, parameters = (filters or RecordFilter()).to_sql()
        query = f"{_SELECT} WHERE id > ? AND ({condition}) ORDER BY id LIMIT ?"
        last_id = 0
        while True:
            with self._locked("read records") as connection:
                rows = connection.execute(query, [last_id, *parameters, batch_size]).fetchall()
            for row in rows:
                record = DeadLetterRecord.from_row(row)
                last_id = record.id
                yield record
            if len(rows) < batch_size:
                return


def _insert_values(
    delivery: Delivery, failure: Failure, device_id: str | None, plaintext: bytes | None
) -> tuple[Any, ...]:
    """Values in :data:`COLUMNS` order, without ``id``. Odd property values become strings and
    out-of-range numbers are clamped: a dead-letter write must not fail on them."""
    return (
        delivery.message_id,
        delivery.topic,
        _int64(delivery.partition),
        _int64(delivery.publish_time_ms),
        _int64(delivery.redelivery_count),
        delivery.key,
        json.dumps(delivery.properties or {}, ensure_ascii=False, sort_keys=True, default=str),
        bytes(delivery.body),
        failure.stage,
        failure.handler,
        failure.reason,
        failure.detail,
        _int64(failure.attempts),
        failure.first_failure,
        failure.last_failure,
        device_id,
        plaintext,
        1,  # seen
    )


def _int64(value: int) -> int:
    """SQLite's integers are 64-bit; a value beyond (a broker's garbage time) is clamped rather
    than failing the write that keeps the message."""
    return min(max(int(value), _INT64_MIN), _INT64_MAX)
