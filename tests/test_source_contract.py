"""The ``Source`` contract (tuya_events/transport/base.py), written once and held against every
source the daemon consumes from: ``MemorySource`` (the demo's, and the fast tests' broker) and
``PulsarSource`` on the real test broker, with individual and with cumulative acknowledgements,
and ``WebSocketSource`` on the broker's WebSocket API and on its loopback stand-in
(tests/support/websocket_api.py).

What the daemon relies on: what is published is received, byte for byte, each message under an
id of its own and in order per key; an acknowledged message is not delivered again after a
consumer reconnect (for the memory source: ``redeliver_unacknowledged()``; for Pulsar: the source
closed and another opened on the same subscription), an unacknowledged one is, under the same
id; ``receive_batch`` returns ``[]`` when nothing comes within its poll interval instead of
blocking; ``connected()`` is true once started and false once closed; ``close`` may be called
again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Protocol

import pulsar
import pytest

from tests.pulsar.broker import PulsarBroker
from tests.pulsar.tenant import TuyaTenant
from tests.support.producer import raw_producer
from tests.support.servers import serving
from tests.support.sources import pulsar_source_for, receive
from tests.support.websocket_api import LoopbackWebSocketApi, websocket_source_for
from tuya_events.delivery import Delivery
from tuya_events.transport.base import Source
from tuya_events.transport.memory import MemorySource

KEYS = ("vdev-a", "vdev-b", "vdev-c")
RECEIVE_DEADLINE_S = 30.0
QUIET_S = 1.0  # how long "nothing more comes" is watched for: several poll intervals


class Endpoint(Protocol):
    """One subscription and both of its ends: the service's side publishes, sources consume."""

    def open(self) -> Source:
        """A source on the subscription, not started."""
        ...

    def publish(self, body: bytes, properties: dict[str, str], key: str) -> None: ...

    async def reconnected(self, source: Source) -> Source:
        """What a consumer reconnect does; returns the (started) source consuming now."""
        ...


class MemoryEndpoint:
    def __init__(self) -> None:
        self.source = MemorySource(poll_interval=0.05)

    def open(self) -> Source:
        return self.source

    def publish(self, body: bytes, properties: dict[str, str], key: str) -> None:
        self.source.publish(body, properties, key=key)

    async def reconnected(self, source: Source) -> Source:
        assert source is self.source
        self.source.redeliver_unacknowledged()
        return source


class PulsarEndpoint:
    def __init__(self, tenant: TuyaTenant, producer: pulsar.Producer, acknowledgement: str):
        self.tenant = tenant
        self.producer = producer
        self.acknowledgement = acknowledgement
        self.opened = 0

    def open(self) -> Source:
        self.opened += 1
        name = f"contract-{self.opened}"
        return pulsar_source_for(self.tenant, self.acknowledgement, consumer_name=name)

    def publish(self, body: bytes, properties: dict[str, str], key: str) -> None:
        self.producer.send(body, properties=properties, partition_key=key)

    async def reconnected(self, source: Source) -> Source:
        await source.close()
        again = self.open()
        await again.start()
        return again


class WebSocketEndpoint:
    """The WebSocket source on a service's WebSocket API; ``send`` publishes on its topic."""

    def __init__(
        self,
        url: str,
        access_id: str,
        access_secret: str,
        send: Callable[[bytes, dict[str, str], str], object],
    ) -> None:
        self.url, self.access_id, self.access_secret = url, access_id, access_secret
        self.send = send
        self.opened = 0

    def open(self) -> Source:
        self.opened += 1
        name = f"contract-{self.opened}"
        return websocket_source_for(self.url, self.access_id, self.access_secret, name)

    def publish(self, body: bytes, properties: dict[str, str], key: str) -> None:
        self.send(body, properties, key)

    async def reconnected(self, source: Source) -> Source:
        await source.close()
        again = self.open()
        await again.start()
        return again


@pytest.fixture(
    params=[
        "memory",
        pytest.param("pulsar-individual", marks=pytest.mark.broker),
        pytest.param("pulsar-cumulative", marks=pytest.mark.broker),
        "websocket-loopback",
        pytest.param("websocket", marks=pytest.mark.broker),
    ]
)
def endpoint(request: pytest.FixtureRequest) -> Iterator[Endpoint]:
    if request.param == "memory":
        yield MemoryEndpoint()
        return
    if request.param == "websocket-loopback":
        with serving() as start:
            api = start(LoopbackWebSocketApi("contractaccessid0000", "s" * 32))
            yield WebSocketEndpoint(api.url, api.access_id, "s" * 32, api.publish)
        return
    broker: PulsarBroker = request.getfixturevalue("pulsar_broker")
    tenant: TuyaTenant = request.getfixturevalue("tuya_tenant")
    with raw_producer(broker, tenant.topic()) as producer:
        if request.param == "websocket":

            def send(body: bytes, properties: dict[str, str], key: str) -> None:
                producer.send(body, properties=properties, partition_key=key)

            url, access_id, secret = tenant.websocket_url, tenant.access_id, tenant.access_secret
            yield WebSocketEndpoint(url, access_id, secret, send)
            return
        yield PulsarEndpoint(tenant, producer, request.param.removeprefix("pulsar-"))


