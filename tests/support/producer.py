"""Sending to the test broker byte for byte, as Tuya's service would (or a broken one)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pulsar

from tests.pulsar.broker import PulsarBroker
from tests.pulsar.publisher import client_logger
from tuya_events.tuya.auth import pulsar_authentication


@contextlib.contextmanager
def raw_producer(broker: PulsarBroker, topic: str) -> Iterator[pulsar.Producer]:
    """A producer on ``topic`` logged in with the broker's service credentials, sending bodies
    and properties exactly as given (no encryption, no envelope); closed on the way out."""
    client = pulsar.Client(
        broker.broker_url,
        authentication=pulsar_authentication(
            broker.service_credentials.access_id, broker.service_credentials.access_secret
        ),
        logger=client_logger(),
    )
    try:
        yield client.create_producer(topic)
    finally:
        client.close()
