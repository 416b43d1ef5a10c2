"""Check 8: the dead-letter store and the state directory can be written; what the store holds.

Writability is tried, not inferred from mode bits: a file is created in the directory and
removed again, so a read-only mount, an ACL or a missing capability shows up as it would for
the daemon. The store itself is only read (``mode=ro``), so the doctor never migrates it nor
takes its write lock from a running daemon.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
import time
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

from tuya_events.config.settings import Settings, catalogue_path, state_directory
from tuya_events.deadletter.schema import TABLE
from tuya_events.doctor.report import Report, Result, failed, format_duration, passed

DEAD_LETTERS, STATE = "dead-letters", "state-directory"
TITLES = {DEAD_LETTERS: "dead-letter store", STATE: "state directory"}
CHECKS = tuple(TITLES)


def writable_directory(directory: Path) -> str | None:
    """None when a file can be created in ``directory`` (or in the nearest existing parent,
    where the daemon would create it); else what went wrong."""
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is not a directory"
    try:
        descriptor, name = tempfile.mkstemp(prefix=".tuya-events-doctor-", dir=existing)
    except OSError as exc:
        return f"cannot create a file in {existing} ({exc.strerror or exc})"
    os.close(descriptor)
    os.unlink(name)
    return None


def _writable_file(path: Path) -> str | None:
    try:
        with open(path, "r+b"):
            return None
    except OSError as exc:
        return f"cannot write {path} ({exc.strerror or exc})"


def _stored(path: Path) -> tuple[int, float | None]:
    """Records and the oldest first failure (epoch seconds), read-only."""
    connection = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True, timeout=5)
    try:
        known = connection.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (TABLE,)
        ).fetchone()
        if known is None:
            return 0, None
        count, oldest = connection.execute(
            f"SELECT count(*), min(first_failure) FROM {TABLE}"
        ).fetchone()
        return int(count), float(oldest) if oldest is not None else None
    finally:
        connection.close()


def dead_letters(settings: Settings, config: str | None) -> Result:
    path = Path(settings.dead_letter.path)
    title = TITLES[DEAD_LETTERS]
    problem = writable_directory(path.parent)
    if problem is None and path.exists():
        problem = _writable_file(path)
    if problem is not None:
        return failed(
            DEAD_LETTERS,
            title,
            f"{path}: {problem}",
            (
                f"the daemon must write {path.name} and its -wal and -shm files in "
                f"{path.parent}: give the daemon's user write access there (systemd: "
                "StateDirectory=, Kubernetes: a writable volume), or set dead_letter.path",
                "without it a message that fails cannot be kept, so it is not acknowledged",
            ),
        )
    if not path.exists():
        return passed(DEAD_LETTERS, title, f"{path}: none yet (created on the first dead letter)")
    try:
        count, oldest = _stored(path)
    except sqlite3.DatabaseError as exc:
        return failed(
            DEAD_LETTERS,
            title,
            f"{path}: cannot be read ({exc})",
            ("dead_letter.path must be the store tuya-events made (or a new file)",),
        )
    if count == 0:
        return passed(DEAD_LETTERS, title, f"{path}: writable, empty", dead_letters=0)
    listing = f"tuya-events dlq list -c {config}" if config else "tuya-events dlq list"
    assert oldest is not None
    when = datetime.fromtimestamp(oldest).astimezone().isoformat(timespec="seconds")
    ago = format_duration(time.time() - oldest)
    return passed(
        DEAD_LETTERS,
        title,
        f"{path}: writable; {count} dead letters, the oldest from {when} ({ago} ago): {listing}",
        dead_letters=count,
        oldest=oldest,
    )


def state(settings: Settings) -> Result:
    title = TITLES[STATE]
    directories = [state_directory(settings), catalogue_path(settings).parent]
    for directory in dict.fromkeys(directories):
        problem = writable_directory(directory)
        if problem is not None:
            return failed(
                STATE,
                title,
                f"{directory}: {problem}",
                (
                    "the daemon keeps its device catalogue and resync record there: make it "
                    "writable for the daemon's user, or set state.directory",
                ),
            )
    shown = ", ".join(str(d) for d in dict.fromkeys(directories))
    return passed(STATE, title, f"{shown}: writable")


def run(settings: Settings, report: Report, config: str | None) -> None:
    report.add(dead_letters(settings, config))
    report.add(state(settings))
