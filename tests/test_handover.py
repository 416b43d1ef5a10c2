"""A second instance joining a Failover subscription mid-backlog (issue 14), on the real broker.

What the broker does (Pulsar's ``AbstractDispatcherSingleActiveConsumer`` and
``PersistentDispatcherSingleActiveConsumer``; measured by ``benchmarks/handover.py --probe``):
consumers are sorted by name and partition ``p`` goes to ``sorted[p % 2]``, so B (``instance-b``)
takes the odd partitions from A (``instance-a``). After ``activeConsumerFailoverDelayTimeMillis``
(1 s by default) the broker rewinds each moved partition to its first unacknowledged message and
dispatches from there to B. A is not told (the Python binding has no consumer event listener): it
goes on handling what its client already holds, and its acknowledgements still count. So what
comes twice is what A had received but not yet acknowledged when the broker rewound:

- per moved partition, at most ``receiver_queue_size`` messages in A's client (the broker sends
  a partition's consumer no more than its permits, and a permit comes back only when a message
  leaves the multi-topics consumer's queue for our ``batch_receive``);
- in A's pipeline, at most ``max_in_flight`` plus one batch (``min(500, max_in_flight)``): the
  daemon waits for capacity before it receives, then submits the whole batch;
- finished messages whose acknowledgement the client has not sent yet (grouped for up to 100 ms):
  with a handler taking at least 100 ms, no message enters and finishes within one group, so
  at most the messages held in the pipeline.

Bound: ``moved * receiver_queue_size + 2 * (max_in_flight + min(500, max_in_flight))``.
"""

from __future__ import annotations

import orjson
import pytest

from tests.pulsar.traffic import interleaved_stream
from tests.support.daemon import BrokerRun, HandoverCount, failover_owner
from tests.support.recorder import read_records
from tests.support.waiting import wait_for

pytestmark = pytest.mark.broker

A, B = "instance-a", "instance-b"
PARTITIONS = 11
MESSAGES = 3000
DEVICES = 200
RECEIVER_QUEUE = 100
MAX_IN_FLIGHT = 100
HANDLER_DELAY = 0.5  # a slow webhook: A cannot finish what it holds within the failover delay
MOVED = [p for p in range(PARTITIONS) if failover_owner(p, [A, B]) == B]
BATCH = min(500, MAX_IN_FLIGHT)
DUPLICATES_BOUND = len(MOVED) * RECEIVER_QUEUE + 2 * (MAX_IN_FLIGHT + BATCH)


def records_count(run: BrokerRun) -> int:
    return run.records.read_bytes().count(b"\n") if run.records.exists() else 0


def unique_handled(run: BrokerRun) -> int:
    """Distinct (device, seq) in complete lines: a line being appended is not read half."""
    if not run.records.exists():
        return 0
    data = run.records.read_bytes()
    lines = filter(None, data[: data.rfind(b"\n") + 1].splitlines())
    return len({(record["device"], record["seq"]) for record in map(orjson.loads, lines)})


def test_failover_owner_follows_the_brokers_rule() -> None:
    assert MOVED == [1, 3, 5, 7, 9]
    assert failover_owner(0, ["b", "a"]) == "a"
    assert failover_owner(4, ["x", "y", "z"]) == "y"


def test_joining_instance_loses_nothing_keeps_order_and_bounds_duplicates(
    broker_run: BrokerRun,
) -> None:
    consumer = {"receiver_queue_size": RECEIVER_QUEUE, "max_in_flight": MAX_IN_FLIGHT}
    recorder = {"delay": HANDLER_DELAY}
    stream = interleaved_stream(messages=MESSAGES, devices=DEVICES, seed=14)
    broker_run.subscribe_ahead()
    broker_run.publish(stream)
    broker_run.wait_backlog(MESSAGES)
    a = broker_run.start(A, consumer=consumer, recorder=recorder)
    wait_for(
        lambda: records_count(broker_run) >= MESSAGES // 5, 30, "A to handle a fifth", a.log_tail
    )
    b = broker_run.start(B, consumer=consumer, recorder=recorder)
    wait_for(lambda: unique_handled(broker_run) == MESSAGES, 45, "all handled", b.log_tail)
    broker_run.wait_backlog(0, timeout=15, daemon=a)
    # A's late copies (what its client still held for the moved partitions) come within the
    # time it needs to handle them; then its records stop growing.
    last = [records_count(broker_run), 0]

    def quiet() -> bool:
        now = records_count(broker_run)
        last[1] = last[1] + 1 if now == last[0] else 0
        last[0] = now
        return last[1] >= 10

    wait_for(quiet, 20, "the records to stop growing", interval=0.2)
    for daemon in (a, b):
        assert daemon.stop() == 0, daemon.log_tail()

    report = broker_run.report(stream)
    counts = HandoverCount.of(read_records(broker_run.records))
    print(f"duplicates {counts.duplicates} (stale {counts.stale}) of bound {DUPLICATES_BOUND}")
    assert report.lost == 0
    assert counts.out_of_order_within_pid == 0, "an instance handled a device out of order"
    assert b.process is not None
    assert counts.partitions_of[b.process.pid] <= set(MOVED), (
        "B handled a partition that stayed with A"
    )
    assert set(counts.per_partition) <= set(MOVED), counts.per_partition
    assert counts.duplicates <= DUPLICATES_BOUND, (counts.duplicates, counts.per_partition)
