"""Reload under load on the real broker: mid-stream, SIGHUP with one handler added, one removed
and one changed; nothing lost, nothing handled twice, everything acknowledged."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.pulsar.traffic import interleaved_stream
from tests.support.daemon import BrokerRun
from tests.support.recorder import RECORDER, read_records
from tests.support.waiting import wait_for

pytestmark = pytest.mark.broker


def recorder(path: Path, name: str, **options: object) -> dict[str, object]:
    return {"type": RECORDER, "name": name, "path": str(path), **options}


def keys(path: Path) -> list[tuple[str, int]]:
    return [(r["device"], r["seq"]) for r in read_records(path)]


def test_a_reload_mid_stream_loses_nothing_and_handles_nothing_twice(
    broker_run: BrokerRun, tmp_path: Path
) -> None:
    old_a, new_a = tmp_path / "a-old.jsonl", tmp_path / "a-new.jsonl"
    added, removed = tmp_path / "b.jsonl", tmp_path / "c.jsonl"
    daemon = broker_run.start(
        "reloaded",
        recorder={"delay": 0.001},
        handlers=[recorder(old_a, "a", delay=0.002), recorder(removed, "c")],
    )
    stream = interleaved_stream(messages=3000, devices=40)
    broker_run.publish(stream)
    broker_run.wait_progress(800, 120, "part of the stream handled", daemon)
    daemon.rewrite([recorder(new_a, "a"), recorder(added, "b")])
    daemon.signal(signal.SIGHUP)
    wait_for(lambda: "configuration reloaded" in daemon.log(), 30, "the reload", None)
    broker_run.wait_handled(len(stream), 180, "every message handled", daemon)
    daemon.wait_metric("tuya_events_messages_acked_total", len(stream), 30, "acks")
    assert daemon.metric("tuya_events_config_reloads_total") == 1
    assert daemon.stop() == 0, daemon.log_tail()
    report = broker_run.report(stream)
    assert report.perfect, report  # the recorder, kept across the reload: once each, in order
    broker_run.wait_backlog(0)

    everything = {(o.device_id, o.seq) for o in stream}
    a = keys(old_a) + keys(new_a)
    assert sorted(a) == sorted(everything), "a, changed mid-stream: each message once"
    assert keys(old_a) and keys(new_a), "the reload came mid-stream"
    assert not set(keys(added)) & set(keys(old_a)), "b saw only what came after the switch"
    assert len(keys(added)) == len(set(keys(added))) and len(keys(removed)) == len(
        set(keys(removed))
    )
    assert set(keys(added)) | set(keys(removed)) == everything, "every message: c before, b after"
    assert len(set(keys(added)) & set(keys(removed))) == 0
