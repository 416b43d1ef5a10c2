"""Read a dead-letter store the way an operator would: with ``tuya-events dlq list --json``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def read_dead_letters(store: Path) -> list[dict]:
    executable = Path(sys.executable).with_name("tuya-events")
    result = subprocess.run(
        [str(executable), "dlq", "list", "--store", str(store), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
