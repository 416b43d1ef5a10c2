"""The test broker is a faithful Tuya message service: topics, auth1, and lossless delivery.

Smoke tests of tests/pulsar against the real broker: 1,000 Tuya-encrypted messages (half ECB,
half GCM) from 50 devices over the 11 partitions reach a Failover consumer that logs in with the
project's codec, each once and in per-device order; wrong credentials are refused.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections import Counter

import pulsar
import pytest

from tests.pulsar.broker import PulsarBroker
from tests.pulsar.credentials import TuyaCredentials
from tests.pulsar.publisher import TuyaPublisher, client_logger
from tests.pulsar.tenant import TuyaTenant
from tests.pulsar.traffic import DeliveryLedger, interleaved_stream, sequence_of
from tuya_events.tuya.auth import auth_failure_hint, pulsar_authentication
from tuya_events.tuya.codec import TuyaCodec

pytestmark = pytest.mark.broker

# The vector of docs/tuya-protocol.md: the Java provider must derive the same password.
VECTOR = TuyaCredentials("accessIdtesttesttest", "accessKeyesttesttesttesttesttest")
VECTOR_PASSWORD = "ad0139f768d194a4"
RECEIVE_DEADLINE_S = 120.0


def http_status(url: str, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_tenant_has_tuya_topics(pulsar_broker: PulsarBroker, tuya_tenant: TuyaTenant) -> None:
    assert pulsar_broker.admin.partitions(f"{tuya_tenant.access_id}/out/event") == 11
    assert pulsar_broker.admin.partitions(f"{tuya_tenant.access_id}/out/event-test") == 1
    assert tuya_tenant.topic() == f"persistent://{tuya_tenant.access_id}/out/event"
    assert tuya_tenant.subscription == f"{tuya_tenant.access_id}-sub"


def test_provider_checks_the_documented_password(pulsar_broker: PulsarBroker) -> None:
    pulsar_broker.register(VECTOR)
    url = f"{pulsar_broker.admin_url}/admin/v2/clusters"
    good = {"username": VECTOR.access_id, "password": VECTOR_PASSWORD}
    assert http_status(url, good) == 200
    assert http_status(url, {**good, "password": "ad0139f768d194a5"}) == 401
    assert http_status(url, {**good, "username": "accessIdtesttesttesx"}) == 401
    assert http_status(url, {}) == 401


def test_thousand_messages_over_the_binary_protocol(
    pulsar_broker: PulsarBroker, tuya_tenant: TuyaTenant, tuya_publisher: TuyaPublisher
) -> None:
    stream = interleaved_stream(messages=1000, devices=50)
    ledger = DeliveryLedger(stream)
    codec = TuyaCodec(tuya_tenant.access_secret)
    modes: Counter[str] = Counter()
    client = pulsar.Client(
        tuya_tenant.broker_url,
        authentication=pulsar_authentication(tuya_tenant.access_id, tuya_tenant.access_secret),
        logger=client_logger(),
    )
    try:
        consumer = client.subscribe(
            tuya_tenant.topic(),
            tuya_tenant.subscription,
            consumer_type=pulsar.ConsumerType.Failover,
        )
        assert tuya_publisher.publish_all(stream) == 1000
        deadline = time.monotonic() + RECEIVE_DEADLINE_S
        while not ledger.complete and time.monotonic() < deadline:
            message = consumer.receive(timeout_millis=int(RECEIVE_DEADLINE_S * 1000))
            event = codec.decode(message.data(), message.properties())
            device, seq = sequence_of(event.document)
            assert event.device_id == device
            assert event.protocol == 4
            modes[message.properties()["em"]] += 1
            ledger.record(device, seq, message.topic_name())
            consumer.acknowledge(message)
        with pytest.raises(pulsar.Timeout):  # nothing more: no duplicates waiting
            consumer.receive(timeout_millis=1500)
        consumer.close()
    finally:
        client.close()

    report = ledger.report()
    assert report.perfect, report
    assert len(report.partitions) == 11, sorted(report.partitions)
    assert modes == {"aes_ecb": 500, "aes_gcm": 500}
    assert pulsar_broker.settled_backlog(tuya_tenant, 0) == 0


def test_wrong_secret_is_refused_with_a_hint(
    pulsar_broker: PulsarBroker, tuya_tenant: TuyaTenant
) -> None:
    wrong_secret = tuya_tenant.access_secret[::-1]
    client = pulsar.Client(
        tuya_tenant.broker_url,
        authentication=pulsar_authentication(tuya_tenant.access_id, wrong_secret),
        operation_timeout_seconds=5,
        connection_timeout_ms=3000,
        logger=client_logger(),
    )
    try:
        with pytest.raises(pulsar.PulsarException):
            client.subscribe(
                tuya_tenant.topic(),
                tuya_tenant.subscription,
                consumer_type=pulsar.ConsumerType.Failover,
            )
    finally:
        client.close()
    assert f"wrong password for access id {tuya_tenant.access_id}" in pulsar_broker.log_tail(400)

    hint = auth_failure_hint(tuya_tenant.access_id, tuya_tenant.broker_url, tuya_tenant.topic())
    assert tuya_tenant.access_id in hint
    for what_to_check in ("access_secret", "region", "event-test"):
        assert what_to_check in hint


def test_unknown_access_id_is_refused(pulsar_broker: PulsarBroker, tuya_tenant: TuyaTenant) -> None:
    stranger = TuyaCredentials.generate()
    client = pulsar.Client(
        tuya_tenant.broker_url,
        authentication=pulsar_authentication(stranger.access_id, stranger.access_secret),
        operation_timeout_seconds=5,
        connection_timeout_ms=3000,
        logger=client_logger(),
    )
    try:
        with pytest.raises(pulsar.PulsarException):
            client.subscribe(tuya_tenant.topic(), tuya_tenant.subscription)
    finally:
        client.close()
    assert f"unknown access id {stranger.access_id}" in pulsar_broker.log_tail(400)


def test_restart_keeps_ports_data_and_unacknowledged_messages(
    pulsar_broker: PulsarBroker, tuya_tenant: TuyaTenant, tuya_publisher: TuyaPublisher
) -> None:
    """What the daemon's tests rely on: clients ride out stop()/start(), nothing is lost."""
    stream = interleaved_stream(messages=400, devices=20, seed=5)
    ledger = DeliveryLedger(stream)
    codec = TuyaCodec(tuya_tenant.access_secret)
    urls = (pulsar_broker.broker_url, pulsar_broker.admin_url, pulsar_broker.websocket_url)
    client = pulsar.Client(
        tuya_tenant.broker_url, authentication=tuya_tenant.authentication(), logger=client_logger()
    )

    def receive(count: int) -> None:
        for _ in range(count):
            message = consumer.receive(timeout_millis=int(RECEIVE_DEADLINE_S * 1000))
            device, seq = sequence_of(codec.decode(message.data(), message.properties()).document)
            ledger.record(device, seq)
            consumer.acknowledge(message)

    try:
        consumer = client.subscribe(
            tuya_tenant.topic(),
            tuya_tenant.subscription,
            consumer_type=pulsar.ConsumerType.Failover,
        )
        tuya_publisher.publish_all(stream[:200])
        receive(100)  # 100 published but not yet consumed, across the restart
        pulsar_broker.restart()
        assert (
            pulsar_broker.broker_url,
            pulsar_broker.admin_url,
            pulsar_broker.websocket_url,
        ) == urls
        tuya_publisher.publish_all(stream[200:])  # the same producer, reconnected
        deadline = time.monotonic() + RECEIVE_DEADLINE_S
        while not ledger.complete and time.monotonic() < deadline:
            receive(1)
        consumer.close()
    finally:
        client.close()

    report = ledger.report()
    # At-least-once: acks still in flight at the stop may be redelivered, never lost or reordered.
    assert (report.lost, report.out_of_order) == (0, 0), report
    assert report.duplicated <= 100, report
