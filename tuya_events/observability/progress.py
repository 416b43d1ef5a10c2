"""A one-line progress bar on stderr, for the long commands (replay, devices sync, resync).

Only on a terminal, and at most a few redraws a second: piped output and logs stay clean.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

INTERVAL = 0.1
WIDTH = 30


class ProgressBar:
    def __init__(
        self, label: str, total: int | None, enabled: bool, stream: TextIO | None = None
    ) -> None:
        self.label = label
        self.total = total
        self.enabled = enabled
        self._stream = stream or sys.stderr
        self._shown = 0.0

    def show(self, done: int, final: bool = False, total: int | None = None) -> None:
        """Draw ``done`` of the total (``total`` updates it: a listing learns it page by page)."""
        if total is not None:
            self.total = total
        now = time.monotonic()
        if not self.enabled or (not final and now - self._shown < INTERVAL):
            return
        self._shown = now
        if self.total:
            filled = min(WIDTH, int(WIDTH * done / self.total))
            counts = f"{done}/{self.total}"
        else:
            filled = WIDTH if final else 0
            counts = str(done)
        bar = "#" * filled + "-" * (WIDTH - filled)
        end = "\n" if final else ""
        print(f"\r{self.label} [{bar}] {counts}", end=end, file=self._stream, flush=True)
