"""Database exceptions sorted into what the pipeline must do with the event.

- ``database_unavailable`` (infrastructure): the server or file cannot be reached, went away,
  is shutting down, is out of resources, or hangs. The message stays unacknowledged and is
  retried for as long as ``retry.infrastructure_max_time`` allows; never dead-lettered for this.
- ``database_refused`` (not retryable): the database refuses this event's values (a number out
  of range, a NUL character jsonb cannot hold, ...): it never will accept them -> dead letter.
- ``database_error`` (retryable a few times): anything else, such as a deadlock.

Messages never contain the DSN or its password: they are scrubbed here, before anyone logs them.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence

import asyncpg

from tuya_events.handlers.base import HandlerError
from tuya_events.handlers.database.schema import SchemaTooNew

UNAVAILABLE = "database_unavailable"
REFUSED = "database_refused"
ERROR = "database_error"
SCRUBBED = "***"

# SQLSTATE classes: 08 connection, 28 authorization, 3D no such database, 53 resources (disk
# full, too many connections), 57 operator intervention (shutdown), 58 system (I/O) errors.
_OUTAGE_CLASSES = ("08", "28", "3D", "53", "57", "58")
# 22 data exception, 23 integrity constraint, 54 program limit (a value too large).
_REFUSED_CLASSES = ("22", "23", "54")


def scrub(text: str, secrets: Sequence[str]) -> str:
    for secret in sorted(secrets, key=len, reverse=True):
        if secret:
            text = text.replace(secret, SCRUBBED)
    return text


def _describe(exc: BaseException, secrets: Sequence[str]) -> str:
    detail = str(exc) or "(no detail)"
    return scrub(f"{type(exc).__name__}: {detail}", secrets)


def is_data_error(exc: BaseException) -> bool:
    """The event's values are at fault: writing it alone would fail again."""
    if isinstance(exc, asyncpg.PostgresError):
        return (getattr(exc, "sqlstate", None) or "")[:2] in _REFUSED_CLASSES
    return isinstance(
        exc,
        (sqlite3.IntegrityError, sqlite3.DataError, sqlite3.InterfaceError, OverflowError),
    )


def is_outage(exc: BaseException) -> bool:
    if isinstance(exc, SchemaTooNew):  # a newer daemon migrated it: wait for the operator
        return True
    if isinstance(exc, asyncpg.PostgresError):
        return (getattr(exc, "sqlstate", None) or "")[:2] in _OUTAGE_CLASSES or isinstance(
            exc, asyncpg.PostgresConnectionError
        )
    if isinstance(exc, asyncpg.InterfaceError):
        # "connection is closed", "connection was closed in the middle of operation", ...
        return not isinstance(exc, asyncpg.exceptions.ClientConfigurationError)
    if isinstance(exc, (OSError, asyncio.TimeoutError, ConnectionError, EOFError)):
        return True
    # The file cannot be opened, is locked by another process, or the disk is full or failing.
    return isinstance(exc, sqlite3.OperationalError)


def classify(exc: BaseException, secrets: Sequence[str] = ()) -> HandlerError:
    """The HandlerError the pipeline should see for ``exc`` (message scrubbed of secrets)."""
    if isinstance(exc, HandlerError):
        return exc
    if isinstance(exc, asyncpg.InterfaceError) and isinstance(
        exc.__context__, (asyncpg.PostgresError, OSError)
    ):
        # "cannot call Transaction.__aexit__(): the underlying connection is closed": the
        # rollback failed too; what happened first says more (e.g. AdminShutdownError).
        exc = exc.__context__
    message = _describe(exc, secrets)
    if is_data_error(exc):
        return HandlerError(REFUSED, f"the database refused the event: {message}", retryable=False)
    if is_outage(exc):
        return HandlerError(UNAVAILABLE, f"database unavailable: {message}", infrastructure=True)
    return HandlerError(ERROR, f"database error: {message}")
