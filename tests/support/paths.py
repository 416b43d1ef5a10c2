"""Where things are: the checkout, and the installed ``tuya-events`` command of this venv."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
"""The checkout (the directory holding ``tuya_events/`` and ``tests/``)."""

TUYA_EVENTS = Path(sys.executable).with_name("tuya-events")
"""The console script next to the interpreter running the tests: what a user runs."""


def importable_tests_env(**extra: str) -> dict[str, str]:
    """This process's environment with ``PYTHONPATH`` at the checkout, so a child process can
    load the tests' handler modules (``type: tests.support.recorder:FileRecorder``) the way a
    user's plugin module is loaded."""
    return {**os.environ, "PYTHONPATH": str(ROOT), **extra}
