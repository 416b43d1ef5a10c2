"""SIGHUP reload in a running daemon (in-process, on the memory source): a valid file applied
between messages, in-flight messages finishing on the handlers they started with; an invalid
file or a change that needs a restart refused, the old configuration running on."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

from tests.pipeline_support import ENCODER, Harness
from tests.support.metrics import metric_value
from tests.support.recorder import RECORDER, read_records
from tests.support.settings import make_settings, routes_of
from tests.support.waiting import wait_until
from tuya_events.config.errors import ConfigError
from tuya_events.config.settings import Settings
from tuya_events.reload import Reload


def recorder(tmp_path: Path, name: str, file: str, **options: Any) -> dict[str, Any]:
    return {"type": RECORDER, "name": name, "path": str(tmp_path / file), **options}


def publish(harness: Harness, count: int, start: int = 0, devices: int = 5) -> None:
    for seq in range(start, start + count):
        device = f"dev{seq % devices}"
        document = {
            "dataId": f"{device}-{seq}",
            "devId": device,
            "status": [{"code": "seq", "value": seq, "t": 1700000000000 + seq}],
        }
        body, properties = ENCODER.encode(document, em="aes_ecb", protocol=4)
        harness.source.publish(body, properties, partition=seq % 3, key=device)


def seqs(path: Path) -> list[int]:
    return sorted(record["seq"] for record in read_records(path))


class Config:
    """The file SIGHUP reads: what ``load`` returns (or raises) next."""

    def __init__(self, settings: Settings) -> None:
        self.next: Settings | Exception = settings

    def load(self) -> Settings:
        if isinstance(self.next, Exception):
            raise self.next
        return self.next


def test_handlers_added_removed_changed_and_kept_between_messages(tmp_path: Path) -> None:
    before = make_settings(
        tmp_path,
        [
            recorder(tmp_path, "a", "a1.jsonl", delay=0.3),  # slow: in flight at the reload
            recorder(tmp_path, "c", "c.jsonl"),
            {**recorder(tmp_path, "d", "d.jsonl"), "match": {"protocol": 4}},
        ],
    )
    after = make_settings(
        tmp_path,
        [
            recorder(tmp_path, "a", "a2.jsonl"),  # changed: a new handler, a new file
            recorder(tmp_path, "b", "b.jsonl"),  # added
            {**recorder(tmp_path, "d", "d.jsonl"), "match": {"kind": "status"}},  # rules only
        ],
    )
    config = Config(after)

    async def scenario(harness: Harness) -> tuple[Reload, Any, Any, Any]:
        daemon = harness.daemon
        kept_before = {r.name: r.handler for r in daemon.routes}["d"]
        old_a = {r.name: r.handler for r in daemon.routes}["a"]
        publish(harness, 10)
        await wait_until(lambda: daemon.pipeline.in_flight == 10, timeout=20)
        result = await daemon.reload()
        publish(harness, 10, start=10)
        await wait_until(lambda: len(harness.source.acknowledged) == 20, timeout=30)
        await wait_until(lambda: old_a._fd is None, timeout=10)  # retired once its work was done
        kept_after = {r.name: r.handler for r in daemon.routes}["d"]
        return result, kept_before, kept_after, daemon.metrics.registry

    result, kept_before, kept_after, registry = _run(before, scenario, config)
    assert (result.outcome, result.added, result.removed, result.changed, result.kept) == (
        "applied",
        ["b"],
        ["c"],
        ["a"],
        ["d"],
    )
    assert kept_after is kept_before, "an unchanged handler is kept, connections and all"
    assert seqs(tmp_path / "a1.jsonl") == list(range(10)), "in flight: finished on the old a"
    assert seqs(tmp_path / "a2.jsonl") == list(range(10, 20))
    assert seqs(tmp_path / "b.jsonl") == list(range(10, 20))
    assert seqs(tmp_path / "c.jsonl") == list(range(10))
    assert seqs(tmp_path / "d.jsonl") == list(range(20)), "no message lost or twice across it"
    assert metric_value(registry, "tuya_events_config_reloads_total", outcome="applied") == 1
    assert metric_value(registry, "tuya_events_config_reload_failed") == 0


def _run(settings: Settings, scenario: Any, config: Config) -> Any:
    """``scenario`` on a daemon running the configured handlers, reloading from ``config``."""

    async def main() -> Any:
        async with Harness(settings, routes_of(settings), load=config.load) as harness:
            return await scenario(harness)

    return asyncio.run(main())


def test_an_invalid_file_is_refused_and_the_old_configuration_runs_on(
    tmp_path: Path, captured_logs: Any
) -> None:
    settings = make_settings(tmp_path, [recorder(tmp_path, "a", "a.jsonl")])
    config = Config(ConfigError([("handlers[0].path", "field required")]))

    async def scenario(harness: Harness) -> tuple[Reload, Any]:
        result = await harness.daemon.reload()
        publish(harness, 5)
        await wait_until(lambda: len(harness.source.acknowledged) == 5, timeout=20)
        return result, harness.daemon.metrics.registry

    result, registry = _run(settings, scenario, config)
    assert result.outcome == "invalid"
    assert result.problems == ["handlers[0].path: field required"]
    assert seqs(tmp_path / "a.jsonl") == list(range(5))
    assert metric_value(registry, "tuya_events_config_reloads_total", outcome="invalid") == 1
    assert metric_value(registry, "tuya_events_config_reload_failed") == 1
    assert "handlers[0].path: field required" in captured_logs.getvalue()


def test_a_change_that_needs_a_restart_is_refused_naming_the_keys(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, [recorder(tmp_path, "a", "a.jsonl")])
    changed = make_settings(
        tmp_path,
        [recorder(tmp_path, "b", "b.jsonl")],
        tuya={"pulsar_url": "pulsar+ssl://elsewhere:6651"},
        consumer={"max_in_flight": 10},
    )
    config = Config(changed)

    async def scenario(harness: Harness) -> Reload:
        result = await harness.daemon.reload()
        publish(harness, 3)
        await wait_until(lambda: len(harness.source.acknowledged) == 3, timeout=20)
        return result

    result = _run(settings, scenario, config)
    assert result.outcome == "refused"
    assert result.problems == ["tuya.pulsar_url", "consumer.max_in_flight"]
    assert seqs(tmp_path / "a.jsonl") == list(range(3)), "the old handlers run on"
    assert not (tmp_path / "b.jsonl").exists()


def test_sighup_reloads_and_the_logging_level_changes(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, [recorder(tmp_path, "a", "a.jsonl")])
    config = Config(
        make_settings(tmp_path, [recorder(tmp_path, "a", "a.jsonl")], logging={"level": "warning"})
    )

    async def scenario(harness: Harness) -> Any:
        import logging

        os.kill(os.getpid(), signal.SIGHUP)
        metrics = harness.daemon.metrics.registry
        await wait_until(
            lambda: (
                metric_value(metrics, "tuya_events_config_reloads_total", outcome="applied") == 1
            ),
            timeout=10,
        )
        return logging.getLogger().level, harness.daemon.settings.logging.level

    import logging

    saved = logging.getLogger().level
    try:
        root_level, level = _run(settings, scenario, config)
    finally:
        logging.getLogger().setLevel(saved)  # the test's own process: as it was
    assert level == "warning"
    assert root_level == logging.WARNING
