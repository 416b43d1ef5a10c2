"""The catalogue on disk: one SQLite file, so a restart costs no OpenAPI call.

One row per device holds its whitelisted record (:meth:`Device.as_dict`: details and data
points, never a secret); a small key-value table holds what the catalogue learned about the
project (which API family answers). Synchronous: the catalogue calls it in a thread, and only
when something changed, never per message.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path

import orjson

from tuya_events.observability.logging import get_logger
from tuya_events.tuya.devices import DataPoint, Device, make_device

log = get_logger("tuya_events.catalogue")

SCHEMA_VERSION = 1
_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS devices (
        id TEXT PRIMARY KEY,
        record TEXT NOT NULL,
        updated_at_ms INTEGER NOT NULL
    )""",
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
)


class CatalogueStoreError(Exception):
    """The catalogue file cannot be opened or written (a path, permissions, a full disk)."""


def device_from_record(record: bytes | str) -> Device:
    """A stored record back to a device; raises ValueError for one that is not."""
    raw = orjson.loads(record)
    if not isinstance(raw, dict):
        raise ValueError("a catalogue record is not an object")
    points = []
    for item in raw.get("points") or ():
        point = DataPoint.from_dict(item) if isinstance(item, dict) else None
        if point is not None:
            points.append(point)
    fetched = raw.get("fetched_at_ms")
    spec_fetched = raw.get("specification_fetched_at_ms")
    return make_device(
        raw,
        points,
        fetched if isinstance(fetched, int) else 0,
        spec_fetched if isinstance(spec_fetched, int) else 0,
    )


class CatalogueStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._db: sqlite3.Connection | None = None

    def open(self) -> CatalogueStore:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA busy_timeout=5000")
            for statement in _SCHEMA:
                db.execute(statement)
            db.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)",
                (str(SCHEMA_VERSION),),
            )
        except (sqlite3.Error, OSError) as exc:
            raise CatalogueStoreError(
                f"cannot open the device catalogue {self.path}: {exc}"
            ) from exc
        self._db = db
        return self

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def __enter__(self) -> CatalogueStore:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("the catalogue store is not open")
        return self._db

    def load(self) -> list[Device]:
        """Every stored device; a record that cannot be read is skipped with a warning (it is
        fetched again when its device is next seen)."""
        devices = []
        try:
            rows = self.db.execute("SELECT id, record FROM devices ORDER BY id").fetchall()
        except sqlite3.Error as exc:
            raise CatalogueStoreError(f"cannot read the device catalogue: {exc}") from exc
        for device_id, record in rows:
            try:
                devices.append(device_from_record(record))
            except (ValueError, TypeError) as exc:
                log.warning(
                    "unreadable catalogue record skipped", device_id=device_id, error=str(exc)
                )
        return devices

    def save(self, devices: Iterable[Device]) -> None:
        now = int(time.time() * 1000)
        rows = [(d.id, orjson.dumps(d.as_dict()).decode(), now) for d in devices]
        if not rows:
            return
        try:
            with self.db:
                self.db.execute("BEGIN")
                self.db.executemany(
                    "INSERT INTO devices (id, record, updated_at_ms) VALUES (?, ?, ?) "
                    "ON CONFLICT (id) DO UPDATE SET record = excluded.record, "
                    "updated_at_ms = excluded.updated_at_ms",
                    rows,
                )
        except sqlite3.Error as exc:
            raise CatalogueStoreError(f"cannot write the device catalogue: {exc}") from exc

    def delete(self, device_ids: Iterable[str]) -> None:
        ids = [(device_id,) for device_id in device_ids]
        try:
            with self.db:
                self.db.execute("BEGIN")
                self.db.executemany("DELETE FROM devices WHERE id = ?", ids)
        except sqlite3.Error as exc:
            raise CatalogueStoreError(f"cannot write the device catalogue: {exc}") from exc

    def meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        try:
            self.db.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )
        except sqlite3.Error as exc:
            raise CatalogueStoreError(f"cannot write the device catalogue: {exc}") from exc
