"""The tables, as numbered migrations for each dialect, and the columns the writers fill.

A database records the versions applied in ``<prefix>schema_migrations``; at start the handler
applies the missing ones in one transaction (PostgreSQL under an advisory lock, SQLite under
``BEGIN IMMEDIATE``), so two daemons starting at once migrate exactly once. Applied migrations
are never edited: a change is a new version. Every time is integer milliseconds since the epoch
(``*_ms``), the unit Tuya uses; ``to_timestamp(event_time_ms / 1000.0)`` gives a timestamptz.
"""

from __future__ import annotations

from dataclasses import dataclass

SQLITE = "sqlite"
POSTGRES = "postgres"


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    sqlite: tuple[str, ...]
    postgres: tuple[str, ...]

    def statements(self, dialect: str, prefix: str) -> list[str]:
        chosen = self.sqlite if dialect == SQLITE else self.postgres
        return [statement.format(p=prefix) for statement in chosen]


def _tables(json: str, integer: str) -> tuple[str, ...]:
    """Version 1 in one dialect: ``json`` is jsonb or TEXT, ``integer`` bigint or INTEGER."""
    return (
        f"""CREATE TABLE {{p}}events (
            id TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            protocol INTEGER,
            device_id TEXT,
            product_key TEXT,
            biz_code TEXT,
            event_time_ms {integer},
            publish_time_ms {integer},
            received_at_ms {integer} NOT NULL,
            partition INTEGER,
            message_id TEXT NOT NULL,
            document {json} NOT NULL
        )""",
        f"""CREATE TABLE {{p}}latest_status (
            device_id TEXT NOT NULL,
            code TEXT NOT NULL,
            value {json} NOT NULL,
            t_ms {integer} NOT NULL,
            event_id TEXT NOT NULL,
            updated_at_ms {integer} NOT NULL,
            PRIMARY KEY (device_id, code)
        )""",
        f"""CREATE TABLE {{p}}device_events (
            id TEXT PRIMARY KEY,
            device_id TEXT,
            biz_code TEXT NOT NULL,
            biz_data {json} NOT NULL,
            event_time_ms {integer},
            received_at_ms {integer} NOT NULL
        )""",
    )


_V2 = (
    "ALTER TABLE {p}events ADD COLUMN topic TEXT",
    "CREATE INDEX {p}events_device_time ON {p}events (device_id, event_time_ms)",
    "CREATE INDEX {p}device_events_device_time ON {p}device_events (device_id, event_time_ms)",
)


def _enrichment(json: str, integer: str) -> tuple[str, ...]:
    """Version 3: what enrichment knows. Columns added, never rebuilt: old rows are kept (their
    new columns NULL); ``devices`` is one row per device, its specification as JSON."""
    return (
        f"ALTER TABLE {{p}}latest_status ADD COLUMN scaled {json}",
        "ALTER TABLE {p}latest_status ADD COLUMN unit TEXT",
        "ALTER TABLE {p}latest_status ADD COLUMN name TEXT",
        f"""CREATE TABLE {{p}}devices (
            id TEXT PRIMARY KEY,
            name TEXT,
            product_id TEXT,
            product_name TEXT,
            category TEXT,
            model TEXT,
            time_zone TEXT,
            specification {json},
            fetched_at_ms {integer} NOT NULL,
            specification_fetched_at_ms {integer} NOT NULL,
            updated_at_ms {integer} NOT NULL
        )""",
    )


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "events, latest_status, device_events",
        sqlite=_tables("TEXT", "INTEGER"),
        postgres=_tables("JSONB", "BIGINT"),
    ),
    Migration(
        2,
        "events.topic; indexes on (device_id, event_time_ms)",
        sqlite=_V2,
        postgres=_V2,
    ),
    Migration(
        3,
        "latest_status.scaled, unit, name; devices",
        sqlite=_enrichment("TEXT", "INTEGER"),
        postgres=_enrichment("JSONB", "BIGINT"),
    ),
)
LATEST_VERSION = MIGRATIONS[-1].version


def versions_table(prefix: str) -> str:
    return f"{prefix}schema_migrations"


def create_versions_table(prefix: str, integer: str) -> str:
    return (
        f"CREATE TABLE IF NOT EXISTS {versions_table(prefix)} ("
        f"version INTEGER PRIMARY KEY, description TEXT NOT NULL, "
        f"applied_at_ms {integer} NOT NULL)"
    )


def insert_version(prefix: str, placeholder: str) -> str:
    """Record one applied version; ``placeholder`` is ``?`` (SQLite) or ``$`` (PostgreSQL)."""
    marks = ", ".join("?" if placeholder == "?" else f"${n}" for n in (1, 2, 3))
    return (
        f"INSERT INTO {versions_table(prefix)} (version, description, applied_at_ms) "
        f"VALUES ({marks})"
    )


class SchemaTooNew(Exception):
    """The database was migrated by a newer tuya-events: writing to it could corrupt it."""

    def __init__(self, found: int) -> None:
        super().__init__(
            f"the database schema is at version {found}, newer than this tuya-events knows "
            f"({LATEST_VERSION}): upgrade tuya-events or use another table_prefix"
        )
        self.found = found


def pending(current: int) -> list[Migration]:
    """The migrations to apply on a database at version ``current`` (0: empty)."""
    if current > LATEST_VERSION:
        raise SchemaTooNew(current)
    return [migration for migration in MIGRATIONS if migration.version > current]


# The columns each writer fills, in the order of the row tuples built in rows.py.
EVENT_COLUMNS = (
    "id",
    "kind",
    "protocol",
    "device_id",
    "product_key",
    "biz_code",
    "event_time_ms",
    "publish_time_ms",
    "received_at_ms",
    "partition",
    "message_id",
    "topic",
    "document",
)
STATUS_COLUMNS = (
    "device_id",
    "code",
    "value",
    "t_ms",
    "event_id",
    "updated_at_ms",
    "scaled",
    "unit",
    "name",
)
# Replaced when a newer status arrives (the key columns stay).
STATUS_UPDATED = ("value", "t_ms", "event_id", "updated_at_ms", "scaled", "unit", "name")
DEVICE_EVENT_COLUMNS = (
    "id",
    "device_id",
    "biz_code",
    "biz_data",
    "event_time_ms",
    "received_at_ms",
)
DEVICE_COLUMNS = (
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
)
JSON_COLUMNS = frozenset({"document", "value", "biz_data", "scaled", "specification"})


def newer_status(table: str) -> str:
    """The latest-status conflict clause: every column replaced, only by a newer ``t``.
    ``table`` is how the statement names the stored row (the table, or its alias)."""
    updates = ", ".join(f"{column} = excluded.{column}" for column in STATUS_UPDATED)
    return f"(device_id, code) DO UPDATE SET {updates} WHERE excluded.t_ms > {table}.t_ms"


def newer_device(table: str) -> str:
    """The devices conflict clause: a snapshot replaces the stored one unless it is older (two
    daemons, or a catalogue read back from an older file, must not undo a refresh)."""
    updates = ", ".join(f"{column} = excluded.{column}" for column in DEVICE_COLUMNS[1:])
    return (
        f"(id) DO UPDATE SET {updates} "
        f"WHERE excluded.fetched_at_ms >= {table}.fetched_at_ms "
        f"AND excluded.specification_fetched_at_ms >= {table}.specification_fetched_at_ms"
    )
