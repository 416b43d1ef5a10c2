"""The daemon's promises against the real Pulsar broker, counting lost and duplicated messages.

Each test runs ``tuya-events run`` as a real process on a fresh Tuya-shaped tenant (11
partitions), with the test FileRecorder handler writing one line per handled event.
"""

from __future__ import annotations

import base64
import signal
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pulsar
import pytest

from tests.daemon_process import DaemonProcess
from tests.deadletter_support import read_dead_letters
from tests.e2e_handlers import read_records
from tests.pulsar.broker import PulsarBroker
from tests.pulsar.publisher import TuyaPublisher
from tests.pulsar.tenant import TuyaTenant
from tests.pulsar.traffic import DeliveryLedger, DeliveryReport, Outgoing, interleaved_stream
from tuya_events.tuya.auth import pulsar_authentication
from tuya_events.tuya.crypto import EcbCipher, aes_key

pytestmark = pytest.mark.broker


@pytest.fixture
def daemons() -> Iterator[list[DaemonProcess]]:
    started: list[DaemonProcess] = []
    yield started
    for daemon in started:
        daemon.close()


def ledger_of(records: Path, published: list[Outgoing]) -> DeliveryReport:
    ledger = DeliveryLedger(published)
    for line in read_records(records):
        ledger.record(line["device"], line["seq"], str(line["partition"]))
    return ledger.report()


