"""The pipeline's promises, in-process on the memory source with the real dead-letter store:
order per device, ack only when done, retries, dead letters, dedupe, backpressure, drain."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest

from tests.pipeline_support import Harness, RecordingHandler, random_delay, status_message
from tests.support.settings import make_settings
from tests.support.waiting import wait_until
from tuya_events.cli import exits
from tuya_events.delivery import Delivery
from tuya_events.handlers.base import BaseHandler, HandlerError
from tuya_events.pipeline.routes import Route

DEVICES = [f"dev{i:02d}" for i in range(12)]
# The pipeline's two paths: handlers that wait (a task per device) and handlers that are done
# when they return (no task at all), and a mix of both within one device's sequence.
STYLES = ["async", "sync", "mixed"]


def publish_sequences(harness: Harness, per_device: int, em_cycle: bool = True) -> int:
    count = 0
    for seq in range(per_device):
        for index, device in enumerate(DEVICES):
            em = ("aes_ecb", "aes_gcm", None)[(seq + index) % 3] if em_cycle else "aes_ecb"
            harness.source.publish(
                *status_message(device, seq, em), partition=index % 11, key=device
            )
            count += 1
    return count


def assert_order_per_device(seen: list[tuple[str, int]], per_device: int) -> None:
    by_device: dict[str, list[int]] = {}
    for device, seq in seen:
        by_device.setdefault(device, []).append(seq)
    assert by_device == {device: list(range(per_device)) for device in DEVICES}


@pytest.mark.parametrize("style", ["async", "mixed"])
def test_every_message_handled_once_in_order_and_acked(tmp_path: Path, style: str) -> None:
    handler = RecordingHandler(delay=random_delay(), style=style)

    async def scenario() -> int:
        async with Harness(make_settings(tmp_path), [handler]) as h:
            total = publish_sequences(h, 40)
            await wait_until(lambda: len(h.source.acknowledged) == total)
            assert not h.source.unacknowledged
            return await h.stop()

    assert asyncio.run(scenario()) == exits.OK
    assert len(handler.seen) == 40 * len(DEVICES)
    assert all(count == 1 for count in handler.calls.values())
    assert_order_per_device(handler.seen, 40)
    assert handler.max_concurrent > 1  # different devices really ran concurrently


@pytest.mark.parametrize("style", STYLES)
def test_failing_handler_retries_then_dead_letters_then_acks(tmp_path: Path, style: str) -> None:
    def fail(event, attempt):
        if event.device_id == "dev03":
            return HandlerError("downstream_rejected", f"attempt {attempt} refused")
        return None

    handler = RecordingHandler(fail=fail, style=style)

    async def scenario() -> None:
        async with Harness(make_settings(tmp_path), [handler]) as h:
            total = publish_sequences(h, 3)
            await wait_until(lambda: len(h.source.acknowledged) == total)
            records = h.store.list()
            assert len(records) == 3
            assert {r.device_id for r in records} == {"dev03"}
            assert {(r.stage, r.handler, r.reason, r.attempts) for r in records} == {
                ("handler", "recorder", "downstream_rejected", 3)
            }
            assert records[0].message == "attempt 3 refused"

    asyncio.run(scenario())
    assert handler.calls[("dev03", 0)] == 3  # max_attempts
    assert ("dev03", 0) not in handler.seen
    assert len(handler.seen) == 3 * (len(DEVICES) - 1)


@pytest.mark.parametrize("style", ["async", "sync"])
def test_non_retryable_failure_is_dead_lettered_at_once(tmp_path: Path, style: str) -> None:
    handler = RecordingHandler(
        fail=lambda e, n: HandlerError("http_400", "bad request", retryable=False), style=style
    )

    async def scenario() -> None:
        async with Harness(make_settings(tmp_path), [handler]) as h:
            h.source.publish(*status_message("dev00", 0))
            await wait_until(lambda: len(h.source.acknowledged) == 1)
            assert h.store.list()[0].attempts == 1

    asyncio.run(scenario())
    assert handler.calls[("dev00", 0)] == 1


def test_poison_message_is_dead_lettered_and_the_loop_goes_on(tmp_path: Path) -> None:
    handler = RecordingHandler()

    async def scenario() -> None:
        async with Harness(make_settings(tmp_path), [handler]) as h:
            h.source.publish(*status_message("dev00", 0))
            h.source.publish(b"this is not an envelope", {"em": "aes_gcm"})
            body, _ = status_message("dev00", 1, em="aes_gcm")
            h.source.publish(body, {})  # GCM data without the em property: undecryptable as ECB
            h.source.publish(*status_message("dev00", 2))
            await wait_until(lambda: len(h.source.acknowledged) == 4)
            records = {r.message_id: r for r in h.store.list()}
            assert {r.stage for r in records.values()} == {"decode"}
            # GCM bytes read as ECB: not whole blocks, or whole blocks with a wrong pad.
            assert sorted(r.reason for r in records.values()) in (
                ["bad_envelope", "bad_length"],
                ["bad_envelope", "bad_padding"],
            )
            raw = next(r for r in records.values() if r.reason == "bad_envelope")
            assert raw.body == b"this is not an envelope" and raw.properties == {"em": "aes_gcm"}
            counter = h.daemon.metrics.decode_failures.labels("bad_envelope", "aes_gcm")
            assert counter._value.get() == 1

    asyncio.run(scenario())
    assert handler.seen == [("dev00", 0), ("dev00", 2)]


@pytest.mark.parametrize("style", STYLES)
def test_infrastructure_outage_retries_without_dead_letter_and_keeps_order(
    tmp_path: Path, style: str
) -> None:
    outage = {"until": 8}

    def fail(event, attempt):
        if event.device_id == "dev01" and outage["until"] > 0:
            outage["until"] -= 1
            return HandlerError("database_unavailable", "connection refused", infrastructure=True)
        return None

    handler = RecordingHandler(fail=fail, style=style)

    async def scenario() -> None:
        settings = make_settings(
            tmp_path, retry={"max_attempts": 2, "infrastructure_max_time": "1h"}
        )
        async with Harness(settings, [handler]) as h:
            total = publish_sequences(h, 5)
            await wait_until(lambda: len(h.source.acknowledged) == total)
            assert h.store.count() == 0

    asyncio.run(scenario())
    assert handler.calls[("dev01", 0)] == 9  # 8 outages, then success, far past max_attempts
    assert_order_per_device(handler.seen, 5)


@pytest.mark.parametrize(
    ("first_style", "second_style"),
    [("async", "async"), ("sync", "sync"), ("sync", "async"), ("async", "sync")],
)
def test_redelivered_message_does_not_run_a_succeeded_handler_again(
    tmp_path: Path, first_style: str, second_style: str
) -> None:
    first = RecordingHandler("first", style=first_style)
    second = RecordingHandler("second", style=second_style)

    async def scenario() -> None:
        async with Harness(make_settings(tmp_path), [first, second]) as h:
            delivery = h.source.publish(*status_message("dev00", 0))
            await wait_until(lambda: len(h.source.acknowledged) == 1)
            # The broker did not get the ack (connection lost) and delivers it again.
            h.source.unacknowledged[delivery.message_id] = delivery
            h.source.redeliver_unacknowledged()
            await wait_until(lambda: len(h.source.acknowledged) == 2)
            # Tuya publishing the same dataId again under a new message id is a duplicate too.
            h.source.publish(*status_message("dev00", 0))
            await wait_until(lambda: len(h.source.acknowledged) == 3)
            assert h.outcomes("first", "duplicate") == 2

    asyncio.run(scenario())
    assert first.calls[("dev00", 0)] == 1 and second.calls[("dev00", 0)] == 1


def test_dedupe_can_be_turned_off(tmp_path: Path) -> None:
    handler = RecordingHandler()

    async def scenario() -> None:
        settings = make_settings(tmp_path, consumer={"dedupe_cache_size": 0})
        async with Harness(settings, [handler]) as h:
            h.source.publish(*status_message("dev00", 0))
            h.source.publish(*status_message("dev00", 0))
            await wait_until(lambda: len(h.source.acknowledged) == 2)

    asyncio.run(scenario())
    assert handler.calls[("dev00", 0)] == 2


def test_in_flight_is_bounded(tmp_path: Path) -> None:
    handler = RecordingHandler(delay=lambda: 0.01)
    peak = 0

    async def scenario() -> None:
        nonlocal peak
        settings = make_settings(tmp_path, consumer={"max_in_flight": 8})
        async with Harness(settings, [handler], batch_size=4) as h:
            total = publish_sequences(h, 10)

            async def watch() -> None:
                nonlocal peak
                while True:
                    peak = max(peak, h.daemon.pipeline.in_flight)
                    await asyncio.sleep(0.001)

            watcher = asyncio.get_running_loop().create_task(watch())
            await wait_until(lambda: len(h.source.acknowledged) == total, timeout=60)
            watcher.cancel()

    asyncio.run(scenario())
    assert 8 <= peak <= 8 + 4  # max_in_flight, overshot by at most one receive batch
    assert handler.max_concurrent <= 12


def test_shutdown_drains_in_flight_messages_and_acks_them(tmp_path: Path) -> None:
    handler = RecordingHandler(delay=lambda: 0.2)

    async def scenario() -> int:
        async with Harness(make_settings(tmp_path), [handler]) as h:
            total = publish_sequences(h, 2)
            await wait_until(lambda: h.daemon.pipeline.in_flight == total)
            code = await h.stop()
            assert len(h.source.acknowledged) == total and not h.source.unacknowledged
            return code

    assert asyncio.run(scenario()) == exits.OK
    assert len(handler.seen) == 2 * len(DEVICES)


def test_shutdown_timeout_leaves_unfinished_messages_unacknowledged(tmp_path: Path) -> None:
    handler = RecordingHandler(delay=lambda: 30)

    async def scenario() -> int:
        settings = make_settings(tmp_path, consumer={"shutdown_timeout": "200ms"})
        async with Harness(settings, [handler]) as h:
            h.source.publish(*status_message("dev00", 0))
            await wait_until(lambda: h.daemon.pipeline.in_flight == 1)
            code = await h.stop()
            assert h.source.acknowledged == [] and len(h.source.unacknowledged) == 1
            return code

    assert asyncio.run(scenario()) == exits.TEMPFAIL


def test_message_stays_unacknowledged_while_the_dead_letter_store_is_broken(tmp_path: Path) -> None:
    import tuya_events.pipeline.pipeline as pipeline_module

    pipeline_module.DEAD_LETTER_RETRY_SECONDS = 0.05
    handler = RecordingHandler()

    async def scenario() -> None:
        async with Harness(make_settings(tmp_path), [handler]) as h:
            real_keep = h.store.keep
            broken = {"left": 3}

            def flaky_put(*args, **kwargs):
                if broken["left"]:
                    broken["left"] -= 1
                    raise OSError("disk full")
                return real_keep(*args, **kwargs)

            h.daemon.pipeline.dead_letters.keep = flaky_put  # type: ignore[method-assign]
            h.source.publish(b"{}", {})
            await asyncio.sleep(0.08)
            assert h.source.acknowledged == []  # not written, so not acknowledged
            await wait_until(lambda: len(h.source.acknowledged) == 1)
            assert h.store.count() == 1
            assert h.daemon.metrics.dead_letter_write_failures._value.get() == 3

    try:
        asyncio.run(scenario())
    finally:
        pipeline_module.DEAD_LETTER_RETRY_SECONDS = 5.0


def test_dead_letter_record_never_holds_the_secret_or_plaintext(tmp_path: Path) -> None:
    from tests import vectors as v

    handler = RecordingHandler(
        fail=lambda e, n: HandlerError("bad", f"rejected {v.ACCESS_SECRET}", retryable=False)
    )

    async def scenario() -> None:
        from tuya_events.config.secrets import secret_values
        from tuya_events.observability.redact import REDACTOR

        settings = make_settings(tmp_path)
        REDACTOR.add(secret_values(settings))
        async with Harness(settings, [handler]) as h:
            h.source.publish(*status_message("dev00", 0))
            await wait_until(lambda: len(h.source.acknowledged) == 1)
            record = h.store.list()[0]
            text = orjson.dumps(record.as_dict(include_body=True)).decode()
            assert v.ACCESS_SECRET not in text and "[REDACTED]" in record.message
            assert record.plaintext is None

    asyncio.run(scenario())


def test_an_outage_is_logged_once_not_once_per_message(tmp_path: Path) -> None:
    import time

    import structlog

    back_at = time.monotonic() + 0.5  # the database is down for half a second

    def fail(event, attempt):
        if time.monotonic() < back_at:
            return HandlerError("database_unavailable", "connection refused", infrastructure=True)
        return None

    handler = RecordingHandler(fail=fail)

    async def scenario() -> None:
        async with Harness(make_settings(tmp_path), [handler]) as h:
            total = publish_sequences(h, 2)
            await wait_until(lambda: len(h.source.acknowledged) == total)

    with structlog.testing.capture_logs() as logs:
        asyncio.run(scenario())
    said = [entry for entry in logs if entry["event"].startswith("handler")]
    assert [entry["event"] for entry in said] == [
        "handler is down: its messages wait, one probe at a time",
        "handler is back",
    ]
    assert said[0]["reason"] == "database_unavailable"
    assert said[1]["messages_waited"] > 0


class SlowThenCrashingHandler(RecordingHandler):
    """dev00: the first attempt outlives the timeout, the second succeeds. dev01: always raises
    a plain exception, as a buggy third-party handler would."""

    timeout = 0.05

    async def handle(self, event, delivery) -> None:  # type: ignore[no-untyped-def]
        key = (event.device_id or "", event.statuses[0].value)
        if event.device_id == "dev00" and self.calls[key] == 0:
            self.calls[key] += 1
            await asyncio.sleep(1.0)  # cancelled by the pipeline's timeout
        if event.device_id == "dev01":
            self.calls[key] += 1
            raise KeyError("missing column")
        await super().handle(event, delivery)


def test_a_timed_out_attempt_is_retried_and_a_crashing_handler_dead_letters(
    tmp_path: Path,
) -> None:
    handler = SlowThenCrashingHandler()

    async def scenario() -> None:
        async with Harness(make_settings(tmp_path), [handler]) as h:
            h.source.publish(*status_message("dev00", 0))
            h.source.publish(*status_message("dev01", 0))
            await wait_until(lambda: len(h.source.acknowledged) == 2)
            records = h.store.list()
            assert [(r.device_id, r.reason, r.attempts) for r in records] == [
                ("dev01", "handler_error", 3)
            ]
            assert records[0].message == "KeyError: 'missing column'"
            # dev00: one timed-out attempt, then a success; dev01: two retries, then a failure
            assert h.outcomes("recorder", "retry") == 1 + 2
            assert h.outcomes("recorder", "success") == 1
            assert h.outcomes("recorder", "failure") == 1

    import structlog

    with structlog.testing.capture_logs() as logs:
        asyncio.run(scenario())
    retried = {e["reason"] for e in logs if e["event"] == "handler failed, will retry"}
    assert retried == {"timeout", "handler_error"}
    assert handler.seen == [("dev00", 0)]
    assert handler.calls[("dev00", 0)] == 2
    assert handler.calls[("dev01", 0)] == 3


def test_a_synchronous_handler_settles_its_message_before_submit_returns(tmp_path: Path) -> None:
    """No task, no loop turn: the message is handled, remembered and acknowledged in ``submit``."""
    handler = RecordingHandler(style="sync")

    async def scenario() -> None:
        async with Harness(make_settings(tmp_path), [handler]) as h:
            pipeline = h.daemon.pipeline
            body, properties = status_message("dev00", 0)
            delivery = Delivery(body, properties, "direct:1", "memory", 0)
            h.source.unacknowledged[delivery.message_id] = delivery  # not queued for receiving
            pipeline.submit(delivery)
            assert handler.seen == [("dev00", 0)]
            assert h.source.acknowledged == [delivery.message_id]
            assert pipeline.in_flight == 0
            assert h.outcomes("recorder", "success") == 1

    asyncio.run(scenario())


class GatedHandler(BaseHandler):
    """Waits on a gate for the messages named in ``gated``; is done at once for the others."""

    def __init__(self, gated: set[tuple[str, int]]) -> None:
        super().__init__("gated")
        self.gated = gated
        self.gate = asyncio.Event()
        self.seen: list[tuple[str, int]] = []

    def handle(self, event, delivery):  # type: ignore[no-untyped-def]
        key = (event.device_id, event.statuses[0].value)
        if key in self.gated:
            return self._after_gate(key)
        self.seen.append(key)
        return None

    async def _after_gate(self, key: tuple[str, int]) -> None:
        await self.gate.wait()
        self.seen.append(key)


def test_a_message_that_could_finish_at_once_still_waits_behind_its_device(
    tmp_path: Path,
) -> None:
    handler = GatedHandler(gated={("dev00", 0)})

    async def scenario() -> None:
        async with Harness(make_settings(tmp_path), [handler]) as h:
            first = h.source.publish(*status_message("dev00", 0))
            second = h.source.publish(*status_message("dev00", 1))
            other = h.source.publish(*status_message("dev01", 0))
            await wait_until(lambda: other.message_id in h.source.acknowledged)
            # dev01 did not wait for dev00; dev00's second message did, though it needs no wait.
            assert handler.seen == [("dev01", 0)]
            assert set(h.source.unacknowledged) == {first.message_id, second.message_id}
            handler.gate.set()
            await wait_until(lambda: len(h.source.acknowledged) == 3)

    asyncio.run(scenario())
    assert handler.seen == [("dev01", 0), ("dev00", 0), ("dev00", 1)]


def test_routes_run_in_order_across_synchronous_and_waiting_handlers(tmp_path: Path) -> None:
    """sync -> waits (fails once) -> sync: each message goes through the routes in order, a
    retry repeats only the failed handler, and the ack comes after the last one."""
    calls: list[tuple[str, str, int]] = []

    def recorder(name: str, style: str, fail_first: bool = False) -> RecordingHandler:
        def fail(event, attempt):  # type: ignore[no-untyped-def]
            calls.append((name, event.device_id, event.statuses[0].value))
            if fail_first and attempt == 1:
                return HandlerError("flaky", "first attempt refused")
            return None

        return RecordingHandler(name, fail=fail, style=style, delay=None)

    handlers = [recorder("a", "sync"), recorder("b", "async", True), recorder("c", "sync")]

    async def scenario() -> None:
        async with Harness(make_settings(tmp_path), handlers) as h:
            for seq in range(3):
                h.source.publish(*status_message("dev00", seq))
            await wait_until(lambda: len(h.source.acknowledged) == 3)
            assert h.store.count() == 0
            assert [h.outcomes(name, "success") for name in "abc"] == [3, 3, 3]
            assert h.outcomes("b", "retry") == 3

    asyncio.run(scenario())
    expected = []
    for seq in range(3):
        expected += [("a", "dev00", seq), ("b", "dev00", seq), ("b", "dev00", seq)]
        expected += [("c", "dev00", seq)]
    assert calls == expected


@pytest.mark.parametrize("style", ["sync", "async"])
def test_a_bug_in_routing_dead_letters_the_message_and_the_device_goes_on(
    tmp_path: Path, style: str
) -> None:
    """A rule that raises is our bug, not the message's: it must neither stall the device (its
    later messages) nor stop the loop (other devices), and the message is kept, replayable."""
    handler = RecordingHandler(style=style, delay=(lambda: 0.002) if style == "async" else None)

    def rule(event) -> bool:  # type: ignore[no-untyped-def]
        if event.device_id == "dev00" and event.statuses[0].value == 1:
            raise RuntimeError("rule broke on seq 1")
        return True

    async def scenario() -> None:
        async with Harness(make_settings(tmp_path), [Route(handler, rule)]) as h:
            for seq in range(3):
                for device in ("dev00", "dev01"):
                    h.source.publish(*status_message(device, seq))
            await wait_until(lambda: len(h.source.acknowledged) == 6)
            records = h.store.list()
            assert [(r.device_id, r.stage, r.reason, r.message) for r in records] == [
                ("dev00", "pipeline", "internal_error", "RuntimeError: rule broke on seq 1")
            ]
            labels = {"stage": "pipeline", "reason": "internal_error"}
            registry = h.daemon.metrics.registry
            assert registry.get_sample_value("tuya_events_dead_letters_total", labels) == 1

    import structlog

    with structlog.testing.capture_logs() as logs:
        asyncio.run(scenario())
    errors = [e for e in logs if e["log_level"] == "error"]
    assert [e["event"] for e in errors] == [
        "internal error while handling a message; it is dead-lettered"
    ]
    assert isinstance(errors[0]["exc_info"], RuntimeError)
    by_device = {d: [s for dev, s in handler.seen if dev == d] for d in ("dev00", "dev01")}
    assert by_device == {"dev00": [0, 2], "dev01": [0, 1, 2]}
