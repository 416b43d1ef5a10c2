"""``PulsarSource`` in-process against the real broker: what a delivery carries, and the acks.

The source works on pulsar-client's binding objects (``_pulsar.Consumer``/``_pulsar.Message``)
rather than its Python wrappers, for speed. These tests pin that the installed pulsar-client
still exposes them, and that every field a handler, a log line or a dead letter reads comes out
the same as through the wrappers.
"""

from __future__ import annotations

import asyncio
import re
import time

import _pulsar
import pytest

from tests.pulsar.broker import PulsarBroker
from tests.pulsar.publisher import TuyaPublisher
from tests.pulsar.tenant import TuyaTenant
from tests.pulsar.traffic import interleaved_stream, sequence_of
from tests.support.sources import pulsar_source_for, receive
from tuya_events.delivery import Delivery
from tuya_events.transport.pulsar import PulsarDelivery
from tuya_events.tuya.codec import TuyaCodec

pytestmark = pytest.mark.broker

MESSAGES = 60
DEVICES = 6
MESSAGE_ID = re.compile(r"^\(\d+,\d+,\d+,-?\d+\)$")


@pytest.mark.parametrize("acknowledgement", ["individual", "cumulative"])
def test_deliveries_carry_every_field_and_acks_empty_the_backlog(
    pulsar_broker: PulsarBroker,
    tuya_tenant: TuyaTenant,
    tuya_publisher: TuyaPublisher,
    acknowledgement: str,
) -> None:
    codec = TuyaCodec(tuya_tenant.access_secret, sign_check="enforce")
    before_publishing_ms = int(time.time() * 1000) - 1000

    async def scenario() -> list[Delivery]:
        source = pulsar_source_for(tuya_tenant, acknowledgement)
        await source.start()
        try:
            # The fast path is in use: a pulsar-client that renamed its private attribute would
            # still work through the wrappers, but slower; this makes the rename visible.
            assert isinstance(source._binding, _pulsar.Consumer)
            tuya_publisher.publish_all(interleaved_stream(MESSAGES, DEVICES, seed=11))
            deliveries = await receive(source, MESSAGES)
            for delivery in deliveries:
                source.acknowledge(delivery)
            await asyncio.sleep(0)  # cumulative acks go out at the end of the loop's turn
            return deliveries
        finally:
            await source.close()

    deliveries = asyncio.run(scenario())
    assert len(deliveries) == MESSAGES
    seen: dict[str, list[int]] = {}
    for delivery in deliveries:
        assert isinstance(delivery, PulsarDelivery)
        assert isinstance(delivery.handle, _pulsar.Message)
        event = codec.decode(delivery.body, delivery.properties)  # body and `em` property
        device, seq = sequence_of(event.document)
        seen.setdefault(device, []).append(seq)
        assert delivery.key == device == event.device_id  # Tuya keys by device
        assert delivery.topic.startswith(tuya_tenant.topic() + "-partition-")
        assert delivery.topic.endswith(f"-partition-{delivery.partition}")
        assert 0 <= delivery.partition < 11
        assert MESSAGE_ID.match(delivery.message_id), delivery.message_id
        assert f",{delivery.partition}," in delivery.message_id
        assert delivery.redelivery_count == 0
        assert before_publishing_ms <= delivery.publish_time_ms <= time.time() * 1000
        assert delivery.dead_letter_id is None
    assert len({d.message_id for d in deliveries}) == MESSAGES
    assert all(seqs == sorted(seqs) for seqs in seen.values())  # per-device order
    assert pulsar_broker.settled_backlog(tuya_tenant, 0) == 0


def test_unacknowledged_deliveries_stay_in_the_backlog(
    pulsar_broker: PulsarBroker, tuya_tenant: TuyaTenant, tuya_publisher: TuyaPublisher
) -> None:
    async def scenario() -> int:
        source = pulsar_source_for(tuya_tenant)
        await source.start()
        try:
            tuya_publisher.publish_all(interleaved_stream(10, 2, seed=3))
            deliveries = await receive(source, 10)
            for delivery in deliveries[:4]:
                source.acknowledge(delivery)
            return len(deliveries)
        finally:
            await source.close()

    assert asyncio.run(scenario()) == 10
    assert pulsar_broker.settled_backlog(tuya_tenant, 6) == 6
