"""``type: log``: one structured log line per event.

With enrichment on and the device known, the line says which device (``device``: its name) and
shows ``statuses`` as the user reads them, ``{"va_temperature": "23.5 ℃"}``: scaled, with the
unit. The keys stay the codes (a rule or a grep written for them keeps working); the names users
gave the data points are the optional field ``names``. Enrichment off: the line is as before.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from tuya_events.delivery import Delivery
from tuya_events.handlers.base import BaseHandler, HandlerContext
from tuya_events.observability.logging import LEVELS, get_logger
from tuya_events.tuya.devices import Device
from tuya_events.tuya.events import DeviceEvent, Event, StatusItem, StatusReport

DEFAULT_FIELDS = (
    "kind",
    "device_id",
    "device",
    "product_key",
    "biz_code",
    "statuses",
    "data_id",
    "partition",
)


class LogOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    level: Literal["debug", "info", "warning", "error"] = "info"
    # Any of: kind, protocol, device_id, device, product_key, biz_code, data_id, timestamp_ms,
    # statuses, names, biz_data, document, message_id, partition, redelivery_count,
    # publish_time_ms. ``device`` and ``names`` need enrichment (else they are left out).
    fields: tuple[str, ...] = DEFAULT_FIELDS


def _shown(item: StatusItem) -> Any:
    """A value as the user means it: scaled, with its unit when the specification has one."""
    point = item.point
    if point is None:
        return item.value
    scaled = point.scaled(item.value)
    if point.unit is None or isinstance(scaled, bool) or not isinstance(scaled, (int, float, str)):
        return scaled
    return f"{scaled} {point.unit}"


def _statuses(event: StatusReport) -> dict[Any, Any]:
    if isinstance(event.device, Device):
        return {s.code: _shown(s) for s in event.statuses}
    return {s.code: s.value for s in event.statuses}


def _names(event: Event) -> dict[str, str] | None:
    """The data points' user-given names by code; None (left out) when none is named."""
    if not isinstance(event, StatusReport) or not isinstance(event.device, Device):
        return None
    names = {s.code: s.name for s in event.statuses if s.code is not None and s.name}
    return names or None


def _field(name: str, event: Event, delivery: Delivery) -> Any:
    if name == "statuses":
        return _statuses(event) if isinstance(event, StatusReport) else None
    if name == "device":
        return event.device.name if isinstance(event.device, Device) else None
    if name == "names":
        return _names(event)
    if name == "biz_data":
        return event.biz_data if isinstance(event, DeviceEvent) else None
    if name == "kind":
        return event.kind
    if hasattr(event, name):
        return getattr(event, name)
    return getattr(delivery, name, None)


class LogHandler(BaseHandler):
    Options = LogOptions

    def __init__(
        self, name: str, options: LogOptions, context: HandlerContext | None = None
    ) -> None:
        super().__init__(name)
        self.options = options
        self._level = LEVELS[options.level]
        self._log = get_logger("tuya_events.events")

    def handle(self, event: Event, delivery: Delivery) -> None:
        """Synchronous: a log line never waits, so the pipeline needs no task for it."""
        fields = {name: _field(name, event, delivery) for name in self.options.fields}
        self._log.log(self._level, "event", **{k: v for k, v in fields.items() if v is not None})
