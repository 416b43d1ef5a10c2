"""Tuya's WebSocket API on the test broker: the same 1,000-message check, and a refused login.

The consumer URL, headers, frames and acks are exactly those of Tuya's WebSocket SDKs:
``ws/v2/consumer/persistent/{ACCESS_ID}/out/event/{ACCESS_ID}-sub?subscriptionType=Failover``,
``username``/``password`` headers, JSON frames with a base64 ``payload`` and ``properties``,
and an ack ``{"messageId": ...}`` per frame.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections import Counter

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.pulsar.broker import PulsarBroker
from tests.pulsar.publisher import TuyaPublisher
from tests.pulsar.tenant import TuyaTenant
from tests.pulsar.traffic import DeliveryLedger, Outgoing, interleaved_stream, sequence_of
from tuya_events.tuya.codec import TuyaCodec

pytestmark = pytest.mark.broker

RECEIVE_DEADLINE_S = 120.0


async def consume_while_publishing(
    tenant: TuyaTenant,
    publisher: TuyaPublisher,
    stream: list[Outgoing],
    ledger: DeliveryLedger,
    modes: Counter[str],
) -> int:
    """Subscribe, then publish from a thread while frames are decoded and acknowledged.

    Returns how many frames arrived after every published message had: duplicates.
    """
    codec = TuyaCodec(tenant.access_secret)
    async with connect(
        tenant.websocket_consumer_url(), additional_headers=tenant.websocket_headers(), proxy=None
    ) as websocket:
        publishing = asyncio.create_task(asyncio.to_thread(publisher.publish_all, stream))
        async with asyncio.timeout(RECEIVE_DEADLINE_S):
            while not ledger.complete:
                frame = json.loads(await websocket.recv())
                properties = frame.get("properties", {})
                event = codec.decode(base64.b64decode(frame["payload"]), properties)
                device, seq = sequence_of(event.document)
                assert event.device_id == device
                assert frame.get("key") == device  # the partition key survives the trip
                modes[properties["em"]] += 1
                ledger.record(device, seq)
                await websocket.send(json.dumps({"messageId": frame["messageId"]}))
        assert await publishing == len(stream)
        extra = 0
        try:
            async with asyncio.timeout(1.5):
                while True:
                    await websocket.recv()
                    extra += 1
        except TimeoutError:
            pass
        return extra


def test_thousand_messages_over_the_websocket_api(
    pulsar_broker: PulsarBroker, tuya_tenant: TuyaTenant, tuya_publisher: TuyaPublisher
) -> None:
    stream = interleaved_stream(messages=1000, devices=50, seed=11)
    ledger = DeliveryLedger(stream)
    modes: Counter[str] = Counter()
    coroutine = consume_while_publishing(tuya_tenant, tuya_publisher, stream, ledger, modes)
    assert asyncio.run(coroutine) == 0

    report = ledger.report()
    assert report.perfect, report
    assert modes == {"aes_ecb": 500, "aes_gcm": 500}
    deadline = time.monotonic() + 15
    while pulsar_broker.admin.backlog(tuya_tenant.topic(), tuya_tenant.subscription):
        assert time.monotonic() < deadline, "acknowledged frames are still in the backlog"
        time.sleep(0.2)


def test_wrong_password_gets_401_on_the_handshake(tuya_tenant: TuyaTenant) -> None:
    async def handshake(headers: dict[str, str]) -> int:
        try:
            async with connect(
                tuya_tenant.websocket_consumer_url(), additional_headers=headers, proxy=None
            ):
                return 101
        except InvalidStatus as refusal:
            return refusal.response.status_code

    good = tuya_tenant.websocket_headers()
    assert asyncio.run(handshake({**good, "password": good["password"][::-1]})) == 401
    assert asyncio.run(handshake({"username": good["username"]})) == 401
    assert asyncio.run(handshake(good)) == 101
