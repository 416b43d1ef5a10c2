"""The ``pulsar`` forward handler against the real broker: Tuya in, your own topic out.

The target plays "your own cluster" with Pulsar's stock JWT authentication. Upstream messages
are acknowledged only after the forward was confirmed; a forward that cannot succeed ends in the
dead-letter store, never as a silent ack.
"""

from __future__ import annotations

import json
import uuid

import pulsar
import pytest

from tests.pulsar.broker import PulsarBroker
from tests.pulsar.traffic import DeliveryLedger, interleaved_stream
from tests.support.cli import read_dead_letters
from tests.support.daemon import BrokerRun
from tests.support.waiting import wait_for

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
    broker_run: BrokerRun,
) -> None:
    broker = broker_run.broker
    topic = f"persistent://public/default/forwarded-{uuid.uuid4().hex[:8]}"
    downstream = pulsar.Client(
        broker.broker_url,
        authentication=pulsar.AuthenticationToken(broker.make_token("downstream")),
    )
    try:
        consumer = downstream.subscribe(topic, "downstream-sub")
        daemon = broker_run.start("forwarder", handlers=[forward_handler(broker, topic)])
        stream = interleaved_stream(messages=500, devices=20)
        broker_run.publish(stream)
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
        broker_run.wait_backlog(0, 30, daemon)  # every upstream message acknowledged
        assert daemon.stop() == 0, daemon.log_tail()
    finally:
        downstream.close()


def test_a_forward_that_cannot_succeed_is_dead_lettered_not_acked_silently(
    broker_run: BrokerRun,
) -> None:
    broker = broker_run.broker
    missing = f"persistent://no-such-tenant-{uuid.uuid4().hex[:6]}/ns/topic"
    handler = {**forward_handler(broker, missing), "send_timeout": "2s"}
    daemon = broker_run.start("forward-fails", handlers=[handler])
    stream = interleaved_stream(messages=5, devices=5)
    broker_run.publish(stream)
    wait_for(
        lambda: len(read_dead_letters(daemon.dead_letter_path)) >= len(stream),
        90,
        "every message dead-lettered",
        daemon.log_tail,
        interval=0.5,
    )
    assert daemon.stop() == 0, daemon.log_tail()
    records = read_dead_letters(daemon.dead_letter_path)
    assert {(r["stage"], r["handler"]) for r in records} == {("handler", "forward")}
    assert broker.make_token("forwarder") not in daemon.log()
