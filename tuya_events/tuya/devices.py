"""What the cloud knows about a device: its details and its data-point specification.

Built from OpenAPI answers (and read back from the local catalogue) by whitelisting: only the
fields named here are kept, so a ``local_key`` -- a secret -- or any field Tuya adds later never
reaches the catalogue, an event, a log line or a database. Parsing is tolerant: a field of the
wrong type is left out, never an error, because one odd device must not break a whole sync.

Scaling: Tuya sends Integer data points as whole numbers with a ``scale``; the value a user
means is ``value / 10**scale`` (235 with scale 1 is 23.5). Other types are passed on unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

INTEGER = "Integer"
# A specification that says scale 400 is not a unit anyone means; past this it is ignored, so no
# crafted answer can make every value 0.0 or overflow a float.
MAX_SCALE = 12

# The details fields kept, with the type each must have. Everything else (``local_key``, ``ip``,
# ``uid``, ``lat``/``lon``, ``owner_id``, ...) is dropped on the way in.
_TEXT_FIELDS = ("name", "product_id", "product_name", "category", "model", "time_zone", "icon")
_TIME_FIELDS = ("active_time", "create_time", "update_time")


def _text(value: Any) -> str | None:
    """A text field; NUL characters are dropped (PostgreSQL refuses them in text, and a device
    name must never be what gets its events refused)."""
    if not isinstance(value, str) or not value:
        return None
    if "\x00" in value:
        value = value.replace("\x00", "")
    return value or None


def _number(value: Any) -> int | float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value if value == value and abs(value) != float("inf") else None


def _scale(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SCALE:
        return 0
    return value


def _values_document(raw: Any) -> Mapping[str, Any]:
    """A specification's ``values``: JSON in a string (sometimes already an object)."""
    if isinstance(raw, Mapping):
        return raw
    if isinstance(raw, (str, bytes)) and raw:
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return {}
        return parsed if isinstance(parsed, dict) else {}
    return {}


