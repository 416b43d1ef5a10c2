"""What the status page shows, kept cheaply: latest values per device, the message rate, the
connection's age, the newest dead letters.

Nothing here runs per message except :meth:`LatestValues.observe` (a few dict assignments for a
status report, one check for anything else). The rate is sampled from the pipeline's own counts
every few seconds, and the dead-letter store is read (in a thread, read-only) only when a page
asks, at most once per :data:`DEAD_LETTER_TTL`.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from tuya_events.deadletter.schema import TABLE
from tuya_events.delivery import Delivery
from tuya_events.observability.redact import REDACTOR
from tuya_events.tuya.devices import INTEGER, DataPoint
from tuya_events.tuya.events import DeviceEvent, Event, StatusItem, StatusReport

# Bounds on what LatestValues keeps, whatever the traffic: a project's devices and their codes
# are far fewer, and a stream of made-up ids must not grow memory without end.
MAX_DEVICES = 10_000
MAX_CODES = 128
MAX_TEXT = 80  # a value shown longer than this (base64 pictures) is cut

SAMPLE_SECONDS = 2.0
HISTORY_SAMPLES = 150  # 5 minutes at SAMPLE_SECONDS
DEAD_LETTER_TTL = 2.0
NEWEST_DEAD_LETTERS = 5
_READ_TIMEOUT = 1.0  # seconds to wait for the daemon's write lock; the page asks again soon


@dataclass(slots=True)
class DeviceState:
    """One device as its events left it: latest item per code, last report, online."""

    values: dict[str, StatusItem] = field(default_factory=dict)
    reported_ms: int | None = None
    online: bool | None = None


class LatestValues:
    """The latest status items of every device, fed from settled messages.

    :meth:`observe` has the pipeline's tap signature; :class:`SharedTap` keeps it on the tap
    beside the live tail's. A value older than the one kept (a redelivery) does not replace it.
    """

    def __init__(self, max_devices: int = MAX_DEVICES, max_codes: int = MAX_CODES) -> None:
        self.max_devices = max_devices
        self.max_codes = max_codes
        self.devices: dict[str, DeviceState] = {}

    def observe(self, event: Event | None, delivery: Delivery, dead_lettered: bool) -> None:
        kind = type(event)
        if kind is StatusReport:
            assert isinstance(event, StatusReport)  # for the type checker; `type is` is cheaper
            state = self._state(event.device_id)
            if state is not None:
                self._report(state, event, event.timestamp_ms or delivery.publish_time_ms)
        elif kind is DeviceEvent:
            assert isinstance(event, DeviceEvent)
            name = event.event_name
            if name == "online" or name == "offline":
                state = self._state(event.device_id)
                if state is not None:
                    state.online = name == "online"

    def _state(self, device_id: str | None) -> DeviceState | None:
        if device_id is None:
            return None
        state = self.devices.get(device_id)
        if state is None and len(self.devices) < self.max_devices:
            state = self.devices[device_id] = DeviceState()
        return state

    def _report(self, state: DeviceState, event: StatusReport, when: int) -> None:
        values = state.values
        for item in event.statuses:
            code = item.code
            if code is None:
                continue
            old = values.get(code)
            if old is not None:
                if old.t_ms is not None and item.t_ms is not None and item.t_ms < old.t_ms:
                    continue
            elif len(values) >= self.max_codes:
                continue
            values[code] = item
        if when and (state.reported_ms is None or when > state.reported_ms):
            state.reported_ms = when


Tap = Callable[[Event | None, Delivery, bool], None]


class _Tapped(Protocol):
    @property
    def routes(self) -> Sequence[Any]: ...

    def set_tap(self, tap: Tap | None) -> None: ...


class SharedTap:
    """The pipeline's one tap, shared: ``always`` is told of every settled message (the status
    page's :class:`LatestValues`), and whoever sets a tap here (the live tail, while watched)
    is told after it. Stands for the pipeline where the tail expects one (routes, set_tap)."""

    def __init__(self, pipeline: _Tapped, always: Tap) -> None:
        self._pipeline = pipeline
        self._always = always
        pipeline.set_tap(always)

    @property
    def routes(self) -> Sequence[Any]:
        return self._pipeline.routes

    def set_tap(self, tap: Tap | None) -> None:
        if tap is None:
            self._pipeline.set_tap(self._always)
            return
        always = self._always

        def both(event: Event | None, delivery: Delivery, dead_lettered: bool) -> None:
            always(event, delivery, dead_lettered)
            tap(event, delivery, dead_lettered)

        self._pipeline.set_tap(both)


def _short(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


def _integer_text(value: int) -> str:
    try:
        return str(value)
    except ValueError:  # more digits than Python converts (sys.get_int_max_str_digits)
        return "(a huge number)"


def value_text(item: StatusItem, point: DataPoint | None) -> str:
    """A value as a person reads it: scaled, with its unit (``23.5 ℃``, ``45 %``, ``on``)."""
    value = item.value
    point = point or item.point
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (int, float)):
        scaled = point.scaled(value) if point is not None else value
        if point is not None and point.type == INTEGER and point.scale and scaled is not value:
            number = f"{scaled:.{point.scale}f}"
        elif isinstance(value, int):
            number = _integer_text(value)
        else:
            number = f"{value:g}"
        unit = point.unit if point is not None else None
        return _short(f"{number} {unit}" if unit else number)
    if value is None:
        return "—"
    return _short(value if isinstance(value, str) else repr(value))


class FlowHistory:
    """Messages received per second, sampled from the pipeline's running total."""

    def __init__(
        self,
        received: Callable[[], int],
        samples: int = HISTORY_SAMPLES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._received = received
        self._clock = clock
        self._last: tuple[float, int] | None = None
        self.rates: deque[tuple[float, float]] = deque(maxlen=samples)  # (wall time, per second)

    def sample(self) -> None:
        now, total = self._clock(), self._received()
        if self._last is not None:
            then, before = self._last
            elapsed = now - then
            if elapsed > 0:
                self.rates.append((now, max(0, total - before) / elapsed))
        self._last = (now, total)

    def series(self) -> list[list[float]]:
        """``[[epoch ms, messages per second], ...]``, oldest first."""
        return [[round(at * 1000), round(rate, 2)] for at, rate in self.rates]


class ConnectionClock:
    """Since when the source has been connected (None while it is not)."""

    def __init__(self, connected: Callable[[], bool], clock: Callable[[], float] = time.time):
        self._connected = connected
        self._clock = clock
        self.since: float | None = None

    def check(self) -> bool:
        connected = bool(self._connected())
        if not connected:
            self.since = None
        elif self.since is None:
            self.since = self._clock()
        return connected


@dataclass(frozen=True, slots=True)
class DeadLetterSummary:
    """What the page shows of the store: how many, and the newest few (no body, no plaintext)."""

    count: int = 0
    newest: tuple[Mapping[str, Any], ...] = ()
    error: str | None = None


_NEWEST = (
    f"SELECT id, stage, handler, reason, message, device_id, last_failure, seen FROM {TABLE} "
    "ORDER BY id DESC LIMIT ?"
)


def read_dead_letters(path: Path, limit: int = NEWEST_DEAD_LETTERS) -> DeadLetterSummary:
    """The store read through a read-only connection of its own: the daemon's writes go on, and
    a store that does not exist yet is not created (it is empty)."""
    if not path.exists():
        return DeadLetterSummary()
    try:
        connection = sqlite3.connect(
            f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=_READ_TIMEOUT
        )
    except sqlite3.Error as error:
        return DeadLetterSummary(error=f"cannot open the dead-letter store: {error}")
    try:
        count = int(connection.execute(f"SELECT count(*) FROM {TABLE}").fetchone()[0])
        rows = connection.execute(_NEWEST, (limit,)).fetchall()
    except sqlite3.Error as error:
        return DeadLetterSummary(error=f"cannot read the dead-letter store: {error}")
    finally:
        connection.close()
    newest = tuple(
        {
            "id": row[0],
            "stage": row[1],
            "handler": row[2],
            "reason": row[3],
            "message": _short(REDACTOR(str(row[4]))),
            "device_id": row[5],
            "at_ms": round(float(row[6]) * 1000),
            "seen": row[7],
        }
        for row in rows
    )
    return DeadLetterSummary(count, newest)


class DeadLetterView:
    """:func:`read_dead_letters` in a thread, shared by every page asking within the TTL."""

    def __init__(
        self, path: Path, ttl: float = DEAD_LETTER_TTL, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.path = path
        self.ttl = ttl
        self._clock = clock
        self._lock = asyncio.Lock()
        self._read_at: float | None = None
        self._summary = DeadLetterSummary()

    async def summary(self) -> DeadLetterSummary:
        async with self._lock:
            now = self._clock()
            if self._read_at is None or now - self._read_at >= self.ttl:
                self._summary = await asyncio.to_thread(read_dead_letters, self.path)
                self._read_at = self._clock()
            return self._summary
