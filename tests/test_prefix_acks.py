"""Cumulative acknowledgement of each partition's finished prefix, never past an unfinished one.

The acknowledgements go to two recording functions here; the broker tests
(test_daemon_broker.py) prove the same against a real Pulsar broker.
"""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from tuya_events.delivery import Delivery
from tuya_events.transport.acks import PrefixAcks


class Recorder:
    """The acknowledgements sent, as (kind, partition, sequence) tuples, plus a settable clock."""

    def __init__(self, max_waiting: int = 1000, max_wait: float = 1.0) -> None:
        self.sent: list[tuple[str, int, int]] = []
        self.now = 0.0
        self.acks = PrefixAcks(
            lambda handle: self.sent.append(("cumulative", *handle)),
            lambda handle: self.sent.append(("individual", *handle)),
            max_waiting=max_waiting,
            max_wait=max_wait,
            clock=lambda: self.now,
        )

    def receive(self, partition: int, count: int, start: int = 0) -> list[Delivery]:
        deliveries = [
            Delivery(b"", {}, f"{partition}:{seq}", partition=partition, handle=(partition, seq))
            for seq in range(start, start + count)
        ]
        for delivery in deliveries:
            self.acks.received(delivery)
        return deliveries

    def finish(self, *deliveries: Delivery) -> None:
        for delivery in deliveries:
            self.acks.finished(delivery)

    def acknowledged(self) -> set[tuple[int, int]]:
        """Every (partition, sequence) the broker would now consider acknowledged."""
        done: set[tuple[int, int]] = set()
        for kind, partition, seq in self.sent:
            if kind == "cumulative":
                done.update((partition, s) for s in range(seq + 1))
            else:
                done.add((partition, seq))
        return done


def test_finished_prefix_is_acknowledged_with_one_cumulative_ack_per_partition() -> None:
    r = Recorder()
    a = r.receive(0, 5)
    b = r.receive(1, 3)
    r.finish(*a, *b)
    r.acks.flush()
    assert sorted(r.sent) == [("cumulative", 0, 4), ("cumulative", 1, 2)]
    assert r.acks.waiting() == 0


def test_nothing_is_acknowledged_past_an_unfinished_message() -> None:
    r = Recorder()
    d = r.receive(0, 6)
    r.finish(d[0], d[1], d[3], d[4], d[5])  # d[2] is still being handled
    r.acks.flush()
    assert r.sent == [("cumulative", 0, 1)]
    r.finish(d[2])
    r.acks.flush()
    assert r.sent[-1] == ("cumulative", 0, 5)
    assert r.acknowledged() == {(0, s) for s in range(6)}


def test_the_first_finish_of_a_turn_asks_for_a_flush_and_the_rest_do_not() -> None:
    r = Recorder()
    d = r.receive(0, 3)
    assert [r.acks.finished(x) for x in d] == [True, False, False]
    r.acks.flush()
    assert r.acks.finished(r.receive(0, 1, start=3)[0]) is True


def test_a_message_held_back_too_long_lets_those_behind_it_go_individually() -> None:
    r = Recorder(max_wait=1.0)
    d = r.receive(0, 4)
    r.finish(d[1], d[2])
    r.acks.flush()
    assert r.sent == []  # d[0] unfinished: the clock starts
    r.now = 0.5
    r.finish(d[3])
    r.acks.flush()
    assert r.sent == []
    r.now = 1.0
    later = r.receive(0, 1, start=4)[0]
    r.finish(later)
    r.acks.flush()
    assert sorted(r.sent) == [("individual", 0, s) for s in (1, 2, 3, 4)]
    assert r.acks.waiting() == 1  # only d[0]
    r.finish(d[0])
    r.acks.flush()
    assert r.sent[-1] == ("cumulative", 0, 0)
    assert r.acks.waiting() == 0


def test_held_back_messages_go_when_nothing_else_finishes_on_their_partition() -> None:
    r = Recorder(max_wait=1.0)
    d = r.receive(0, 3)
    r.finish(d[1], d[2])
    r.acks.flush()
    r.acks.release_held_back()
    assert r.sent == []  # not a second yet
    r.now = 1.0
    r.acks.release_held_back()
    assert sorted(r.sent) == [("individual", 0, 1), ("individual", 0, 2)]
    assert r.acks.waiting() == 1


def test_a_new_head_restarts_the_clock() -> None:
    r = Recorder(max_wait=1.0)
    d = r.receive(0, 4)
    r.finish(d[1])
    r.acks.flush()
    r.now = 0.9
    r.finish(d[0], d[3])  # the prefix moves to d[2], which is now the head
    r.acks.flush()
    assert r.sent == [("cumulative", 0, 1)]
    r.now = 1.5  # d[0] held back for 1.5 s, but d[2] only since 0.9
    r.finish(r.receive(0, 1, start=4)[0])
    r.acks.flush()
    assert r.sent == [("cumulative", 0, 1)]


def test_too_many_waiting_behind_one_message_are_acknowledged_individually() -> None:
    r = Recorder(max_waiting=10, max_wait=3600)
    d = r.receive(0, 12)
    r.finish(*d[1:])
    r.acks.flush()  # first sight of the blocked head
    r.finish(r.receive(0, 1, start=12)[0])
    r.acks.flush()
    assert {seq for kind, _, seq in r.sent if kind == "individual"} == set(range(1, 13))
    assert r.acks.waiting() == 1


def test_close_acknowledges_every_finished_message_and_nothing_unfinished() -> None:
    r = Recorder(max_wait=3600)
    d = r.receive(0, 5) + r.receive(1, 2)
    r.finish(d[0], d[2], d[3], d[6])
    r.acks.flush_all()
    assert r.acknowledged() == {(0, 0), (0, 2), (0, 3), (1, 1)}


@settings(max_examples=200, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    sizes=st.lists(st.integers(1, 40), min_size=1, max_size=4),
    max_waiting=st.integers(1, 50),
)
def test_any_order_of_finishing_acknowledges_exactly_the_finished_ones(
    seed: int, sizes: list[int], max_waiting: int
) -> None:
    """Random finishing order, flushes and clock steps: never an unfinished message acked, and
    after everything finished, everything acknowledged."""
    rng = random.Random(seed)
    r = Recorder(max_waiting=max_waiting, max_wait=1.0)
    pending = [d for partition, size in enumerate(sizes) for d in r.receive(partition, size)]
    rng.shuffle(pending)
    finished: set[tuple[int, int]] = set()
    while pending:
        for _ in range(rng.randint(1, 5)):
            if pending:
                delivery = pending.pop()
                r.finish(delivery)
                finished.add(delivery.handle)
        r.now += rng.choice((0.0, 0.3, 1.2))
        r.acks.flush()
        assert r.acknowledged() <= finished
    r.acks.flush()
    assert r.acknowledged() == finished
    assert r.acks.waiting() == 0
