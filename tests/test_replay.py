"""``tuya-events dlq replay``: dead letters run through the same pipeline again, end to end."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

from tests import vectors as v
from tests.pipeline_support import status_message
from tests.support.cli import run_cli
from tests.support.paths import ROOT
from tests.support.recorder import read_records
from tests.support.settings import routes_of
from tests.support.waiting import wait_until
from tuya_events.config import load_settings
from tuya_events.daemon import Daemon, Stopped
from tuya_events.deadletter.store import DeadLetterStore
from tuya_events.observability.metrics import Metrics
from tuya_events.transport.memory import MemorySource


def write_config(tmp_path: Path) -> Path:
    config = tmp_path / "config.yaml"
    config.write_text(
        f"""
tuya:
  access_id: {v.ACCESS_ID}
  access_secret: {v.ACCESS_SECRET}
  region: eu
http:
  enabled: false
retry:
  max_attempts: 2
  initial_backoff: 10ms
  max_backoff: 20ms
dead_letter:
  path: {tmp_path / "dlq.sqlite3"}
handlers:
  - type: tests.support.recorder:FileRecorder
    name: recorder
    path: {tmp_path / "handled.jsonl"}
    fail_switch: {tmp_path / "fail"}
    delay: 0.001  # waits (the pipeline's task path); always-fine does not (settled at once)
  - type: tests.support.recorder:FileRecorder
    name: always-fine
    path: {tmp_path / "fine.jsonl"}
"""
    )
    return config


def fill_dead_letters(config: Path, messages: list[tuple[bytes, dict[str, str]]]) -> None:
    settings = load_settings(config)

    async def scenario() -> None:
        source = MemorySource(poll_interval=0.02)
        metrics = Metrics()
        routes = routes_of(settings, metrics)
        with DeadLetterStore(settings.dead_letter.path) as store:
            daemon = Daemon(settings, source, routes, store, metrics)
            task = asyncio.get_running_loop().create_task(daemon.run())
            for body, properties in messages:
                source.publish(body, properties)
            await wait_until(lambda: len(source.acknowledged) == len(messages))
            daemon.request_stop()
            assert await task is Stopped.DRAINED

    asyncio.run(scenario())


def replay(config: Path, *args: str) -> subprocess.CompletedProcess:
    # PYTHONPATH: the test handler module, as a user's would be.
    return run_cli("dlq", "replay", "-c", config, *args, env={"PYTHONPATH": str(ROOT)}, timeout=120)


def test_replay_handles_what_now_works_and_keeps_what_still_fails(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    (tmp_path / "fail").touch()
    messages = [status_message(f"dev{i}", i) for i in range(5)]
    fill_dead_letters(config, [*messages, (b"not an envelope", {})])
    store_path = tmp_path / "dlq.sqlite3"
    with DeadLetterStore(store_path) as store:
        records = store.list()
        assert (
            sorted((r.stage, r.handler) for r in records)
            == [("decode", None)] + [("handler", "recorder")] * 5
        )
    assert len(read_records(tmp_path / "fine.jsonl")) == 5  # the other handler was not held up
    assert read_records(tmp_path / "handled.jsonl") == []

    # Still failing: records stay, with their attempts raised.
    result = replay(config, "--handler", "recorder")
    assert result.returncode == 1, result.stderr
    with DeadLetterStore(store_path) as store:
        assert {r.attempts for r in store.list() if r.stage == "handler"} == {2}  # 1 + 1

    # Fixed downstream: the handler records are replayed for that handler only, then deleted.
    (tmp_path / "fail").unlink()
    result = replay(config, "--stage", "handler")
    assert result.returncode == 0, result.stderr
    assert "replayed: 5" in result.stderr
    handled = read_records(tmp_path / "handled.jsonl")
    assert sorted(r["device"] for r in handled) == [f"dev{i}" for i in range(5)]
    assert len(read_records(tmp_path / "fine.jsonl")) == 5  # not run twice
    with DeadLetterStore(store_path) as store:
        remaining = store.list()
    assert [(r.stage, r.reason) for r in remaining] == [("decode", "bad_envelope")]

    # A message that can never decode fails again and stays.
    result = replay(config)
    assert result.returncode == 1
    assert "failed_again: 1" in result.stderr
    assert v.ACCESS_SECRET not in result.stderr + result.stdout
