"""``tuya-events run`` as a real process, configured for a test tenant on the test broker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from tests.pulsar.tenant import TuyaTenant
from tests.threaded_server import free_port

ROOT = Path(__file__).resolve().parent.parent


class DaemonProcess:
    """One daemon instance; its events go to ``records`` through the test FileRecorder handler."""

    def __init__(
        self,
        workdir: Path,
        tenant: TuyaTenant,
        name: str,
        records: Path,
        recorder: dict[str, Any] | None = None,
        consumer: dict[str, Any] | None = None,
        pulsar_url: str | None = None,
        tls: dict[str, Any] | None = None,
        handlers: list[dict[str, Any]] | None = None,
    ) -> None:
        self.workdir = workdir
        self.name = name
        self.port = free_port()
        self.config_path = workdir / f"{name}.yaml"
        self.log_path = workdir / f"{name}.log"
        self.dead_letter_path = workdir / f"{name}-dead-letters.sqlite3"
        config = {
            "tuya": {
                "access_id": tenant.access_id,
                "access_secret": tenant.access_secret,
                "pulsar_url": pulsar_url or tenant.broker_url,
            },
            "tls": tls or {},
            "http": {"listen": f"127.0.0.1:{self.port}"},
            "dead_letter": {"path": str(self.dead_letter_path)},
            "logging": {"format": "json"},
            "retry": {"initial_backoff": "20ms", "max_backoff": "200ms", "max_attempts": 3},
            "consumer": {"shutdown_timeout": "20s", **(consumer or {})},
            "handlers": [
                {
                    "type": "tests.e2e_handlers:FileRecorder",
                    "name": "recorder",
                    "path": str(records),
                    **(recorder or {}),
                },
                *(handlers or []),
            ],
        }
        self.config_path.write_text(yaml.safe_dump(config))
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> DaemonProcess:
        executable = Path(sys.executable).with_name("tuya-events")
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [str(executable), "run", "-c", str(self.config_path), "--consumer-name", self.name],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        return self

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as answer:
                return answer.status, answer.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()
        except OSError as error:
            return 0, str(error)

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(
                    f"{self.name} exited {self.process.returncode}:\n{self.log_tail()}"
                )
            if self.get("/readyz")[0] == 200:
                return
            time.sleep(0.1)
        raise AssertionError(f"{self.name} not ready within {timeout}s:\n{self.log_tail()}")

    def metric(self, name: str) -> float:
        """Sum of every series of one metric, from the live /metrics page."""
        status, text = self.get("/metrics")
        assert status == 200, text
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and (line[len(name)] in " {"):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        self.wait()

    def wait(self, timeout: float = 60.0) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def stop(self, timeout: float = 60.0) -> int:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.signal(signal.SIGTERM)
        return self.wait(timeout)

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
