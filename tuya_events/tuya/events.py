"""Typed events built from decrypted Tuya documents.

Tolerant by design: unknown fields are kept in ``document``, unknown protocols and bizCodes become
:class:`GenericEvent`, timestamps may be seconds or milliseconds, numbers or strings. Only a
document that is not a JSON object is refused.

One event object is shared by every handler a message goes to, so handlers treat it as read-only.
The classes are not ``frozen``: a frozen dataclass sets each field through ``object.__setattr__``,
which made building a status report with its items 1-2 us slower per message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from tuya_events.tuya.devices import DataPoint, DeviceView
from tuya_events.tuya.errors import BAD_EVENT, DecodeError

STATUS_PROTOCOL = 4
DEVICE_EVENT_PROTOCOL = 20
PROPERTY_MESSAGE = "devicePropertyMessage"

# Below this a timestamp is taken as seconds: 1e11 ms is 1973, 1e11 s is the year 5138.
_SECONDS_LIMIT = 100_000_000_000
# Past the end of year 9999 (in ms) a time is not a time: treated as missing, like a bad one, so
# no absurd value (1e300) becomes a huge integer that handlers and databases refuse.
_MAX_MS = 253_402_300_799_999


def timestamp_ms(value: Any) -> int | None:
    """A Tuya ``t``/``ts``/``time`` as integer milliseconds, or None when it is not a time."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if not isinstance(value, (int, float)) or value != value or value <= 0:
        return None
    millis = value * 1000 if value < _SECONDS_LIMIT else value
    if millis > _MAX_MS:  # also infinity
        return None
    return int(millis)


def _text(value: Any) -> str | None:
    if isinstance(value, str):
        return value or None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


@dataclass(slots=True)
class StatusItem:
    """One data point of a status report; ``value`` exactly as Tuya sent it.

    ``point`` is its specification once the event is enriched (None: not known); ``name``,
    ``unit`` and ``scaled`` are read from it on demand, so enriching costs one assignment.
    """

    code: str | None
    value: Any
    t_ms: int | None = None
    dp_id: str | None = None
    point: DataPoint | None = None

    @property
    def name(self) -> str | None:
        return self.point.name if self.point is not None else None

    @property
    def unit(self) -> str | None:
        return self.point.unit if self.point is not None else None

    @property
    def scaled(self) -> Any:
        """The value in the unit (``value / 10**scale`` for Integers); None when not known."""
        return self.point.scaled(self.value) if self.point is not None else None

    def as_dict(self, enriched: bool = False) -> dict[str, Any]:
        out = {"code": self.code, "value": self.value, "t": self.t_ms, "dp_id": self.dp_id}
        if enriched:
            point = self.point
            if point is None:
                out.update(name=None, unit=None, scaled=None)
            else:
                out.update(name=point.name, unit=point.unit, scaled=point.scaled(self.value))
        return out


@dataclass(slots=True)
class Event:
    """What every event has; ``document`` is the decrypted JSON object, unchanged."""

    kind: ClassVar[str] = "generic"

    protocol: int | None
    document: dict[str, Any] = field(repr=False)
    device_id: str | None = None
    product_key: str | None = None
    biz_code: str | None = None
    data_id: str | None = None
    timestamp_ms: int | None = None
    envelope_t_ms: int | None = None
    # Set by enrichment (None: enrichment is off): the catalogue's device, or UNKNOWN_DEVICE.
    device: DeviceView | None = None

    def as_dict(self) -> dict[str, Any]:
        out = {
            "kind": self.kind,
            "protocol": self.protocol,
            "device_id": self.device_id,
            "product_key": self.product_key,
            "biz_code": self.biz_code,
            "data_id": self.data_id,
            "timestamp_ms": self.timestamp_ms,
            "envelope_t_ms": self.envelope_t_ms,
            **self._details(),
            "document": self.document,
        }
        if self.device is not None:
            out["device"] = self.device.event_view()
        return out

    def _details(self) -> dict[str, Any]:
        return {}


