"""Events as the enrichment step leaves them, for the handlers and rules that read the fields.

The step itself (catalogue look-up) is not under test here: :func:`enrich` sets exactly the
fields it sets (``Event.device``, each ``StatusItem.point``), from a real :class:`Device`.
"""

from __future__ import annotations

from typing import Any

from tuya_events.tuya.devices import UNKNOWN_DEVICE, DataPoint, Device, DeviceView, make_device
from tuya_events.tuya.events import Event, StatusReport

FETCHED_MS = 1_700_000_100_000
"""When :func:`thermometer`'s details and specification were fetched."""

TEMPERATURE = DataPoint("va_temperature", "Integer", "1", "℃", 1, -200, 600, 1)
HUMIDITY = DataPoint("va_humidity", "Integer", "2", "%", 0, 0, 100, 1, name="Cellar humidity")
BATTERY = DataPoint("battery_state", "Enum", "3", range=("low", "middle", "high"))


def thermometer(
    device_id: str = "dev-a",
    name: str | None = "Cellar",
    *,
    fetched_at_ms: int = FETCHED_MS,
    specification_fetched_at_ms: int = FETCHED_MS,
    points: tuple[DataPoint, ...] = (TEMPERATURE, HUMIDITY, BATTERY),
    **details: Any,
) -> Device:
    """A temperature and humidity sensor (category ``wsdcg``) as the catalogue knows it."""
    return make_device(
        {
            "id": device_id,
            "name": name,
            "product_id": "prod-th",
            "product_name": "T&H Sensor",
            "category": "wsdcg",
            "model": "TH01",
            "time_zone": "+01:00",
            "local_key": "never-stored-0123",  # dropped on the way in, like from the cloud
            **details,
        },
        list(points),
        fetched_at_ms,
        specification_fetched_at_ms,
    )


def enrich(event: Event, device: DeviceView = UNKNOWN_DEVICE) -> Event:
    """Set what enrichment sets: the device, and each status item's data point (if known)."""
    event.device = device
    if isinstance(event, StatusReport):
        for item in event.statuses:
            item.point = device.point(item.code, item.dp_id)
    return event
