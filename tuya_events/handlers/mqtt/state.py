"""A device's latest values, merged over its reports, newest first by event time.

Each data point keeps the time of the report that set it. A report's value replaces the kept
one only when it is at least as recent, so a redelivered older report (after a restart, a
broker redelivery) never overwrites a newer value; an equal time wins, so a retried event
publishes its values again. Availability is merged the same way.

The plain payload of a value (``{prefix}/{id}/{code}``): text as it is, ``true``/``false``,
numbers and documents as JSON.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import orjson

from tuya_events.tuya.devices import DataPoint, Device, make_device
from tuya_events.tuya.events import StatusItem


@dataclass(slots=True)
class CodeValue:
    """One data point's latest value: as sent, scaled (the value itself when the point's
    specification is not known), its unit and name when known, and its time."""

    value: Any
    scaled: Any
    unit: str | None
    name: str | None
    t_ms: int

    def as_list(self) -> list[Any]:
        return [self.value, self.scaled, self.unit, self.name, self.t_ms]

    @classmethod
    def from_list(cls, raw: Any) -> CodeValue | None:
        if not isinstance(raw, list) or len(raw) != 5 or not isinstance(raw[4], int):
            return None
        value, scaled, unit, name, t_ms = raw
        return cls(
            value,
            scaled,
            unit if isinstance(unit, str) else None,
            name if isinstance(name, str) else None,
            t_ms,
        )


def plain_payload(value: Any) -> bytes:
    """A value as the payload of its own topic; never empty (an empty retained payload
    would delete the topic)."""
    if isinstance(value, str):
        return value.encode() if value else b'""'
    return orjson.dumps(value)


@dataclass(slots=True)
class DeviceState:
    device_id: str
    codes: dict[str, CodeValue] = field(default_factory=dict)
    availability: str | None = None
    availability_t_ms: int = -1
    device: Device | None = None
    # Discovery topics published for this device, so a changed specification can clear the
    # ones it no longer has.
    discovered: tuple[str, ...] = ()
    # ``device.as_dict()`` as JSON, made when the snapshot changes rather than on every save.
    _device_json: bytes = field(default=b"null", repr=False)
    # Publishing a device's topics is one critical section: an event of the device and a
    # republish after a reconnection must not interleave (the older one could land last).
    lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)

    def merge(self, items: tuple[StatusItem, ...], fallback_t_ms: int) -> list[str]:
        """Apply a report's items; the codes whose value it set (newer or as new), in order."""
        won: list[str] = []
        for item in items:
            code = item.code
            if code is None:
                continue
            t_ms = item.t_ms if item.t_ms is not None else fallback_t_ms
            kept = self.codes.get(code)
            if kept is not None and kept.t_ms > t_ms:
                continue
            point = item.point
            if point is None:
                point = kept_point(self.device, code)
            if point is not None:
                value = CodeValue(
                    item.value, point.scaled(item.value), point.unit, point.name, t_ms
                )
            else:
                value = CodeValue(item.value, item.value, None, None, t_ms)
            self.codes[code] = value
            if code not in won:
                won.append(code)
        return won

    def set_device(self, device: Device | None) -> None:
        self.device = device
        self._device_json = orjson.dumps(device.as_dict()) if device is not None else b"null"

    def set_availability(self, availability: str, t_ms: int) -> bool:
        """Whether it is the newest word on the device's availability (and so applied)."""
        if t_ms < self.availability_t_ms:
            return False
        self.availability, self.availability_t_ms = availability, t_ms
        return True

    def document(self) -> dict[str, Any]:
        """The retained state document: ``values`` for templates, ``codes`` with the detail."""
        device = self.device
        values = {code: value.scaled for code, value in self.codes.items()}
        codes = {
            code: {
                "value": value.value,
                "scaled": value.scaled,
                "unit": value.unit,
                "name": value.name,
                "t": value.t_ms,
            }
            for code, value in self.codes.items()
        }
        newest = max((value.t_ms for value in self.codes.values()), default=None)
        return {
            "device_id": self.device_id,
            "name": device.name if device is not None else None,
            "product_name": device.product_name if device is not None else None,
            "category": device.category if device is not None else None,
            "t": newest,
            "values": values,
            "codes": codes,
        }

    def device_json(self) -> bytes:
        """The catalogue snapshot as the state file keeps it (``null`` when none)."""
        return self._device_json

    def stored(self) -> bytes:
        """What the state file keeps of the device's values (its snapshot goes apart)."""
        record = {
            "codes": {code: value.as_list() for code, value in self.codes.items()},
            "availability": [self.availability, self.availability_t_ms],
            "discovered": list(self.discovered),
        }
        return orjson.dumps(record)

    @classmethod
    def from_record(cls, device_id: str, record: Any) -> DeviceState:
        """The inverse of :meth:`stored` (parsed); what does not fit is left out (it only
        costs the protection against older redeliveries for that device)."""
        state = cls(device_id)
        if not isinstance(record, dict):
            return state
        codes = record.get("codes")
        if isinstance(codes, dict):
            for code, entry in codes.items():
                value = CodeValue.from_list(entry)
                if value is not None:
                    state.codes[code] = value
        availability = record.get("availability")
        if (
            isinstance(availability, list)
            and len(availability) == 2
            and availability[0] in ("online", "offline")
            and isinstance(availability[1], int)
        ):
            state.availability, state.availability_t_ms = availability
        discovered = record.get("discovered")
        if isinstance(discovered, list):
            state.discovered = tuple(t for t in discovered if isinstance(t, str))
        return state


def kept_point(device: Device | None, code: str) -> DataPoint | None:
    return device.points.get(code) if device is not None else None


def device_from_stored(raw: Any) -> Device | None:
    """A catalogue snapshot from the state file (``Device.as_dict``); None if it is not one."""
    if not isinstance(raw, dict):
        return None
    points = raw.get("points")
    parsed = []
    if isinstance(points, list):
        for entry in points:
            point = DataPoint.from_dict(entry) if isinstance(entry, dict) else None
            if point is not None:
                parsed.append(point)
    try:
        fetched = raw.get("fetched_at_ms")
        specified = raw.get("specification_fetched_at_ms")
        return make_device(
            raw,
            parsed,
            fetched if isinstance(fetched, int) else 0,
            specified if isinstance(specified, int) else 0,
        )
    except ValueError:
        return None
