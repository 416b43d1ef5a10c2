"""Typed events built from decrypted Tuya documents.

Tolerant by design: unknown fields are kept in ``document``, unknown protocols and bizCodes become
:class:`GenericEvent`, timestamps may be seconds or milliseconds, numbers or strings. Only a
document that is not a JSON object is refused.

The families (docs/events.md): status reports (protocol 4, IoT Core ``devicePropertyMessage``);
device events (protocol 20, and the IoT Core bizCodes of :data:`EVENT_NAMES` whatever their
protocol), each with ``event_name``, one vocabulary for both families; notices (protocol 10000).
Values that are JSON inside base64 or a string are decoded only when asked for (or for the rare
families that need it), within :data:`MAX_EMBEDDED_CHARS`, so ordinary messages pay nothing.

One event object is shared by every handler a message goes to, so handlers treat it as read-only.
The classes are not ``frozen``: a frozen dataclass sets each field through ``object.__setattr__``,
which made building a status report with its items 1-2 us slower per message.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Any, ClassVar

import orjson

from tuya_events.tuya.devices import DataPoint, DeviceView
from tuya_events.tuya.errors import BAD_EVENT, DecodeError

STATUS_PROTOCOL = 4
DEVICE_EVENT_PROTOCOL = 20
NOTICE_PROTOCOL = 10000
PROPERTY_MESSAGE = "devicePropertyMessage"
NOTICE_BIZ_CODE = "HighPriorityNotice"
EVENT_NOTIFY = "event_notify"
DOORBELL_TYPES = frozenset({"doorbell", "ac_doorbell"})

# The normalized ``event_name`` of a device event's bizCode: legacy (protocol 20) and IoT Core
# (1000/1001/1002) codes for the same thing share one name. Table and reasons in docs/events.md.
EVENT_NAMES: dict[str, str] = {
    "online": "online",
    "deviceOnline": "online",
    "offline": "offline",
    "deviceOffline": "offline",
    "nameUpdate": "renamed",
    "deviceNameUpdate": "renamed",
    "dpNameUpdate": "dp_renamed",
    "bindUser": "bound",
    "deviceBindSpace": "bound",
    "deviceUnbindSpace": "unbound",
    "delete": "deleted",
    "deviceTransfer": "transferred",
    "deviceFreeze": "frozen",
    "deviceUnFreeze": "unfrozen",
    "upgradeStatus": "ota_progress",
    "upgradeProcess": "ota_progress",
    "deviceOtaProgress": "ota_progress",
    "share": "shared",
    "deviceSignal": "signal",
    "deviceDpCommand": "dp_command",
    "deviceEventMessage": "model_event",
    "deviceActionResponseMessage": "action_response",
    "deviceQueryPropertyMessage": "query_response",
    EVENT_NOTIFY: "notify",  # "doorbell" when its etype is one of DOORBELL_TYPES
}
DOORBELL = "doorbell"
EVENT_NAME_VOCABULARY = frozenset(EVENT_NAMES.values()) | {DOORBELL}

# Where an event came from: Tuya's live traffic, or the daemon's resync (the document's
# top-level MARKER object says ``"source": "resync"``).
LIVE = "live"
RESYNC = "resync"
SOURCES = frozenset({LIVE, RESYNC})
MARKER = "_tuya_events"

# JSON inside a value (base64 or text) is decoded only up to this size, nesting and number of
# objects and arrays: far more than camera pictures and notices need (a few hundred bytes, a few
# containers), and a bound on what crafted input costs (tens of microseconds at worst). The depth
# leaves room for the levels a handler's payload adds around it (orjson encodes at most 254).
MAX_EMBEDDED_CHARS = 16_384
MAX_EMBEDDED_DEPTH = 32
MAX_EMBEDDED_CONTAINERS = 128
# What base64 of '{"', '{ ', '{\n', '[{', '["', '[ ', '[[' starts with: other strings are not tried.
_BASE64_JSON_PREFIXES = ("ey", "ew", "W3", "Wy", "W1")

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

    @property
    def decoded(self) -> dict[str, Any] | list[Any] | None:
        """The JSON document a base64 value holds (camera ``movement_detect_pic``, ...), or None.

        Computed on each access, not when the report is built: most values are not base64, and
        the check that says so is two comparisons."""
        return base64_json(self.value)

    def as_dict(self, enriched: bool = False) -> dict[str, Any]:
        out = {"code": self.code, "value": self.value, "t": self.t_ms, "dp_id": self.dp_id}
        decoded = base64_json(self.value)
        if decoded is not None:
            out["decoded"] = decoded
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
    source: str = LIVE  # RESYNC for the daemon's own resync events

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
        if self.source != LIVE:
            out["source"] = self.source
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


@dataclass(slots=True, frozen=True)
class Notification:
    """What an ``event_notify`` says (doorbells): ``etype``, ``edata`` as sent, and ``decoded``,
    the JSON document ``edata`` holds (base64 or text), when it holds one."""

    type: str | None
    data: Any
    decoded: dict[str, Any] | list[Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        out = {"type": self.type, "data": self.data}
        if self.decoded is not None:
            out["decoded"] = self.decoded
        return out


@dataclass(slots=True)
class DeviceEvent(Event):
    """Online/offline, renames, binding, upgrades, ... of one device, legacy (protocol 20) or
    IoT Core (1000-1002): ``biz_code`` as Tuya sent it, ``event_name`` the same thing in one
    vocabulary for both (:data:`EVENT_NAMES`; None for a bizCode it does not name)."""

    kind: ClassVar[str] = "device_event"
    biz_data: dict[str, Any] = field(default_factory=dict)
    event_name: str | None = None
    notification: Notification | None = None  # for ``event_notify`` only

    def _details(self) -> dict[str, Any]:
        out: dict[str, Any] = {"biz_data": self.biz_data, "event_name": self.event_name}
        if self.notification is not None:
            out["notification"] = self.notification.as_dict()
        return out


@dataclass(slots=True)
class NoticeEvent(Event):
    """Protocol 10000 on the notice topic: Tuya's high-priority notices, such as
    ``pulsar_backlog_notice`` (the subscription's backlog passed the console's threshold).

    ``event_data`` is ``eventData`` parsed (Tuya sends a JSON document in a string), None when it
    does not parse; the string itself stays in ``document``."""

    kind: ClassVar[str] = "notice"
    event_type: str | None = None
    event_data: dict[str, Any] | None = None

    def _details(self) -> dict[str, Any]:
        return {"event_type": self.event_type, "event_data": self.event_data}


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether containers nest more than ``limit`` levels: one level at a time, no recursion."""
    level = [value]
    for _ in range(limit):
        level = [
            child
            for item in level
            for child in (item.values() if type(item) is dict else item)
            if type(child) is dict or type(child) is list
        ]
        if not level:
            return False
    return True