@dataclass(slots=True)
class GenericEvent(Event):
    """An unknown protocol or bizCode: kept whole so no message is dropped."""

    kind: ClassVar[str] = "generic"


@dataclass(slots=True)
class StatusReport(Event):
    """Protocol 4 (and IoT Core ``devicePropertyMessage``): data-point values of one device."""

    kind: ClassVar[str] = "status"
    statuses: tuple[StatusItem, ...] = ()

    def _details(self) -> dict[str, Any]:
        enriched = self.device is not None
        return {"statuses": [item.as_dict(enriched) for item in self.statuses]}


@dataclass(slots=True)
class DeviceEvent(Event):
    """Protocol 20: online/offline, renames, binding, upgrades, ... keyed by ``biz_code``."""

    kind: ClassVar[str] = "device_event"
    biz_data: dict[str, Any] = field(default_factory=dict)

    def _details(self) -> dict[str, Any]:
        return {"biz_data": self.biz_data}


def _status_item(raw: Any) -> StatusItem:
    if not isinstance(raw, dict):
        return StatusItem(None, raw)
    dp_id = None
    for key in raw:
        if key.isdigit():
            dp_id = key
            break
    if dp_id is None:
        dp_id = _text(raw.get("dpId"))
    code = raw.get("code")
    t = raw.get("t")
    if t is None:
        t = raw.get("time")
    # Whole milliseconds are the common case: skip the general parser for them.
    t_ms = t if type(t) is int and _SECONDS_LIMIT <= t <= _MAX_MS else timestamp_ms(t)
    return StatusItem(code if isinstance(code, str) else None, raw.get("value"), t_ms, dp_id)


def _status_items(raw_items: list[Any]) -> tuple[tuple[StatusItem, ...], int | None]:
    """The items, and the newest of their timestamps (one pass)."""
    items = []
    latest: int | None = None
    for raw in raw_items:
        item = _status_item(raw)
        items.append(item)
        if item.t_ms is not None and (latest is None or item.t_ms > latest):
            latest = item.t_ms
    return tuple(items), latest


def build_event(document: Any, protocol: int | None, envelope_t_ms: int | None = None) -> Event:
    """Turn a decrypted document into the most specific event type that fits it."""
    if not isinstance(document, dict):
        kind = type(document).__name__
        raise DecodeError(BAD_EVENT, f"decrypted JSON is a {kind}, not an object")
    biz_data = document.get("bizData")
    if not isinstance(biz_data, dict):
        biz_data = None
    device_id = _text(document.get("devId"))
    if device_id is None and biz_data is not None:
        device_id = _text(biz_data.get("devId"))
    biz_code = document.get("bizCode")
    if not isinstance(biz_code, str):
        biz_code = None
    product_key = _text(document.get("productKey"))
    data_id = _text(document.get("dataId"))
    status = document.get("status")
    if protocol == STATUS_PROTOCOL and isinstance(status, list):
        items, latest = _status_items(status)
        return StatusReport(
            protocol, document, device_id, product_key, biz_code, data_id,
            latest or envelope_t_ms, envelope_t_ms, None, items,
        )  # fmt: skip
    if biz_code == PROPERTY_MESSAGE and biz_data is not None:
        properties = biz_data.get("properties")
        items, latest = _status_items(properties if isinstance(properties, list) else [])
        return StatusReport(
            protocol, document, device_id, product_key, biz_code, data_id,
            latest or envelope_t_ms, envelope_t_ms, None, items,
        )  # fmt: skip
    event_time = timestamp_ms(document.get("ts", document.get("t"))) or envelope_t_ms
    if protocol == DEVICE_EVENT_PROTOCOL and biz_code is not None:
        return DeviceEvent(
            protocol, document, device_id, product_key, biz_code, data_id,
            event_time, envelope_t_ms, None, biz_data or {},
        )  # fmt: skip
    return GenericEvent(
        protocol, document, device_id, product_key, biz_code, data_id, event_time, envelope_t_ms
    )
