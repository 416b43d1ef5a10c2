"""What operators see: /metrics, /healthz, /readyz on a running daemon, readiness rules, logs."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.cli import run_cli, start_demo, wait_until_serving
from tests.support.http import http_get
from tests.support.ports import free_port
from tuya_events.observability.health import Health

REQUIRED_METRICS = (
    "tuya_events_messages_received_total",
    "tuya_events_messages_acked_total",
    "tuya_events_events_total",
    "tuya_events_decode_failures_total",
    "tuya_events_handler_duration_seconds_bucket",
    "tuya_events_handler_outcomes_total",
    "tuya_events_dead_letters_total",
    "tuya_events_dead_letter_records",
    "tuya_events_in_flight_messages",
    "tuya_events_event_age_seconds_bucket",
    "tuya_events_last_message_timestamp_seconds",
    "tuya_events_broker_connected",
    "tuya_events_build_info",
    "process_resident_memory_bytes",
    "python_gc_collections_total",
)


def test_demo_runs_the_pipeline_and_serves_metrics_and_health(tmp_path: Path) -> None:
    port = free_port()
    demo = start_demo(port, tmp_path, "--duration", "8", "--rate", "40", "--seed", "3")
    try:
        wait_until_serving(port, demo, "/readyz", timeout=20)
        assert http_get(port, "/healthz") == (200, "ok\n")
        probe = run_cli("health", "--ready", "--url", f"http://127.0.0.1:{port}", timeout=30)
        assert probe.returncode == 0 and "/readyz: ok" in probe.stdout
        time.sleep(3)
        status, metrics = http_get(port, "/metrics")
        assert status == 200
        for name in REQUIRED_METRICS:
            assert f"\n{name}" in metrics, name
        output, _ = demo.communicate(timeout=30)
    finally:
        if demo.poll() is None:
            demo.kill()
    assert demo.returncode == 0, output
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    events = [line for line in lines if line["event"] == "event"]
    assert {line["kind"] for line in events} >= {"status", "device_event"}
    dead = [line for line in lines if line["event"] == "message dead-lettered"]
    assert dead and all(line["stage"] == "decode" for line in dead)  # the simulator's damaged ones
    finished = next(line for line in lines if line["event"] == "demo finished")
    # Every message received was acknowledged; the rest were still queued (as on a broker).
    assert finished["received_not_acknowledged"] == 0
    assert finished["acknowledged"] + finished["still_queued"] == finished["messages_sent"]
    assert (tmp_path / "dead-letters.sqlite3").exists()
    import sqlite3

    with sqlite3.connect(tmp_path / "events.sqlite3") as db:
        stored = db.execute("SELECT count(*) FROM tuya_events").fetchone()[0]
        latest = db.execute("SELECT count(*) FROM tuya_latest_status").fetchone()[0]
    assert stored == len(events) and latest > 0  # the database handler saw every event
    # The demo's cloud named its devices: the log and the database show names and units.
    named = [line for line in events if line["kind"] == "status" and line.get("device")]
    assert len(named) == len([line for line in events if line["kind"] == "status"])
    readings = {
        value for line in named for value in line["statuses"].values() if isinstance(value, str)
    }
    assert any(value.endswith(" ℃") for value in readings), readings
    assert any(value.endswith(" W") for value in readings), readings
    with sqlite3.connect(tmp_path / "events.sqlite3") as db:
        devices = db.execute("SELECT name, category FROM tuya_devices").fetchall()
        scaled = db.execute(
            "SELECT value, scaled, unit FROM tuya_latest_status WHERE code = 'va_temperature'"
        ).fetchall()
    assert {name for name, _ in devices} >= {"Kitchen sensor"}
    assert scaled and all(float(s) == int(v) / 10 and u == "℃" for v, s, u in scaled)
    gone = run_cli("health", "--url", f"http://127.0.0.1:{port}", timeout=30)
    assert gone.returncode == 1 and "unreachable" in gone.stderr


class FakeClock:
    """A clock the test advances by hand (time itself, not our code, is the stand-in here)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_health_alive_until_the_loop_stalls() -> None:
    clock = FakeClock()
    health = Health(lambda: True, lambda: 0.0, stall_after=60, clock=clock)
    assert health.alive()[0]
    clock.now += 61
    alive, detail = health.alive()
    assert not alive and "61s" in detail
    health.beat()
    assert health.alive()[0]


@pytest.mark.parametrize(
    ("started", "connected", "stopping", "silence", "limit", "ready"),
    [
        (False, True, False, 0, None, False),
        (True, False, False, 0, None, False),
        (True, True, True, 0, None, False),
        (True, True, False, 0, None, True),
        (True, True, False, 30, 60, True),
        (True, True, False, 120, 60, False),
    ],
)
def test_readiness_rules(
    started: bool, connected: bool, stopping: bool, silence: float, limit: float | None, ready: bool
) -> None:
    last = time.time() - silence
    health = Health(lambda: connected, lambda: last, ready_max_silence=limit)
    health.started, health.stopping = started, stopping
    assert health.ready()[0] is ready


def test_logs_are_json_off_a_terminal_and_secrets_are_redacted() -> None:
    script = (
        "from tuya_events.observability.logging import configure_logging, get_logger\n"
        "from tuya_events.observability.redact import REDACTOR\n"
        "REDACTOR.add(['s3cr3t-value-123'])\n"
        "configure_logging('info', 'auto')\n"
        "get_logger('t').warning('oops', error='token s3cr3t-value-123 refused', n=1)\n"
        "import logging; logging.getLogger('pulsar').warning('url with s3cr3t-value-123')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30
    )
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    assert lines[0]["event"] == "oops" and lines[0]["level"] == "warning" and lines[0]["n"] == 1
    assert "s3cr3t-value-123" not in result.stderr
    assert lines[0]["error"] == "token [REDACTED] refused"
    assert lines[1]["event"] == "url with [REDACTED]"
