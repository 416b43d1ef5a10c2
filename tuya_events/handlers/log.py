"""``type: log``: one structured log line per event."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from tuya_events.delivery import Delivery
from tuya_events.handlers.base import BaseHandler, HandlerContext
from tuya_events.observability.logging import LEVELS, get_logger
from tuya_events.tuya.events import DeviceEvent, Event, StatusReport

DEFAULT_FIELDS = (
    "kind",
    "device_id",
    "product_key",
    "biz_code",
    "statuses",
    "data_id",
    "partition",
)


class LogOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    level: Literal["debug", "info", "warning", "error"] = "info"
    # Any of: kind, protocol, device_id, product_key, biz_code, data_id, timestamp_ms, statuses,
    # biz_data, document, message_id, partition, redelivery_count, publish_time_ms.
    fields: tuple[str, ...] = DEFAULT_FIELDS


def _field(name: str, event: Event, delivery: Delivery) -> Any:
    if name == "statuses":
        return (
            {s.code: s.value for s in event.statuses} if isinstance(event, StatusReport) else None
        )
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
