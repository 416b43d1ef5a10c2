"""The JSON form of an event that leaves the daemon (webhook bodies, forwarded messages).

One shape everywhere, so a receiver written for the webhook also reads the Pulsar forward.
``id`` is stable across redeliveries (Tuya's ``dataId`` when there is one), so receivers can
deduplicate on it.
"""

from __future__ import annotations

from typing import Any

from tuya_events.delivery import Delivery
from tuya_events.tuya.events import Event

SCHEMA_VERSION = 1


def event_id(event: Event, delivery: Delivery) -> str:
    """Stable id: Tuya's dataId, else the broker's message id."""
    return event.data_id or delivery.message_id


def event_payload(event: Event, delivery: Delivery) -> dict[str, Any]:
    return {
        "id": event_id(event, delivery),
        "type": f"tuya.{event.kind}",
        "schema": SCHEMA_VERSION,
        "event": event.as_dict(),
        "delivery": {
            "message_id": delivery.message_id,
            "topic": delivery.topic,
            "partition": delivery.partition,
            "publish_time_ms": delivery.publish_time_ms,
            "redelivery_count": delivery.redelivery_count,
        },
    }