@dataclass(slots=True, frozen=True)
class DataPoint:
    """One status code of a device's specification (and its name, once a user gave it one)."""

    code: str
    type: str | None = None
    dp_id: str | None = None
    unit: str | None = None
    scale: int = 0
    min: int | float | None = None
    max: int | float | None = None
    step: int | float | None = None
    range: tuple[str, ...] | None = None  # Enum values
    labels: tuple[str, ...] | None = None  # Bitmap bit names
    name: str | None = None  # from dpNameUpdate

    def scaled(self, value: Any) -> Any:
        """The value as the user means it: Integer values divided by ``10**scale``."""
        if self.type != INTEGER or self.scale == 0:
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return value
        try:
            return value / 10**self.scale
        except OverflowError:  # an integer too large for a float: keep it as sent
            return value

    def named(self, name: str | None) -> DataPoint:
        return DataPoint(
            self.code, self.type, self.dp_id, self.unit, self.scale, self.min, self.max,
            self.step, self.range, self.labels, name,
        )  # fmt: skip

    def as_dict(self) -> dict[str, Any]:
        """The stored and shown form (``tuya-events devices show``)."""
        out: dict[str, Any] = {"code": self.code, "type": self.type, "dp_id": self.dp_id}
        for key in ("unit", "min", "max", "step", "name"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.scale:
            out["scale"] = self.scale
        if self.range is not None:
            out["range"] = list(self.range)
        if self.labels is not None:
            out["labels"] = list(self.labels)
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> DataPoint | None:
        """The inverse of :meth:`as_dict`; None for a record that is not one."""
        code = _text(raw.get("code"))
        if code is None:
            return None
        return cls(
            code,
            _text(raw.get("type")),
            _text(str(raw["dp_id"])) if raw.get("dp_id") is not None else None,
            _text(raw.get("unit")),
            _scale(raw.get("scale", 0)),
            _number(raw.get("min")),
            _number(raw.get("max")),
            _number(raw.get("step")),
            _strings(raw.get("range")),
            _strings(raw.get("labels")),
            _text(raw.get("name")),
        )


def _strings(raw: Any) -> tuple[str, ...] | None:
    if not isinstance(raw, list):
        return None
    return tuple(item for item in raw if isinstance(item, str))


def parse_data_point(raw: Any) -> DataPoint | None:
    """One entry of a specification's ``status`` (or ``functions``) list, as Tuya sends it:
    ``{"code", "type", "values": "<JSON>", "dp_id"?}``. None for an entry without a code."""
    if not isinstance(raw, Mapping):
        return None
    code = _text(raw.get("code"))
    if code is None:
        return None
    values = _values_document(raw.get("values"))
    dp_id = raw.get("dp_id", raw.get("dpId"))
    if isinstance(dp_id, bool) or not isinstance(dp_id, (int, str)):
        dp_id = None
    return DataPoint(
        code,
        _text(raw.get("type")),
        str(dp_id) if dp_id is not None and str(dp_id) else None,
        _text(values.get("unit")),
        _scale(values.get("scale", 0)),
        _number(values.get("min")),
        _number(values.get("max")),
        _number(values.get("step")),
        _strings(values.get("range")),
        _strings(values.get("label")),
    )


def parse_specification(raw: Any) -> dict[str, DataPoint]:
    """A specification answer to points by code: ``status`` first, ``functions`` fill gaps
    (a writable code that never reports is still worth knowing for commands)."""
    points: dict[str, DataPoint] = {}
    if not isinstance(raw, Mapping):
        return points
    for section in ("status", "functions"):
        entries = raw.get(section)
        if not isinstance(entries, list):
            continue
        for entry in entries:
            point = parse_data_point(entry)
            if point is not None and point.code not in points:
                points[point.code] = point
    return points


@dataclass(slots=True, frozen=True)
class Device:
    """A device of the cloud project, as the catalogue knows it. Never holds a secret.

    Shared by every event of the device (handlers treat it as read-only); a refresh replaces
    the object rather than changing it, so an event keeps the snapshot it was enriched with.
    """

    id: str
    name: str | None = None
    product_id: str | None = None
    product_name: str | None = None
    category: str | None = None
    model: str | None = None
    time_zone: str | None = None
    icon: str | None = None
    online: bool | None = None
    sub: bool | None = None
    active_time: int | None = None
    create_time: int | None = None
    update_time: int | None = None
    points: Mapping[str, DataPoint] = field(default_factory=dict)  # by code
    points_by_dp_id: Mapping[str, DataPoint] = field(default_factory=dict)
    fetched_at_ms: int = 0  # when the details were fetched (0: never)
    specification_fetched_at_ms: int = 0  # 0: no specification yet

    @property
    def known(self) -> bool:
        return True

    def point(self, code: str | None, dp_id: str | None = None) -> DataPoint | None:
        """The data point of a status item, by code, else by dp id."""
        if code is not None:
            found = self.points.get(code)
            if found is not None:
                return found
        return self.points_by_dp_id.get(dp_id) if dp_id is not None else None

    def details(self) -> dict[str, Any]:
        """The details alone (what ``device`` on an event and the ``devices`` table carry)."""
        out: dict[str, Any] = {"id": self.id}
        for key in (*_TEXT_FIELDS, "online", "sub", *_TIME_FIELDS):
            out[key] = getattr(self, key)
        return out

    def event_view(self) -> dict[str, Any]:
        """``device`` on an event: who it is, not how it is (``online`` would be stale)."""
        return {
            "known": True,
            "id": self.id,
            "name": self.name,
            "product_id": self.product_id,
            "product_name": self.product_name,
            "category": self.category,
            "model": self.model,
            "time_zone": self.time_zone,
        }

    def as_dict(self) -> dict[str, Any]:
        """Everything, for the local catalogue and ``devices show --json``."""
        return {
            **self.details(),
            "points": [point.as_dict() for point in self.points.values()],
            "fetched_at_ms": self.fetched_at_ms,
            "specification_fetched_at_ms": self.specification_fetched_at_ms,
        }

    def with_details(self, details: Device) -> Device:
        """These points under newer details (a details refresh keeps the specification)."""
        return make_device(
            details.details(), list(self.points.values()), details.fetched_at_ms,
            self.specification_fetched_at_ms,
        )  # fmt: skip

    def with_points(self, points: Mapping[str, DataPoint], fetched_at_ms: int) -> Device:
        """A new specification; names users gave data points are kept."""
        named = []
        for point in points.values():
            old = self.point(point.code, point.dp_id)
            named.append(point.named(old.name) if old is not None and old.name else point)
        return make_device(self.details(), named, self.fetched_at_ms, fetched_at_ms)

    def with_point_name(self, dp_id: str | None, code: str | None, name: str) -> Device:
        """After ``dpNameUpdate``: the data point (by dp id or code) gets the user's name."""
        old = self.point(code, dp_id)
        if old is None:
            if code is None:
                return self
            old = DataPoint(code, dp_id=dp_id)
        points = {**self.points, old.code: old.named(name)}
        return make_device(
            self.details(), list(points.values()), self.fetched_at_ms,
            self.specification_fetched_at_ms,
        )  # fmt: skip

    def with_name(self, name: str) -> Device:
        """After a rename event that carries the new name."""
        return replace(self, name=_text(name))

    def with_online(self, online: bool) -> Device:
        """After online/offline: the same points, shared (an event flips this often)."""
        return self if self.online is online else replace(self, online=online)


class _Unknown:
    """``device`` of an event whose device the catalogue does not know (yet)."""

    __slots__ = ()
    known = False
    name = product_id = product_name = category = model = time_zone = None

    def point(self, code: str | None, dp_id: str | None = None) -> None:
        return None

    def event_view(self) -> dict[str, Any]:
        return {"known": False}


UNKNOWN_DEVICE = _Unknown()
DeviceView = Device | _Unknown


def make_device(
    details: Mapping[str, Any],
    points: list[DataPoint] | tuple[DataPoint, ...] = (),
    fetched_at_ms: int = 0,
    specification_fetched_at_ms: int = 0,
) -> Device:
    """A device from details (an OpenAPI answer or a stored record) and its data points.

    Raises ValueError when the details have no device id: nothing else is required.
    """
    device_id = _text(details.get("id"))
    if device_id is None:
        raise ValueError("device details without an id")
    online = details.get("online")
    sub = details.get("sub")
    by_code = {point.code: point for point in points}
    by_dp_id = {point.dp_id: point for point in points if point.dp_id is not None}
    return Device(
        device_id,
        name=_text(details.get("name")),
        product_id=_text(details.get("product_id")),
        product_name=_text(details.get("product_name")),
        category=_text(details.get("category")),
        model=_text(details.get("model")),
        time_zone=_text(details.get("time_zone")),
        icon=_text(details.get("icon")),
        online=online if isinstance(online, bool) else None,
        sub=sub if isinstance(sub, bool) else None,
        active_time=_time(details.get("active_time")),
        create_time=_time(details.get("create_time")),
        update_time=_time(details.get("update_time")),
        points=by_code,
        points_by_dp_id=by_dp_id,
        fetched_at_ms=fetched_at_ms,
        specification_fetched_at_ms=specification_fetched_at_ms,
    )


def _time(value: Any) -> int | None:
    """Tuya's ``active_time`` and friends are seconds since the epoch."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        return None
    return value
