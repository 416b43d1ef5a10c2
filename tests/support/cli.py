"""``tuya-events`` run as a user runs it, in a child process: commands, the demo, ``dlq list``."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import IO

from tests.support.http import http_get
from tests.support.paths import TUYA_EVENTS
from tests.support.waiting import wait_for


def run_cli(
    *args: str | Path,
    stdin: str | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """``tuya-events ARGS`` to completion, text in and out. None of the test runner's
    ``TUYA_*`` variables leak in; ``env`` is added on top."""
    environ = {key: val for key, val in os.environ.items() if not key.startswith("TUYA_")}
    environ.update(env or {})
    return subprocess.run(
        [str(TUYA_EVENTS), *map(str, args)],
        input=stdin,
        capture_output=True,
        text=True,
        env=environ,
        cwd=cwd,
        timeout=timeout,
    )


def read_dead_letters(store: Path) -> list[dict]:
    """A dead-letter store read the way an operator would: ``tuya-events dlq list --json``."""
    result = subprocess.run(
        [str(TUYA_EVENTS), "dlq", "list", "--store", str(store), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def start_demo(
    port: int | None,
    state_dir: Path,
    *options: str,
    stdout: int | IO[str] | None = subprocess.PIPE,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[str]:
    """``tuya-events demo OPTIONS`` serving HTTP on ``127.0.0.1:port`` (any port when None),
    its state in ``state_dir``; stderr goes where stdout goes."""
    listen = f"127.0.0.1:{port if port is not None else 0}"
    return subprocess.Popen(
        [str(TUYA_EVENTS), "demo", *options, "--http", listen, "--state-dir", str(state_dir)],
        stdout=stdout,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )


def wait_until_serving(
    port: int,
    process: subprocess.Popen,
    path: str = "/readyz",
    timeout: float = 20.0,
    detail: Callable[[], str] | None = None,
) -> None:
    """Until ``GET path`` on ``port`` answers 200; fails at once if ``process`` exits first
    (with what it printed, when its output is a pipe, or ``detail()``)."""

    def answered() -> bool:
        if process.poll() is not None:
            output = process.communicate()[0] if process.stdout is not None else ""
            extra = detail() if detail else ""
            raise AssertionError(
                f"exited {process.returncode} before {path} answered:\n{output or ''}{extra}"
            )
        return http_get(port, path)[0] == 200

    wait_for(answered, timeout, f"{path} on port {port} to answer 200", detail)
