"""Small value types the configuration accepts in human form."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
# Compound, largest unit first, each once: 1h45m, 2d12h, 1m30s, 1s500ms.
_COMPOUND = re.compile(r"^\s*(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+)s)?(?:(\d+)ms)?\s*$")
_COMPOUND_UNITS = (86400.0, 3600.0, 60.0, 1.0, 0.001)
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: Any) -> Any:
    """``30``, ``"30s"``, ``"250ms"``, ``"5m"``, ``"2h"``, ``"1h45m"`` -> seconds as float."""
    if isinstance(value, bool):
        raise ValueError("must be a duration such as 30s, 250ms, 5m, 1h45m or a number of seconds")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError("must not be negative")
        return float(value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        compound = _COMPOUND.match(value)
        if compound and any(compound.groups()):
            parts = zip(compound.groups(), _COMPOUND_UNITS, strict=True)
            return sum(int(part) * unit for part, unit in parts if part)
    raise ValueError("must be a duration such as 30s, 250ms, 5m, 1h45m or a number of seconds")


def parse_listen_address(value: Any) -> Any:
    """``host:port`` (``[::1]:9464`` for IPv6) -> ``(host, port)``."""
    if not isinstance(value, str) or ":" not in value:
        raise ValueError("must be host:port, e.g. 127.0.0.1:9464 or 0.0.0.0:9464")
    host, _, port_text = value.rpartition(":")
    host = host.strip("[]")
    if not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError("must be host:port with a port from 0 to 65535")
    return (host, int(port_text))


Duration = Annotated[float, BeforeValidator(parse_duration)]
ListenAddress = Annotated[tuple[str, int], BeforeValidator(parse_listen_address)]
