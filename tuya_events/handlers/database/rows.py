"""From an event to the rows it writes, built once on the event loop, the same for both dialects.

JSON columns are carried as JSON text (orjson): SQLite stores it as is, PostgreSQL casts it to
jsonb, so both hold exactly what Tuya sent.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from tuya_events.delivery import Delivery
from tuya_events.handlers.payload import event_id
from tuya_events.tuya.events import DeviceEvent, Event, StatusReport

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


@dataclass(slots=True, frozen=True)
class RecordBuilder:
    store_events: bool = True
    store_latest_status: bool = True
    store_device_events: bool = True

    def build(self, event: Event, delivery: Delivery, received_ms: int) -> Record:
        """The rows of one event (raises orjson.JSONEncodeError for an unencodable value)."""
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
        return Record(ident, event_row, statuses, device_row)


@dataclass(slots=True)
class Rows:
    """The rows of a batch, per table, ready for the writers."""

    events: list[Row]
    statuses: list[Row]
    device_events: list[Row]


def batch_rows(records: Iterable[Record]) -> Rows:
    """Collect a batch's rows; status rows merged per (device_id, code), newest ``t`` wins.

    The merge makes the batch behave like its events written one by one (an equal ``t`` keeps
    the first), and PostgreSQL needs it: one upsert may not touch the same row twice.
    Rows are sorted by key, so concurrent batches lock rows in the same order.
    """
    events: list[Row] = []
    device_events: list[Row] = []
    latest: dict[tuple[str, str], Row] = {}
    for record in records:
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
    )
