"""Liveness and readiness, as plain state the daemon updates and the HTTP server reads."""

from __future__ import annotations

import time
from collections.abc import Callable


class Health:
    """``alive``: the receive loop made progress lately. ``ready``: connected (and not silent)."""

    def __init__(
        self,
        connected: Callable[[], bool],
        last_message_at: Callable[[], float],
        stall_after: float = 60.0,
        ready_max_silence: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._connected = connected
        self._last_message_at = last_message_at
        self.stall_after = stall_after
        self.ready_max_silence = ready_max_silence
        self._clock = clock
        self._last_beat = clock()
        self.started = False
        self.stopping = False
        self._started_wall = time.time()

    def beat(self) -> None:
        self._last_beat = self._clock()

    def alive(self) -> tuple[bool, str]:
        quiet = self._clock() - self._last_beat
        if quiet > self.stall_after:
            return False, f"the receive loop has not run for {quiet:.0f}s"
        return True, "ok"

    def ready(self) -> tuple[bool, str]:
        if self.stopping:
            return False, "shutting down"
        if not self.started:
            return False, "starting"
        if not self._connected():
            return False, "not connected to the message service"
        if self.ready_max_silence is not None:
            last = self._last_message_at() or self._started_wall
            silence = time.time() - last
            if silence > self.ready_max_silence:
                return False, f"no message for {silence:.0f}s (limit {self.ready_max_silence:g}s)"
        return True, "ok"
