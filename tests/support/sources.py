"""Sources driven in-process by a test: a PulsarSource on a test tenant, and receiving."""

from __future__ import annotations

import asyncio
import time

from tests.pulsar.tenant import TuyaTenant
from tuya_events.config.loader import settings_from_mapping
from tuya_events.delivery import Delivery
from tuya_events.transport.base import Source
from tuya_events.transport.pulsar import PulsarSource


def pulsar_source_for(
    tenant: TuyaTenant, acknowledgement: str = "individual", consumer_name: str = "source-test"
) -> PulsarSource:
    """A PulsarSource (not started) on the tenant's topic and subscription, as the daemon
    configured for that tenant would build it."""
    settings = settings_from_mapping(
        {
            "tuya": {
                "access_id": tenant.access_id,
                "access_secret": tenant.access_secret,
                "pulsar_url": tenant.broker_url,
            },
            "consumer": {"acknowledgement": acknowledgement},
            "handlers": [{"type": "log"}],
        }
    )
    return PulsarSource(settings, consumer_name=consumer_name)


POLL_SLACK_S = 5.0  # how much longer than the deadline one receive_batch may take


async def receive(source: Source, count: int, deadline_s: float = 60.0) -> list[Delivery]:
    """Batches from ``source`` until ``count`` deliveries came or ``deadline_s`` passed; a
    ``receive_batch`` that blocks past the deadline (it should return [] after its poll
    interval) raises TimeoutError instead of hanging the test."""
    received: list[Delivery] = []
    deadline = time.monotonic() + deadline_s
    while len(received) < count and (left := deadline - time.monotonic()) > 0:
        received.extend(await asyncio.wait_for(source.receive_batch(), left + POLL_SLACK_S))
    return received