def wait_for(
    condition: Callable[[], bool], timeout: float, what: str, daemon: DaemonProcess | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            tail = daemon.log_tail() if daemon else ""
            raise AssertionError(f"timed out waiting for {what}\n{tail}")
        time.sleep(0.1)


def subscribe_ahead(broker: PulsarBroker, tenant: TuyaTenant) -> None:
    """Tuya's subscription exists before any message: the broker keeps messages only for one."""
    broker.admin.request(
        "PUT",
        f"/persistent/{tenant.access_id}/out/event/subscription/{tenant.subscription}",
    )


def handled(records: Path) -> int:
    return len(read_records(records))


def unique_handled(records: Path) -> int:
    return len({(line["device"], line["seq"]) for line in read_records(records)})


def wait_for_backlog_zero(broker: PulsarBroker, tenant: TuyaTenant, timeout: float = 30) -> None:
    wait_for(
        lambda: broker.admin.backlog(tenant.topic(), tenant.subscription) == 0,
        timeout,
        "the subscription backlog to reach 0 (everything acknowledged)",
    )


def start_daemon(
    daemons: list[DaemonProcess], tmp_path: Path, tenant: TuyaTenant, name: str, **kw
) -> DaemonProcess:
    daemon = DaemonProcess(tmp_path, tenant, name, tmp_path / "handled.jsonl", **kw)
    daemons.append(daemon)
    daemon.start().wait_ready()
    return daemon


@pytest.mark.parametrize("acknowledgement", ["individual", "cumulative"])
def test_end_to_end_each_message_handled_once_in_order_and_acked(
    pulsar_broker: PulsarBroker,
    tuya_tenant: TuyaTenant,
    tuya_publisher: TuyaPublisher,
    daemons: list[DaemonProcess],
    tmp_path: Path,
    acknowledgement: str,
) -> None:
    records = tmp_path / "handled.jsonl"
    daemon = start_daemon(
        daemons, tmp_path, tuya_tenant, "solo", consumer={"acknowledgement": acknowledgement}
    )
    stream = interleaved_stream(messages=2000, devices=60)
    tuya_publisher.publish_all(stream)
    wait_for(lambda: unique_handled(records) == len(stream), 120, "every message handled", daemon)
    wait_for(
        lambda: daemon.metric("tuya_events_messages_acked_total") == len(stream), 30, "acks", daemon
    )
    assert daemon.metric("tuya_events_messages_received_total") == len(stream)
    assert daemon.metric("tuya_events_dead_letters_total") == 0
    assert daemon.stop() == 0, daemon.log_tail()
    report = ledger_of(records, stream)
    assert report.perfect, report
    assert len(report.partitions) == 11
    wait_for_backlog_zero(pulsar_broker, tuya_tenant)


CUMULATIVE = {"acknowledgement": "cumulative"}


def test_a_stuck_device_holds_back_only_its_own_messages(
    pulsar_broker: PulsarBroker,
    tuya_tenant: TuyaTenant,
    tuya_publisher: TuyaPublisher,
    daemons: list[DaemonProcess],
    tmp_path: Path,
) -> None:
    """Cumulative acks never pass an unfinished message, and do not keep finished ones waiting.

    One device's handler is down (retrying for an hour); the others' messages share its
    partitions. Once those are acknowledged, the backlog must be exactly the stuck device's
    messages; a SIGKILL then loses nothing and brings nothing else back.
    """
    records = tmp_path / "handled.jsonl"
    stream = interleaved_stream(messages=1500, devices=30)
    stuck = stream[0].device_id
    stuck_count = sum(1 for item in stream if item.device_id == stuck)
    subscribe_ahead(pulsar_broker, tuya_tenant)
    first = start_daemon(
        daemons,
        tmp_path,
        tuya_tenant,
        "stuck",
        recorder={"fail_devices": [stuck], "fail_mode": "infrastructure"},
        consumer=CUMULATIVE,
    )
    tuya_publisher.publish_all(stream)
    wait_for(
        lambda: unique_handled(records) == len(stream) - stuck_count,
        120,
        "every other device handled",
        first,
    )
    wait_for(
        lambda: (
            pulsar_broker.admin.backlog(tuya_tenant.topic(), tuya_tenant.subscription)
            == stuck_count
        ),
        30,
        f"the backlog to be the stuck device's {stuck_count} messages",
        first,
    )
    first.kill()
    second = start_daemon(daemons, tmp_path, tuya_tenant, "recovered")
    wait_for(
        lambda: unique_handled(records) == len(stream), 120, "the stuck device's messages", second
    )
    wait_for_backlog_zero(pulsar_broker, tuya_tenant)
    report = ledger_of(records, stream)
    assert (report.lost, report.duplicated, report.out_of_order) == (0, 0, 0), report
    assert second.stop() == 0


def test_failing_handler_and_poison_messages_are_dead_lettered_then_acked(
    pulsar_broker: PulsarBroker,
    tuya_tenant: TuyaTenant,
    tuya_publisher: TuyaPublisher,
    daemons: list[DaemonProcess],
    tmp_path: Path,
) -> None:
    records = tmp_path / "handled.jsonl"
    stream = interleaved_stream(messages=300, devices=10)
    failing = stream[0].device_id
    daemon = start_daemon(
        daemons,
        tmp_path,
        tuya_tenant,
        "dlq",
        recorder={"fail_devices": [failing], "fail_mode": "retryable"},
    )
    tuya_publisher.publish_all(stream[:150])
    raw = pulsar.Client(
        pulsar_broker.broker_url,
        authentication=pulsar_authentication(
            pulsar_broker.service_credentials.access_id,
            pulsar_broker.service_credentials.access_secret,
        ),
    )
    try:
        producer = raw.create_producer(tuya_tenant.topic())
        producer.send(b"not json at all", properties={"em": "aes_gcm"})
        producer.send(b'{"data": "AAAA", "protocol": 4}', properties={"em": "aes_ecb"})
        # Crafted: a field nested 1,000 deep for the sign check (sign_check: log, the default)
        # once stopped every instance; a document too deep for any handler to encode again.
        deep = b"[" * 1000 + b"]" * 1000
        producer.send(b'{"data": "AAAA", "sign": "00", "x": ' + deep + b"}", properties={})
        cipher = EcbCipher(aes_key(tuya_tenant.access_secret))
        too_deep = base64.b64encode(cipher.encrypt(b'{"devId":"d","x":' + deep + b"}")).decode()
        producer.send(orjson.dumps({"data": too_deep, "protocol": 4}), properties={})
    finally:
        raw.close()
    tuya_publisher.publish_all(stream[150:])
    expected_ok = [item for item in stream if item.device_id != failing]
    failing_count = len(stream) - len(expected_ok)
    wait_for(
        lambda: unique_handled(records) == len(expected_ok), 120, "healthy devices handled", daemon
    )
    wait_for_backlog_zero(pulsar_broker, tuya_tenant, timeout=60)
    assert daemon.stop() == 0, daemon.log_tail()
    dead = read_dead_letters(daemon.dead_letter_path)
    by_reason = defaultdict(int)
    for record in dead:
        by_reason[(record["stage"], record["reason"])] += 1
    assert by_reason == {
        ("handler", "recorder_refused"): failing_count,
        ("decode", "bad_envelope"): 1,
        ("decode", "bad_length"): 2,  # "AAAA" is 3 bytes: not a whole AES block
        ("decode", "too_deep"): 1,
    }
    assert all(r["attempts"] == 3 for r in dead if r["stage"] == "handler")
    assert tuya_tenant.access_secret not in daemon.log_path.read_text()


def test_sigkill_mid_stream_and_restart_loses_nothing(
    pulsar_broker: PulsarBroker,
    tuya_tenant: TuyaTenant,
    tuya_publisher: TuyaPublisher,
    daemons: list[DaemonProcess],
    tmp_path: Path,
) -> None:
    records = tmp_path / "handled.jsonl"
    stream = interleaved_stream(messages=3000, devices=40)
    subscribe_ahead(pulsar_broker, tuya_tenant)
    tuya_publisher.publish_all(stream)
    first = start_daemon(daemons, tmp_path, tuya_tenant, "first", recorder={"delay": 0.002})
    wait_for(lambda: handled(records) >= 800, 120, "progress before the kill", first)
    first.kill()
    killed_at = handled(records)
    assert killed_at < len(stream), "the kill came too late to prove anything"
    second = start_daemon(daemons, tmp_path, tuya_tenant, "second")
    wait_for(
        lambda: unique_handled(records) == len(stream),
        120,
        "everything handled after restart",
        second,
    )
    wait_for_backlog_zero(pulsar_broker, tuya_tenant)
    report = ledger_of(records, stream)
    print(f"SIGKILL at {killed_at} handled: lost={report.lost} duplicated={report.duplicated}")
    assert report.lost == 0
    assert report.out_of_order == 0
    # At-least-once: only messages handled but not yet acknowledged at the kill come again.
    assert report.duplicated <= first_in_flight_bound()


def first_in_flight_bound() -> int:
    return 1000  # max_in_flight: nothing beyond what was in flight can be handled twice


def test_sigterm_drains_in_flight_messages_and_acknowledges_them(
    pulsar_broker: PulsarBroker,
    tuya_tenant: TuyaTenant,
    tuya_publisher: TuyaPublisher,
    daemons: list[DaemonProcess],
    tmp_path: Path,
) -> None:
    records = tmp_path / "handled.jsonl"
    stream = interleaved_stream(messages=1500, devices=30)
    subscribe_ahead(pulsar_broker, tuya_tenant)
    tuya_publisher.publish_all(stream)
    first = start_daemon(
        daemons,
        tmp_path,
        tuya_tenant,
        "draining",
        recorder={"delay": 0.05},
        consumer={"max_in_flight": 100},
    )
    wait_for(lambda: handled(records) >= 100, 60, "some progress", first)
    first.signal(signal.SIGTERM)
    assert first.wait(60) == 0, first.log_tail()
    drained = handled(records)
    assert drained < len(stream)
    assert "stopped cleanly" in first.log_path.read_text()
    second = start_daemon(daemons, tmp_path, tuya_tenant, "successor")
    wait_for(lambda: unique_handled(records) == len(stream), 120, "the rest handled", second)
    wait_for_backlog_zero(pulsar_broker, tuya_tenant)
    report = ledger_of(records, stream)
    # Drained messages were acknowledged before exit: none comes back.
    assert (report.lost, report.duplicated, report.out_of_order) == (0, 0, 0), report


def test_broker_restart_while_consuming_resumes_and_loses_nothing(
    pulsar_broker: PulsarBroker,
    tuya_tenant: TuyaTenant,
    tuya_publisher: TuyaPublisher,
    daemons: list[DaemonProcess],
    tmp_path: Path,
) -> None:
    records = tmp_path / "handled.jsonl"
    stream = interleaved_stream(messages=2000, devices=40)
    subscribe_ahead(pulsar_broker, tuya_tenant)
    tuya_publisher.publish_all(stream)
    daemon = start_daemon(daemons, tmp_path, tuya_tenant, "survivor", recorder={"delay": 0.003})
    wait_for(lambda: handled(records) >= 300, 60, "progress before the restart", daemon)
    pulsar_broker.restart()
    wait_for(
        lambda: unique_handled(records) == len(stream), 180, "everything after the restart", daemon
    )
    wait_for_backlog_zero(pulsar_broker, tuya_tenant, timeout=60)
    log = daemon.log_path.read_text()
    assert "lost the connection to the message service" in log
    report = ledger_of(records, stream)
    print(f"broker restart: lost={report.lost} duplicated={report.duplicated}")
    assert report.lost == 0 and report.out_of_order == 0
    assert daemon.stop() == 0, daemon.log_tail()


def test_broker_restart_with_cumulative_acks_loses_nothing_and_later_traffic_clears_the_backlog(
    pulsar_broker: PulsarBroker,
    tuya_tenant: TuyaTenant,
    tuya_publisher: TuyaPublisher,
    daemons: list[DaemonProcess],
    tmp_path: Path,
) -> None:
    """The caveat the README gives for ``acknowledgement: cumulative``, pinned down.

    A broker restart may lose its last acknowledgements; pulsar-client then ignores the
    redelivery of what it acknowledged cumulatively, so part of the backlog may stay until a
    later message of the same partition is acknowledged. Nothing may be lost, and the next
    messages (from 200 devices: every partition) must clear the backlog.
    """
    records = tmp_path / "handled.jsonl"
    stream = interleaved_stream(messages=2200, devices=200)
    first, later = stream[:2000], stream[2000:]
    subscribe_ahead(pulsar_broker, tuya_tenant)
    tuya_publisher.publish_all(first)
    daemon = start_daemon(
        daemons, tmp_path, tuya_tenant, "cumulative", recorder={"delay": 0.003}, consumer=CUMULATIVE
    )
    wait_for(lambda: handled(records) >= 300, 60, "progress before the restart", daemon)
    pulsar_broker.restart()
    wait_for(lambda: unique_handled(records) == len(first), 180, "the first messages", daemon)
    tuya_publisher.publish_all(later)
    wait_for(lambda: unique_handled(records) == len(stream), 120, "the later messages", daemon)
    wait_for_backlog_zero(pulsar_broker, tuya_tenant, timeout=60)
    report = ledger_of(records, stream)
    print(f"broker restart, cumulative: lost={report.lost} duplicated={report.duplicated}")
    assert report.lost == 0 and report.out_of_order == 0
    assert daemon.stop() == 0, daemon.log_tail()


def test_two_instances_failover_takes_over_partitions_and_loses_nothing(
    pulsar_broker: PulsarBroker,
    tuya_tenant: TuyaTenant,
    tuya_publisher: TuyaPublisher,
    daemons: list[DaemonProcess],
    tmp_path: Path,
) -> None:
    records = tmp_path / "handled.jsonl"
    a = start_daemon(daemons, tmp_path, tuya_tenant, "instance-a", recorder={"delay": 0.003})
    b = start_daemon(daemons, tmp_path, tuya_tenant, "instance-b", recorder={"delay": 0.003})
    stream = interleaved_stream(messages=3000, devices=60)
    tuya_publisher.publish_all(stream)
    wait_for(lambda: handled(records) >= 600, 60, "both instances working", a)
    before = read_records(records)
    a_pid, b_pid = a.process.pid, b.process.pid  # type: ignore[union-attr]
    owners: dict[int, set[int]] = defaultdict(set)
    for line in before:
        owners[line["partition"]].add(line["pid"])
    # Failover: each partition has exactly one active consumer, and both instances own some.
    assert all(len(pids) == 1 for pids in owners.values()), owners
    assert {pid for pids in owners.values() for pid in pids} == {a_pid, b_pid}
    a.kill()
    wait_for(lambda: unique_handled(records) == len(stream), 180, "b to finish a's partitions", b)
    wait_for_backlog_zero(pulsar_broker, tuya_tenant)
    after = read_records(records)[len(before) :]
    taken_over = {line["partition"] for line in after if line["pid"] == b_pid} & {
        p for p, pids in owners.items() if pids == {a_pid}
    }
    assert taken_over, "b never handled a partition that a owned"
    report = ledger_of(records, stream)
    print(f"failover: lost={report.lost} duplicated={report.duplicated}")
    assert report.lost == 0 and report.out_of_order == 0
    assert b.stop() == 0


def test_wrong_secret_exits_69_and_says_what_to_check(
    pulsar_broker: PulsarBroker, tuya_tenant: TuyaTenant, tmp_path: Path
) -> None:
    from tests.pulsar.tenant import TuyaTenant as Tenant

    wrong = Tenant(
        type(tuya_tenant.credentials)(tuya_tenant.access_id, "W" * 32),
        tuya_tenant.broker_url,
        tuya_tenant.websocket_url,
    )
    daemon = DaemonProcess(
        tmp_path, wrong, "refused", tmp_path / "handled.jsonl", consumer={"operation_timeout": "5s"}
    )
    try:
        daemon.start()
        assert daemon.wait(90) == 69
    finally:
        daemon.close()
    log = daemon.log_path.read_text()
    assert "did not accept the subscription" in log
    for what_to_check in ("tuya.access_secret", "tuya.region", "event-test"):
        assert what_to_check in log
    assert "W" * 32 not in log


def test_unreachable_broker_exits_69_naming_the_url(
    tuya_tenant: TuyaTenant, tmp_path: Path
) -> None:
    from tests.pulsar.tenant import TuyaTenant as Tenant
    from tests.threaded_server import free_port

    nowhere = Tenant(tuya_tenant.credentials, f"pulsar://127.0.0.1:{free_port()}", "")
    daemon = DaemonProcess(
        tmp_path, nowhere, "unreachable", tmp_path / "h.jsonl", consumer={"operation_timeout": "3s"}
    )
    try:
        daemon.start()
        assert daemon.wait(60) == 69
    finally:
        daemon.close()
    log = daemon.log_path.read_text()
    assert "cannot reach the Tuya message service" in log and nowhere.broker_url in log
