"""Which records a command or a replay is about: one filter type, turned into parameterised SQL."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNIT_SECONDS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}

# Exact-match filters: attribute name -> column. Column names are constants, never user input.
_EQUALS = (
    ("reason", "reason"),
    ("stage", "stage"),
    ("handler", "handler"),
    ("device_id", "device_id"),
)


@dataclass
class RecordFilter:
    """Records to select; every field that is set must match (AND). All unset: every record.

    ``since`` (inclusive) and ``until`` (exclusive) are epoch seconds compared with
    ``last_failure``. ``ids=[]`` matches nothing, ``ids=None`` does not filter.
    """

    ids: list[int] | None = None
    reason: str | None = None
    stage: str | None = None
    handler: str | None = None
    device_id: str | None = None
    since: float | None = None
    until: float | None = None

    def is_empty(self) -> bool:
        """True when nothing is filtered: a purge must then be asked for explicitly."""
        return all(getattr(self, item.name) is None for item in fields(self))

    def to_sql(self) -> tuple[str, list[Any]]:
        """``(condition, parameters)``; the condition is ``"1"`` when nothing is filtered."""
        conditions: list[str] = []
        parameters: list[Any] = []
        if self.ids is not None:
            if self.ids:
                conditions.append(f"id IN ({', '.join('?' for _ in self.ids)})")
                parameters.extend(int(record_id) for record_id in self.ids)
            else:
                conditions.append("0")
        for attribute, column in _EQUALS:
            value = getattr(self, attribute)
            if value is not None:
                conditions.append(f"{column} = ?")
                parameters.append(value)
        if self.since is not None:
            conditions.append("last_failure >= ?")
            parameters.append(float(self.since))
        if self.until is not None:
            conditions.append("last_failure < ?")
            parameters.append(float(self.until))
        return (" AND ".join(conditions) or "1"), parameters


def parse_time(text: str, now: float | None = None) -> float:
    """``2h``, ``30m``, ``1d`` (that long ago) or ISO 8601 -> epoch seconds.

    An ISO time without an offset is local time, as a person at the terminal means it.
    """
    match = _RELATIVE.match(text)
    if match:
        reference = time.time() if now is None else now
        return reference - float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"{text!r} is not a time: use ISO 8601 (2024-05-01T12:00, 2024-05-01T10:00Z) "
            "or a duration ago (30m, 2h, 1d, 1w)"
        ) from None
    return moment.timestamp()