def embedded_json(text: str | bytes) -> dict[str, Any] | list[Any] | None:
    """A JSON object or array held in a value, within the bounds; else None."""
    if len(text) > MAX_EMBEDDED_CHARS:
        return None
    # Counted before parsing (brackets in strings count too: an over-estimate): few brackets
    # cannot nest deeper than the limit, too many is not a picture or a notice.
    if isinstance(text, str):
        brackets = text.count("{") + text.count("[")
    else:
        brackets = text.count(b"{") + text.count(b"[")
    if brackets > MAX_EMBEDDED_CONTAINERS:
        return None
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(value, (dict, list)):
        return None
    if brackets > MAX_EMBEDDED_DEPTH and _deeper_than(value, MAX_EMBEDDED_DEPTH):
        return None
    return value


def base64_json(value: Any) -> dict[str, Any] | list[Any] | None:
    """The JSON object or array a base64 string holds, or None (most values: two comparisons)."""
    if type(value) is not str or not value.startswith(_BASE64_JSON_PREFIXES):
        return None
    if len(value) > MAX_EMBEDDED_CHARS:
        return None
    try:
        raw = base64.b64decode(value + "=" * (-len(value) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None
    return embedded_json(raw)


def _json_value(value: Any) -> dict[str, Any] | list[Any] | None:
    """JSON held in a string, as text or as base64."""
    if not isinstance(value, str):
        return None
    if value[:1] in ("{", "["):
        return embedded_json(value)
    return base64_json(value)


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


def _source(marker: Any) -> str:
    """RESYNC when the daemon's marker object says so; anything else is live traffic."""
    if isinstance(marker, dict) and marker.get("source") == RESYNC:
        return RESYNC
    return LIVE


def _notification(biz_data: dict[str, Any] | None, document: dict[str, Any]) -> Notification:
    """``etype``/``edata`` from bizData (as seen), else from the top level (tolerated)."""
    holder = biz_data if biz_data is not None and "etype" in biz_data else document
    etype = holder.get("etype")
    data = holder.get("edata")
    return Notification(etype if isinstance(etype, str) else None, data, _json_value(data))


def _notice(
    document: dict[str, Any], biz_data: dict[str, Any] | None
) -> tuple[str | None, dict[str, Any] | None]:
    """eventType and eventData parsed, from bizData (Tuya's sample), else the top level."""
    holder = biz_data if biz_data is not None else document
    if "eventType" not in holder and "eventData" not in holder:
        holder = document
    event_type = holder.get("eventType")
    raw = holder.get("eventData")
    event_data = raw if isinstance(raw, dict) else None
    if isinstance(raw, str):
        parsed = embedded_json(raw)
        event_data = parsed if isinstance(parsed, dict) else None
    return event_type if isinstance(event_type, str) else None, event_data


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
    marker = document.get(MARKER)
    source = LIVE if marker is None else _source(marker)
    status = document.get("status")
    if protocol == STATUS_PROTOCOL and isinstance(status, list):
        items, latest = _status_items(status)
        return StatusReport(
            protocol, document, device_id, product_key, biz_code, data_id,
            latest or envelope_t_ms, envelope_t_ms, None, source, items,
        )  # fmt: skip
    if biz_data is not None:  # IoT Core keeps these in bizData (productId is the product key)
        if product_key is None:
            product_key = _text(biz_data.get("productKey")) or _text(biz_data.get("productId"))
        if data_id is None and "dataId" in biz_data:
            data_id = _text(biz_data["dataId"])
        if biz_code == PROPERTY_MESSAGE:
            properties = biz_data.get("properties")
            items, latest = _status_items(properties if isinstance(properties, list) else [])
            return StatusReport(
                protocol, document, device_id, product_key, biz_code, data_id,
                latest or envelope_t_ms, envelope_t_ms, None, source, items,
            )  # fmt: skip
    event_time = timestamp_ms(document.get("ts", document.get("t"))) or envelope_t_ms
    if biz_code is not None:
        event_name = EVENT_NAMES.get(biz_code)
        if event_name is not None or (
            protocol == DEVICE_EVENT_PROTOCOL and biz_code != NOTICE_BIZ_CODE
        ):
            notification = None
            if biz_code == EVENT_NOTIFY:
                notification = _notification(biz_data, document)
                if notification.type in DOORBELL_TYPES:
                    event_name = DOORBELL
            return DeviceEvent(
                protocol, document, device_id, product_key, biz_code, data_id,
                event_time, envelope_t_ms, None, source, biz_data or {}, event_name, notification,
            )  # fmt: skip
    if protocol == NOTICE_PROTOCOL or biz_code == NOTICE_BIZ_CODE:
        event_type, event_data = _notice(document, biz_data)
        return NoticeEvent(
            protocol, document, device_id, product_key, biz_code, data_id,
            event_time, envelope_t_ms, None, source, event_type, event_data,
        )  # fmt: skip
    return GenericEvent(
        protocol, document, device_id, product_key, biz_code, data_id, event_time, envelope_t_ms,
        None, source,
    )  # fmt: skip
