"""The store's schema and its migrations, versioned with ``PRAGMA user_version``.

``MIGRATIONS[n]`` takes a version-``n`` file to version ``n + 1``. To change the schema, append
a function; never edit one that has shipped, since files in the field already ran it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from tuya_events.deadletter.errors import DeadLetterStoreError

TABLE = "dead_letters"


def _create_v1(connection: sqlite3.Connection) -> None:
    connection.execute(
        f"""
        CREATE TABLE {TABLE} (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            message_id TEXT NOT NULL,
            topic TEXT NOT NULL,
            partition INTEGER NOT NULL,
            publish_time_ms INTEGER NOT NULL,
            redelivery_count INTEGER NOT NULL,
            key TEXT,
            properties TEXT NOT NULL,
            body BLOB NOT NULL,
            stage TEXT NOT NULL,
            handler TEXT,
            reason TEXT NOT NULL,
            message TEXT NOT NULL,
            attempts INTEGER NOT NULL,
            first_failure REAL NOT NULL,
            last_failure REAL NOT NULL,
            device_id TEXT,
            plaintext BLOB
        )
        """
    )
    for column in ("reason", "stage", "last_failure"):
        connection.execute(f"CREATE INDEX {TABLE}_{column} ON {TABLE} ({column})")


def _seen_v2(connection: sqlite3.Connection) -> None:
    """How often each message was dead-lettered, and the index that finds it again: a message
    the broker delivers again (a lost acknowledgement) updates its record, never adds one."""
    connection.execute(f"ALTER TABLE {TABLE} ADD COLUMN seen INTEGER NOT NULL DEFAULT 1")
    connection.execute(f"CREATE INDEX {TABLE}_message_id ON {TABLE} (message_id)")


MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (_create_v1, _seen_v2)
SCHEMA_VERSION = len(MIGRATIONS)


def user_version(connection: sqlite3.Connection) -> int:
    return int(connection.execute("PRAGMA user_version").fetchone()[0])


def _has_foreign_tables(connection: sqlite3.Connection) -> bool:
    row = connection.execute(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
    ).fetchone()
    return bool(row[0])


def migrate(connection: sqlite3.Connection, path: str) -> int:
    """Bring the file to :data:`SCHEMA_VERSION` in one transaction; returns the version.

    Runs under ``BEGIN IMMEDIATE`` and re-reads the version there, so the daemon and a CLI
    opening the same file at once cannot both migrate it. Refuses a file written by a newer
    version, and a version-0 file that already holds other tables (the wrong path).
    """
    if user_version(connection) == SCHEMA_VERSION:
        return SCHEMA_VERSION
    connection.execute("BEGIN IMMEDIATE")
    try:
        current = user_version(connection)
        if current > SCHEMA_VERSION:
            raise DeadLetterStoreError(
                f"{path}: schema version {current} is newer than this program's "
                f"({SCHEMA_VERSION}); upgrade tuya-events"
            )
        if current == 0 and _has_foreign_tables(connection):
            raise DeadLetterStoreError(
                f"{path}: holds other tables and no dead-letter schema; not a dead-letter store"
            )
        for version in range(current, SCHEMA_VERSION):
            MIGRATIONS[version](connection)
            # PRAGMA takes no parameters; the value is an int from this module, not input.
            connection.execute(f"PRAGMA user_version = {version + 1:d}")
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise
    return SCHEMA_VERSION
