"""The bridge's merged state, kept in the state directory so it survives a restart.

Why a file and not the broker's retained messages: MQTT has no marker for "every retained
message has been sent", so a bridge reading its state back from the broker cannot tell a
device with no retained state from one whose state is still on its way; and a broker without
persistence forgets retained messages when it restarts, where the file lets the bridge publish
them again.

The file is a log of JSON lines, one per change of a device: its values with their times, its
availability and discovery topics (``"r"``), or its catalogue snapshot (``"d"``, written only
when it changes). What one turn of the event loop saved is written in one ``write``; ``handle``
waits for it before the message is acknowledged, so a value the broker has is on disk before
its message can be acknowledged (and an older redelivery after a crash cannot win). Written
to the operating system, not synced: it survives the daemon being killed, and after a crash of
the machine the messages not yet acknowledged come again. On start, and whenever the log has
grown to several times the state it holds, it is rewritten with one line per device (to a
temporary file, synced, renamed over the log). A last line cut off by a crash is skipped.
(A SQLite table with group commits in a thread was measured first: 45 us per event, most of
the bridge's own cost; benchmarks/README.md.)
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import orjson

from tuya_events.handlers.mqtt.state import DeviceState, device_from_stored
from tuya_events.observability.logging import get_logger

log = get_logger("tuya_events.handlers.mqtt")

STATE_UNAVAILABLE = "mqtt_state_unavailable"
MIN_COMPACTION_BYTES = 1 << 20
GROWTH_BEFORE_COMPACTION = 4


class StateStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._buffer = bytearray()
        self._written: asyncio.Future[str | None] | None = None
        self._states: dict[str, DeviceState] = {}
        self._size = 0
        self._compacted_size = 0
        self.compactions = 0  # for tests and benchmarks

    def open(self) -> dict[str, DeviceState]:
        """Read the log (creating the directory if needed), rewrite it compactly, and return
        every device's state; the returned dict is the one the bridge keeps updating."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        states: dict[str, DeviceState] = {}
        if self.path.exists():
            with self.path.open("rb") as log_file:
                for line in log_file:
                    _apply(states, line)
        self._states = states
        self._compact()
        return states

    def save(self, state: DeviceState, with_device: bool = False) -> asyncio.Future[str | None]:
        """Queue the device's state (and its catalogue snapshot); the future resolves, after
        the write, to None or to why the file could not be written."""
        key = orjson.dumps(state.device_id)
        if with_device:
            self._buffer += b'{"id":' + key + b',"d":' + state.device_json() + b"}\n"
        self._buffer += b'{"id":' + key + b',"r":' + state.stored() + b"}\n"
        return self._pending()

    def forget(self, device_id: str) -> asyncio.Future[str | None]:
        self._buffer += b'{"id":' + orjson.dumps(device_id) + b',"r":null}\n'
        return self._pending()

    async def close(self) -> None:
        if self._written is not None:
            await self._written
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    # -- internals --------------------------------------------------------------------------

    def _pending(self) -> asyncio.Future[str | None]:
        if self._written is None:
            loop = asyncio.get_running_loop()
            self._written = loop.create_future()
            loop.call_soon(self._flush)
        return self._written

    def _flush(self) -> None:
        written, self._written = self._written, None
        data, self._buffer = bytes(self._buffer), bytearray()
        problem = None
        try:
            self._write_all(data)
            self._size += len(data)
            threshold = max(MIN_COMPACTION_BYTES, GROWTH_BEFORE_COMPACTION * self._compacted_size)
            if self._size > threshold:
                self._compact()
        except OSError as exc:
            problem = f"cannot write the bridge's state to {self.path}: {exc.strerror or exc}"
            log.error("mqtt state not written", path=str(self.path), error=problem)
        if written is not None and not written.done():
            written.set_result(problem)

    def _write_all(self, data: bytes) -> None:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]

    def _compact(self) -> None:
        """One line per device (two with a snapshot), synced, renamed over the log."""
        lines = bytearray()
        for device_id, state in self._states.items():
            key = orjson.dumps(device_id)
            if state.device is not None:
                lines += b'{"id":' + key + b',"d":' + state.device_json() + b"}\n"
            lines += b'{"id":' + key + b',"r":' + state.stored() + b"}\n"
        temporary = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(bytes(lines))
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, self.path)
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._size = self._compacted_size = len(lines)
        self.compactions += 1


def _apply(states: dict[str, DeviceState], line: bytes) -> None:
    """One log line onto the states; a line that does not parse (cut off) is skipped."""
    try:
        entry = orjson.loads(line)
    except orjson.JSONDecodeError:
        return
    if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
        return
    device_id = entry["id"]
    if "d" in entry:
        state = states.get(device_id)
        if state is None:
            state = states[device_id] = DeviceState(device_id)
        state.set_device(device_from_stored(entry["d"]))
        return
    record = entry.get("r")
    if record is None:
        states.pop(device_id, None)
        return
    kept = states.get(device_id)
    state = DeviceState.from_record(device_id, record)
    if kept is not None and state.device is None:
        state.set_device(kept.device)
    states[device_id] = state
