"""From an event to the rows it writes, built once on the event loop, the same for both dialects.

JSON columns are carried as JSON text (orjson): SQLite stores it as is, PostgreSQL casts it to
jsonb, so both hold exactly what Tuya sent.

Enrichment adds, per status row, the value scaled to its unit, the unit and the data point's
name (NULL when the point is not known or enrichment is off), and a ``devices`` row for a known
device: its details and specification, never a secret (a :class:`Device` holds none).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from tuya_events.delivery import Delivery
from tuya_events.handlers.payload import event_id
from tuya_events.tuya.devices import Device, DeviceView
from tuya_events.tuya.events import DeviceEvent, Event, StatusItem, StatusReport

Row = tuple[Any, ...]


def json_text(value: Any) -> str:
    return orjson.dumps(value).decode()


@dataclass(slots=True, frozen=True)
class Record:
    """What one event writes; ``None``/empty where a table is not stored or does not apply."""

    event_id: str
    event: Row | None
    statuses: tuple[Row, ...]
    device_event: Row | None
    device: Row | None = None  # the ``devices`` row, when this record is to upsert it


@dataclass(slots=True, frozen=True)
class RecordBuilder:
    store_events: bool = True
    store_latest_status: bool = True
    store_device_events: bool = True

    def build(
        self, event: Event, delivery: Delivery, received_ms: int, with_device: bool = False
    ) -> Record:
        """The rows of one event (raises orjson.JSONEncodeError for an unencodable value);
        ``with_device``: also the ``devices`` row of its device, if the catalogue knows it."""
        ident = event_id(event, delivery)
        event_row = None
        if self.store_events:
            event_row = (
                ident,
                event.kind,
                event.protocol,
                event.device_id,
                event.product_key,
                event.biz_code,
                event.timestamp_ms,
                delivery.publish_time_ms or None,
                received_ms,
                delivery.partition,
                delivery.message_id,
                delivery.topic or None,
                json_text(event.document),
            )
        statuses: tuple[Row, ...] = ()
        if self.store_latest_status and isinstance(event, StatusReport) and event.device_id:
            # A data point without its own time takes the report's, then the broker's.
            fallback = event.timestamp_ms or delivery.publish_time_ms or received_ms
            statuses = tuple(
                (
                    event.device_id,
                    item.code,
                    json_text(item.value),
                    item.t_ms or fallback,
                    ident,
                    received_ms,
                    *_enriched(item),
                )
                for item in event.statuses
                if item.code
            )
        device_row = None
        if self.store_device_events and isinstance(event, DeviceEvent):
            device_row = (
                ident,
                event.device_id,
                event.biz_code,
                json_text(event.biz_data),
                event.timestamp_ms,
                received_ms,
            )
        devices_row = devices_table_row(event.device, received_ms) if with_device else None
        return Record(ident, event_row, statuses, device_row, devices_row)


_NOT_ENRICHED = (None, None, None)


def _enriched(item: StatusItem) -> tuple[str | None, str | None, str | None]:
    """``scaled`` (JSON), ``unit``, ``name`` of a status row: NULLs when the point is unknown."""
    point = item.point
    if point is None:
        return _NOT_ENRICHED
    return json_text(point.scaled(item.value)), point.unit, point.name


def devices_table_row(device: DeviceView | None, received_ms: int) -> Row | None:
    """The ``devices`` row of a catalogue device; None for an unknown one (or none)."""
    if not isinstance(device, Device):
        return None
    return (
        device.id,
        device.name,
        device.product_id,
        device.product_name,
        device.category,
        device.model,
        device.time_zone,
        json_text([point.as_dict() for point in device.points.values()]),
        device.fetched_at_ms,
        device.specification_fetched_at_ms,
        received_ms,
    )


@dataclass(slots=True)
class Rows:
    """The rows of a batch, per table, ready for the writers."""

    events: list[Row]
    statuses: list[Row]
    device_events: list[Row]
    devices: list[Row] = field(default_factory=list)


# Where a devices row has its two fetch times: its order against another snapshot of the device.
_FETCHED = slice(8, 10)


def batch_rows(records: Iterable[Record]) -> Rows:
    """Collect a batch's rows; status rows merged per (device_id, code), newest ``t`` wins;
    devices rows merged per id, the newest snapshot wins (the later one of equal fetch times:
    a data point renamed since keeps its fetch times).

    The merge makes the batch behave like its events written one by one (an equal ``t`` keeps
    the first), and PostgreSQL needs it: one upsert may not touch the same row twice.
    Rows are sorted by key, so concurrent batches lock rows in the same order.
    """
    events: list[Row] = []
    device_events: list[Row] = []
    latest: dict[tuple[str, str], Row] = {}
    devices: dict[str, Row] = {}
    for record in records:
        if record.device is not None:
            known = devices.get(record.device[0])
            if known is None or record.device[_FETCHED] >= known[_FETCHED]:
                devices[record.device[0]] = record.device
        if record.event is not None:
            events.append(record.event)
        if record.device_event is not None:
            device_events.append(record.device_event)
        for row in record.statuses:
            key = (row[0], row[1])
            kept = latest.get(key)
            if kept is None or row[3] > kept[3]:
                latest[key] = row
    return Rows(
        sorted(events, key=lambda row: row[0]),
        [latest[key] for key in sorted(latest)],
        sorted(device_events, key=lambda row: row[0]),
        [devices[key] for key in sorted(devices)],
    )
