"""The ``database`` handler's keys, validated with key paths (``handlers[2].dsn``).

Exactly one of ``path`` (SQLite, the embedded default) or ``dsn`` (PostgreSQL) says where the
events go; everything else has a default that suits both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from tuya_events.config.transport_security import SSLMODES, postgres_query, postgres_sslmode
from tuya_events.config.types import Duration
from tuya_events.observability.redact import url_secrets

DSN_SCHEMES = ("postgresql", "postgres")
# DSN parameters naming files the TLS connection is made with; "system" is libpq's word for
# the system's CAs.
_TLS_FILES = ("sslrootcert", "sslcert", "sslkey")
# Leaves room for the longest derived name (``<prefix>device_events_device_time``) in
# PostgreSQL's 63-byte identifiers.
MAX_PREFIX_LENGTH = 32


class BatchOptions(BaseModel):
    """Group commit: a batch is written when it has ``max_size`` events or its oldest event has
    waited ``max_wait``, whichever comes first."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_size: int = Field(default=500, ge=1, le=10_000)
    max_wait: Duration = Field(default=0.05, le=10.0)


def _dsn_problem(dsn: str) -> str | None:
    """What is wrong with the DSN, if anything, without quoting it (it holds the password)."""
    parts = urlsplit(dsn)
    try:
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        port_ok = False
    if parts.scheme not in DSN_SCHEMES or not port_ok:
        return "must be a postgresql://user:password@host:port/db URL"
    sslmode = postgres_sslmode(dsn)
    if sslmode is not None and sslmode not in SSLMODES:
        return f"sslmode must be one of {', '.join(SSLMODES)}"
    query = postgres_query(dsn)
    if query.get("sslrootcert") == "system" and sslmode not in (None, "verify-full"):
        return "sslrootcert=system needs sslmode=verify-full (or no sslmode)"
    for key in _TLS_FILES:
        value = query.get(key)
        if value and value != "system" and not Path(value).is_file():
            return f"{key}: {value} is not a file"
    return None


def _problem(key: str, message: str) -> ValidationError:
    """A validation error located at one key, so the user sees ``handlers[0].<key>``."""
    return ValidationError.from_exception_data(
        "DatabaseOptions",
        [
            InitErrorDetails(
                type=PydanticCustomError("database_options", message), loc=(key,), input=None
            )
        ],
    )


class DatabaseOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str | None = Field(default=None, min_length=1)
    dsn: SecretStr | None = None
    table_prefix: str = Field(
        default="tuya_", pattern=r"^[a-z_][a-z0-9_]*$", max_length=MAX_PREFIX_LENGTH
    )
    batch: BatchOptions = BatchOptions()
    store_events: bool = True
    store_latest_status: bool = True
    store_device_events: bool = True
    # PostgreSQL only: connections, hence batches written at the same time.
    pool_size: int = Field(default=4, ge=1, le=100)
    connect_timeout: Duration = Field(default=10.0, gt=0)
    # A statement that runs longer counts as an outage (the server hangs): retried later.
    command_timeout: Duration = Field(default=30.0, gt=0)
    # SQLite only: how long to wait for another process that holds the write lock.
    busy_timeout: Duration = Field(default=5.0, ge=0)

    @model_validator(mode="after")
    def _one_target(self) -> DatabaseOptions:
        if self.path is not None and self.dsn is not None:
            raise _problem("dsn", "give either path (SQLite) or dsn (PostgreSQL), not both")
        if self.path is None and self.dsn is None:
            raise _problem(
                "path", "give path (a SQLite file) or dsn (postgresql://...): neither is set"
            )
        problem = _dsn_problem(self.dsn.get_secret_value()) if self.dsn is not None else None
        if problem:
            raise _problem("dsn", problem)
        if self.path is not None:
            for key in ("pool_size", "connect_timeout", "command_timeout"):
                if key in self.model_fields_set:
                    raise _problem(key, "applies to PostgreSQL (dsn) only")
        elif "busy_timeout" in self.model_fields_set:
            raise _problem("busy_timeout", "applies to SQLite (path) only")
        if not (self.store_events or self.store_latest_status or self.store_device_events):
            raise _problem("store_events", "all of store_* are false: nothing would be stored")
        return self

    @property
    def backend(self) -> str:
        return "postgres" if self.dsn is not None else "sqlite"

    def dsn_secrets(self) -> list[str]:
        """The DSN and the credentials inside it: never to appear in a message."""
        if self.dsn is None:
            return []
        dsn = self.dsn.get_secret_value()
        return [dsn, *url_secrets(dsn)]


def describe(options: DatabaseOptions) -> dict[str, Any]:
    """Where the events go, for log lines: the host and database, never the credentials."""
    if options.dsn is None:
        return {"backend": "sqlite", "path": options.path}
    parts = urlsplit(options.dsn.get_secret_value())
    return {
        "backend": "postgres",
        "host": parts.hostname,
        "port": parts.port,
        "database": parts.path.lstrip("/") or None,
    }
