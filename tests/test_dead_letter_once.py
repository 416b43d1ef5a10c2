"""One dead-letter record per message: a message the broker delivers again after it was
dead-lettered (a restart that lost the acknowledgement) updates its record, never adds one."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.pipeline_support import Harness, RecordingHandler, make_settings, status_message
from tuya_events.deadletter.store import DeadLetterStore
from tuya_events.delivery import Delivery, Failure
from tuya_events.handlers.base import HandlerError


def delivery(message_id: str = "m-1", topic: str = "t") -> Delivery:
    return Delivery(b"{}", {}, message_id, topic=topic, partition=1, publish_time_ms=1)


def test_the_same_message_failing_again_at_the_same_place_updates_its_record(
    tmp_path: Path,
) -> None:
    with DeadLetterStore(tmp_path / "dl.sqlite3") as store:
        first = store.keep(delivery(), Failure("handler", "http_500", "down", "hook", 3))
        again = store.keep(delivery(), Failure("handler", "http_400", "bad", "hook", 2))
        assert (first.again, again.again, again.record_id) == (False, True, first.record_id)
        # Another place of failure, another topic, another message: records of their own.
        other_handler = store.keep(delivery(), Failure("handler", "x", "y", "db", 1))
        other_stage = store.keep(delivery(), Failure("decode", "bad_json", "z"))
        other_topic = store.keep(delivery(topic="u"), Failure("handler", "x", "y", "hook", 1))
        other_message = store.keep(delivery("m-2"), Failure("handler", "x", "y", "hook", 1))
        assert not any(k.again for k in (other_handler, other_stage, other_topic, other_message))
        assert store.count() == 5
        record = store.get(first.record_id)
    assert record is not None
    assert (record.seen, record.attempts, record.reason, record.message) == (
        2,
        5,
        "http_400",
        "bad",
    )


def test_a_replay_updates_its_record_without_counting_a_redelivery(tmp_path: Path) -> None:
    with DeadLetterStore(tmp_path / "dl.sqlite3") as store:
        kept = store.keep(delivery(), Failure("handler", "http_500", "down", "hook", 3))
        record = store.get(kept.record_id)
        assert record is not None
        replayed = store.keep(record.to_delivery(), Failure("handler", "http_500", "x", "hook", 1))
        assert (replayed.record_id, replayed.again) == (kept.record_id, False)
        updated = store.get(kept.record_id)
    assert updated is not None and (updated.seen, updated.attempts) == (1, 4)


@pytest.mark.parametrize("cache", [100_000, 0], ids=["dedupe-cache", "no-cache"])
def test_poison_and_failing_messages_delivered_again_keep_one_record_each(
    tmp_path: Path, cache: int
) -> None:
    """With the dedupe cache, a redelivered message whose handler was dead-lettered is skipped
    (only undecodable ones fail again); without it (or after a restart) every one fails again.
    Either way: one record per message."""
    refusing = RecordingHandler(
        fail=lambda event, n: (
            HandlerError("refused", "no", retryable=False) if event.device_id == "bad" else None
        )
    )

    async def scenario() -> tuple[int, float, float, list[tuple[str, int]]]:
        settings = make_settings(tmp_path, consumer={"dedupe_cache_size": cache})
        async with Harness(settings, [refusing]) as h:
            for seq in range(3):
                h.source.publish(b"not json", {})
                h.source.publish(*status_message("bad", seq))
                h.source.publish(*status_message("good", seq))
            await _settled(h, 9)
            # The broker restarts and has lost the acknowledgements: everything comes again.
            assert h.source.lose_acknowledgements() == 9
            await _settled(h, 18)
            registry = h.daemon.metrics.registry
            new = sum(
                registry.get_sample_value("tuya_events_dead_letters_total", labels) or 0
                for labels in (
                    {"stage": "decode", "reason": "bad_envelope"},
                    {"stage": "handler", "reason": "refused"},
                )
            )
            seen_again = sum(
                registry.get_sample_value("tuya_events_dead_letters_seen_again_total", labels) or 0
                for labels in (
                    {"stage": "decode", "reason": "bad_envelope"},
                    {"stage": "handler", "reason": "refused"},
                )
            )
            records = h.store.count()
            # Every decoded message was settled before: each one that came again is counted.
            again = registry.get_sample_value("tuya_events_messages_seen_again_total") or 0
            assert again == (6 if cache else 0)
            assert await h.stop() == 0
        return records, new, seen_again, refusing.seen

    records, new, seen_again, seen = asyncio.run(scenario())
    failing_again = 3 if cache else 6
    assert (records, new, seen_again) == (6, 6, failing_again)
    good = [("good", seq) for seq in range(3)]
    assert sorted(seen) == (good if cache else sorted(good * 2))
    with DeadLetterStore(tmp_path / "dead-letters.sqlite3") as store:
        seen_counts = sorted(record.seen for record in store.list())
    assert seen_counts == ([1, 1, 1, 2, 2, 2] if cache else [2] * 6)


async def _settled(h: Harness, acknowledged: int) -> None:
    while len(h.source.acknowledged) < acknowledged:
        await asyncio.sleep(0.01)
