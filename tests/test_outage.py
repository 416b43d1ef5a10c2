"""An outage is state of the handler: while its target is down, its messages wait and one probe
at a time tries the target; the first probe that reaches it lets them all go at once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from pathlib import Path

import pytest

from tests.pipeline_support import Harness, make_settings, status_message
from tuya_events.delivery import Delivery
from tuya_events.handlers.base import BaseHandler, HandlerError
from tuya_events.tuya.events import Event

DEVICES = [f"dev{n:02d}" for n in range(20)]


class FlakyTarget(BaseHandler):
    """A handler in front of a target that is down until ``back_at`` (monotonic seconds).

    It records every attempt: when it started, whether the target was down, and how many
    attempts were under way at once while it was down (after the first failure came back).
    """

    def __init__(self, down_for: float, status: str = "http_503") -> None:
        super().__init__("target")
        self.back_at = time.monotonic() + down_for
        self.status = status
        self.seen: list[tuple[str, int]] = []
        self.attempts = 0
        self.attempts_after_first_failure_while_down = 0
        self.concurrent = 0
        self.max_concurrent_after_first_failure = 0
        self.first_failure_at: float | None = None
        self.attempts_after_back = 0

    def handle(self, event: Event, delivery: Delivery) -> Awaitable[None]:
        return self._call(event)

    async def _call(self, event: Event) -> None:
        self.attempts += 1
        started = time.monotonic()
        down = started < self.back_at
        if self.first_failure_at is not None and down:
            self.attempts_after_first_failure_while_down += 1
        if not down:
            self.attempts_after_back += 1
        self.concurrent += 1
        if self.first_failure_at is not None and down:
            self.max_concurrent_after_first_failure = max(
                self.max_concurrent_after_first_failure, self.concurrent
            )
        try:
            await asyncio.sleep(0.001)  # the request
            if down:
                self.first_failure_at = self.first_failure_at or time.monotonic()
                raise HandlerError(self.status, "service unavailable", infrastructure=True)
            self.seen.append((event.device_id or "", event.statuses[0].value))  # type: ignore[attr-defined]
        finally:
            self.concurrent -= 1


def publish(h: Harness, per_device: int) -> int:
    for seq in range(per_device):
        for index, device in enumerate(DEVICES):
            h.source.publish(*status_message(device, seq), partition=index % 11, key=device)
    return per_device * len(DEVICES)


def sample(h: Harness, name: str) -> float:
    value = h.daemon.metrics.registry.get_sample_value(name, {"handler": "target"})
    return value or 0.0


def test_while_down_one_probe_at_a_time_then_all_resume_in_order(tmp_path: Path) -> None:
    target = FlakyTarget(down_for=0.8)
    settings = make_settings(
        tmp_path,
        retry={"initial_backoff": "20ms", "outage_probe_max": "200ms", "max_attempts": 3},
    )

    async def scenario() -> dict[str, float]:
        async with Harness(settings, [target]) as h:
            total = publish(h, 5)
            while len(h.source.acknowledged) < total:
                await asyncio.sleep(0.01)
            figures = {
                name: sample(h, f"tuya_events_handler_{name}")
                for name in ("outages_total", "down", "outage_seconds_total", "outage_waits_total")
            }
            figures["records"] = h.store.count()
            assert await h.stop() == 0
        return figures

    figures = asyncio.run(scenario())
    # Nothing was dead-lettered, though the outage lasted far past max_attempts of retries.
    assert figures["records"] == 0
    assert sorted(target.seen) == sorted((d, s) for d in DEVICES for s in range(5))
    for device in DEVICES:
        assert [s for d, s in target.seen if d == device] == list(range(5))
    # Once the first failure was known, the target saw one attempt at a time: the probes,
    # about 0.8 s / 20..200 ms of them, not 100 messages each retrying on its own.
    assert target.max_concurrent_after_first_failure == 1
    assert 1 <= target.attempts_after_first_failure_while_down <= 15
    # When it was back, every message made exactly one attempt, and that succeeded.
    assert target.attempts_after_back == len(target.seen) == 100
    assert figures["outages_total"] == 1 and figures["down"] == 0
    assert figures["outage_seconds_total"] > 0.5
    # Each device's first message waited on the outage; the later ones queued behind it.
    assert figures["outage_waits_total"] >= len(DEVICES)


@pytest.mark.parametrize("style", ["probing", "arrived-while-down"])
def test_messages_waiting_past_the_infrastructure_budget_are_dead_lettered(
    tmp_path: Path, style: str
) -> None:
    target = FlakyTarget(down_for=60)
    settings = make_settings(
        tmp_path,
        retry={
            "initial_backoff": "20ms",
            "outage_probe_max": "50ms",
            "infrastructure_max_time": "300ms",
        },
    )

    async def scenario() -> list[tuple[str | None, str, int]]:
        async with Harness(settings, [target]) as h:
            h.source.publish(*status_message("dev00", 0), key="dev00")
            if style == "arrived-while-down":
                while target.first_failure_at is None:
                    await asyncio.sleep(0.01)
                h.source.publish(*status_message("dev01", 0), key="dev01")
            count = 2 if style == "arrived-while-down" else 1
            while len(h.source.acknowledged) < count:
                await asyncio.sleep(0.01)
            records = [(r.device_id, r.reason, r.attempts) for r in h.store.list()]
            assert await h.stop() == 0
        return records

    records = asyncio.run(scenario())
    assert [(device, reason) for device, reason, _ in records] == [
        ("dev00", "http_503"),
        *([("dev01", "http_503")] if style == "arrived-while-down" else []),
    ]
    assert records[0][2] > 1  # dev00 failed, then probed until its budget ran out


def test_a_probe_cut_short_by_shutdown_leaves_the_message_for_redelivery(tmp_path: Path) -> None:
    target = FlakyTarget(down_for=60)
    settings = make_settings(
        tmp_path,
        retry={"initial_backoff": "20ms", "outage_probe_max": "50ms"},
        consumer={"shutdown_timeout": "200ms"},
    )

    async def scenario() -> tuple[int, int, int]:
        async with Harness(settings, [target]) as h:
            publish(h, 1)
            while target.attempts_after_first_failure_while_down < 2:
                await asyncio.sleep(0.01)
            code = await h.stop()
            return code, len(h.source.acknowledged), h.store.count()

    code, acknowledged, records = asyncio.run(scenario())
    assert (code, acknowledged, records) == (75, 0, 0)  # all left for the broker to deliver again
