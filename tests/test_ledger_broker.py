"""The shared dedupe ledger against the real broker and a real PostgreSQL: a second instance
joins while the first works through a backlog, partitions move, and the recorder (standing for
a webhook or an action: a side effect) still runs once per event. (The same run without the
ledger recorded 586 duplicates of 3,000, 19.5%: what issue 14 reported for webhooks.)"""

from __future__ import annotations

import pytest

from tests.pulsar.traffic import interleaved_stream
from tests.support.daemon import BrokerRun
from tests.support.recorder import read_records

pytestmark = pytest.mark.broker


def test_a_second_instance_joining_a_backlog_repeats_no_side_effect_with_the_ledger(
    broker_run: BrokerRun, postgres_dsn: str
) -> None:
    ledger = {"ledger": {"dsn": postgres_dsn, "handlers": ["recorder"], "lease": "10s"}}
    # 100 a device, 100 ms each: 10 s of work, so the second instance joins well before the
    # first is through, however slowly it starts on a loaded machine.
    stream = interleaved_stream(messages=3000, devices=30)
    broker_run.subscribe_ahead()
    broker_run.publish(stream)
    a = broker_run.start("instance-a", recorder={"delay": 0.1}, sections=ledger)
    broker_run.wait_progress(300, 120, "the first instance working through the backlog", a)
    b = broker_run.start("instance-b", recorder={"delay": 0.1}, sections=ledger)
    broker_run.wait_handled(len(stream), 180, "every event handled", b)
    broker_run.wait_backlog(0, timeout=60)
    report = broker_run.report(stream)
    print(f"join with the ledger: lost={report.lost} duplicated={report.duplicated}")
    assert (report.lost, report.duplicated) == (0, 0), report
    pids = {line["pid"] for line in read_records(broker_run.records)}
    assert len(pids) == 2, "the second instance never took a partition over"
    assert a.stop() == 0 and b.stop() == 0


def test_a_kill_of_one_of_two_instances_repeats_at_most_what_it_had_not_marked_done(
    broker_run: BrokerRun, postgres_dsn: str
) -> None:
    """SIGKILL between a side effect and its done mark is the one case the ledger cannot
    cover: the next instance runs that event again once the lease ran out. A device has at most
    one event in flight, so at most one repeat per device of the killed instance."""
    devices = 30
    ledger = {"ledger": {"dsn": postgres_dsn, "handlers": ["recorder"], "lease": "2s"}}
    stream = interleaved_stream(messages=3000, devices=devices)
    broker_run.subscribe_ahead()
    broker_run.publish(stream)
    a = broker_run.start("instance-a", recorder={"delay": 0.05}, sections=ledger)
    b = broker_run.start("instance-b", recorder={"delay": 0.05}, sections=ledger)
    broker_run.wait_progress(600, 120, "both instances working", a)
    a.kill()
    broker_run.wait_handled(len(stream), 180, "the survivor to finish", b)
    broker_run.wait_backlog(0, timeout=60)
    report = broker_run.report(stream)
    print(f"kill with the ledger: lost={report.lost} duplicated={report.duplicated}")
    assert report.lost == 0 and report.out_of_order == 0, report
    assert report.duplicated <= devices, report
    assert b.stop() == 0
