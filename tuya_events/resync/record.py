"""When the daemon was last consuming, kept in the state directory across restarts.

Tuya keeps unacknowledged messages about two hours; what was published during a longer absence
is gone, and only the OpenAPI's current status can fill the gap. To know how long we were away,
the daemon writes the time while it is connected (every ``interval`` seconds, and at a clean
stop), not the time of the last message: a quiet project is not a gap.

A small JSON file replaced atomically (written beside, fsynced, renamed), so a crash leaves the
old record or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path

import orjson

from tuya_events.observability.logging import get_logger

log = get_logger("tuya_events.resync")

FILE_NAME = "consumption.json"


class ConsumptionRecord:
    def __init__(
        self, path: str | Path, interval: float = 10.0, wall: Callable[[], float] = time.time
    ) -> None:
        self.path = Path(path)
        self.interval = interval
        self._wall = wall
        self._written = 0.0  # wall time of the last write

    def last_consuming(self) -> float | None:
        """The wall time we were last known to be consuming; None on a first start (or a record
        that cannot be read, which is logged)."""
        try:
            raw = orjson.loads(self.path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, orjson.JSONDecodeError) as exc:
            log.warning("cannot read the consumption record", path=str(self.path), error=str(exc))
            return None
        value = raw.get("consuming_at") if isinstance(raw, dict) else None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            return None
        return float(value)

    def due(self) -> bool:
        return self._wall() - self._written >= self.interval

    def write(self) -> None:
        """Record that we are consuming now (sync: call it in a thread)."""
        now = self._wall()
        data = orjson.dumps({"consuming_at": now, "pid": os.getpid()})
        temporary = self.path.with_name(self.path.name + ".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(temporary, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self.path)
        except OSError as exc:
            log.error("cannot write the consumption record", path=str(self.path), error=str(exc))
            with contextlib.suppress(OSError):
                temporary.unlink()
            return
        self._written = now