@contextlib.asynccontextmanager
async def started(endpoint: Endpoint) -> AsyncIterator[Source]:
    source = endpoint.open()
    await source.start()
    try:
        yield source
    finally:
        await source.close()


def message(n: int) -> tuple[bytes, dict[str, str], str]:
    """Message ``n``: a body that is not text, properties as Tuya sets them, a device key."""
    return b"\x00\xff" + f"body-{n}".encode(), {"em": "aes_ecb", "n": str(n)}, KEYS[n % 3]


def publish(endpoint: Endpoint, count: int) -> None:
    for n in range(count):
        endpoint.publish(*message(n))


def number(delivery: Delivery) -> int:
    return int(delivery.properties["n"])


async def settle_acknowledgements() -> None:
    await asyncio.sleep(0)  # cumulative acks go out at the end of the loop's turn


def test_what_is_published_is_received_once_each_in_order_per_key(endpoint: Endpoint) -> None:
    count = 12

    async def scenario() -> list[Delivery]:
        async with started(endpoint) as source:
            publish(endpoint, count)
            deliveries = await receive(source, count, RECEIVE_DEADLINE_S)
            more = await receive(source, 1, QUIET_S)
            for delivery in deliveries:
                source.acknowledge(delivery)
            await settle_acknowledgements()
            return deliveries + more

    deliveries = asyncio.run(scenario())
    assert sorted(map(number, deliveries)) == list(range(count))  # each once, nothing more
    for delivery in deliveries:
        body, properties, key = message(number(delivery))
        assert delivery.body == body
        assert delivery.properties == properties
        assert delivery.key == key
    assert len({delivery.message_id for delivery in deliveries}) == count
    for key in KEYS:
        of_key = [number(delivery) for delivery in deliveries if delivery.key == key]
        assert of_key == sorted(of_key) and of_key, key


def test_after_a_reconnect_only_the_unacknowledged_come_again_under_their_ids(
    endpoint: Endpoint,
) -> None:
    count = 10

    async def scenario() -> tuple[list[Delivery], list[Delivery], list[Delivery]]:
        source = endpoint.open()
        await source.start()
        try:
            publish(endpoint, count)
            first = await receive(source, count, RECEIVE_DEADLINE_S)
            for delivery in first:
                if number(delivery) % 2 == 0:
                    source.acknowledge(delivery)
            await settle_acknowledgements()
            source = await endpoint.reconnected(source)
            again = await receive(source, count // 2, RECEIVE_DEADLINE_S)
            more = await receive(source, 1, QUIET_S)
            return first, again, more
        finally:
            await source.close()

    first, again, more = asyncio.run(scenario())
    assert sorted(map(number, first)) == list(range(count))
    unacknowledged = {d.message_id: number(d) for d in first if number(d) % 2}
    assert {d.message_id: number(d) for d in again} == unacknowledged
    assert more == []  # the acknowledged ones did not come back
    for delivery in again:
        body, properties, key = message(number(delivery))
        assert (delivery.body, delivery.properties, delivery.key) == (body, properties, key)


def test_receive_batch_returns_empty_when_nothing_comes(endpoint: Endpoint) -> None:
    async def scenario() -> tuple[list[Delivery], float, list[Delivery], list[Delivery]]:
        async with started(endpoint) as source:
            began = time.monotonic()
            nothing_yet = await asyncio.wait_for(source.receive_batch(), 10)
            waited = time.monotonic() - began
            endpoint.publish(*message(0))
            [one] = await receive(source, 1, RECEIVE_DEADLINE_S)
            source.acknowledge(one)
            await settle_acknowledgements()
            nothing_more = await asyncio.wait_for(source.receive_batch(), 10)
            return nothing_yet, waited, [one], nothing_more

    nothing_yet, waited, [one], nothing_more = asyncio.run(scenario())
    assert nothing_yet == [] and nothing_more == []
    assert waited < 5, f"an empty poll took {waited:.1f} s"
    assert number(one) == 0


def test_connected_once_started_not_once_closed_and_close_is_idempotent(
    endpoint: Endpoint,
) -> None:
    async def scenario() -> list[bool]:
        source = endpoint.open()
        await source.start()
        states = [source.connected()]
        await source.close()
        states.append(source.connected())
        await source.close()  # again: the daemon closes after a failed start closed it
        states.append(source.connected())
        return states

    assert asyncio.run(scenario()) == [True, False, False]
