"""The ``pulsar`` forward handler against the real broker: Tuya in, your own topic out.

The target plays "your own cluster" with Pulsar's stock JWT authentication. Upstream messages
are acknowledged only after the forward was confirmed; a forward that cannot succeed ends in the
dead-letter store, never as a silent ack.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pulsar
import pytest

from tests.daemon_process import DaemonProcess
from tests.deadletter_support import read_dead_letters
from tests.pulsar.broker import PulsarBroker
from tests.pulsar.publisher import TuyaPublisher
from tests.pulsar.tenant import TuyaTenant
from tests.pulsar.traffic import DeliveryLedger, interleaved_stream

pytestmark = pytest.mark.broker


def forward_handler(broker: PulsarBroker, topic: str) -> dict:
    return {
        "type": "pulsar",
        "name": "forward",
        "service_url": broker.broker_url,
        "topic": topic,
        "token": broker.make_token("forwarder"),
    }


def test_events_are_forwarded_keyed_by_device_in_order_then_acked(
    pulsar_broker: PulsarBroker,
    tuya_tenant: TuyaTenant,
    tuya_publisher: TuyaPublisher,
    tmp_path: Path,
) -> None:
    topic = f"persistent://public/default/forwarded-{uuid.uuid4().hex[:8]}"
    downstream = pulsar.Client(
        pulsar_broker.broker_url,
        authentication=pulsar.AuthenticationToken(pulsar_broker.make_token("downstream")),
    )
    daemon = DaemonProcess(
        tmp_path,
        tuya_tenant,
        "forwarder",
        tmp_path / "handled.jsonl",
        handlers=[forward_handler(pulsar_broker, topic)],
    )
    try:
        consumer = downstream.subscribe(topic, "downstream-sub")
        daemon.start().wait_ready()
        stream = interleaved_stream(messages=500, devices=20)
        tuya_publisher.publish_all(stream)
        ledger = DeliveryLedger(stream)
        keys_ok = True
        for _ in stream:
            message = consumer.receive(timeout_millis=60_000)
            payload = json.loads(message.data())
            event = payload["event"]
            keys_ok &= message.partition_key() == event["device_id"]
            assert message.properties()["type"] == "tuya.status" == payload["type"]
            ledger.record(event["device_id"], event["statuses"][0]["value"])
            consumer.acknowledge(message)
        report = ledger.report()
        assert report.perfect, report
        assert keys_ok
        deadline = time.monotonic() + 30
        while pulsar_broker.admin.backlog(tuya_tenant.topic(), tuya_tenant.subscription):
            assert time.monotonic() < deadline, "upstream messages were not all acknowledged"
            time.sleep(0.2)
        assert daemon.stop() == 0, daemon.log_tail()
    finally:
        daemon.close()
        downstream.close()


def test_a_forward_that_cannot_succeed_is_dead_lettered_not_acked_silently(
    pulsar_broker: PulsarBroker,
    tuya_tenant: TuyaTenant,
    tuya_publisher: TuyaPublisher,
    tmp_path: Path,
) -> None:
    missing = f"persistent://no-such-tenant-{uuid.uuid4().hex[:6]}/ns/topic"
    handler = {**forward_handler(pulsar_broker, missing), "send_timeout": "2s"}
    daemon = DaemonProcess(
        tmp_path, tuya_tenant, "forward-fails", tmp_path / "handled.jsonl", handlers=[handler]
    )
    try:
        daemon.start().wait_ready()
        stream = interleaved_stream(messages=5, devices=5)
        tuya_publisher.publish_all(stream)
        deadline = time.monotonic() + 90
        while len(read_dead_letters(daemon.dead_letter_path)) < len(stream):
            assert time.monotonic() < deadline, daemon.log_tail()
            time.sleep(0.5)
        assert daemon.stop() == 0, daemon.log_tail()
    finally:
        daemon.close()
    records = read_dead_letters(daemon.dead_letter_path)
    assert {(r["stage"], r["handler"]) for r in records} == {("handler", "forward")}
    assert pulsar_broker.make_token("forwarder") not in daemon.log_path.read_text()
