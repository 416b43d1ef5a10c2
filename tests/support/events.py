"""Tuya documents and the (event, delivery) pairs a handler is handed, built without a broker."""

from __future__ import annotations

from typing import Any

from tuya_events.delivery import Delivery
from tuya_events.tuya.events import Event, build_event

T0 = 1_700_000_000_000
"""A fixed event time (ms) the documents' timestamps count from."""


def status_doc(device: str, data_id: str | None, *points: tuple[str, Any, int]) -> dict[str, Any]:
    """A protocol-4 status report of ``device``: one status per ``(code, value, t)``."""
    document: dict[str, Any] = {
        "devId": device,
        "productKey": "pk-1",
        "status": [{"code": code, "value": value, "t": t} for code, value, t in points],
    }
    if data_id is not None:
        document["dataId"] = data_id
    return document


def device_doc(device: str, data_id: str, biz_code: str, ts: int) -> dict[str, Any]:
    """A protocol-20 device event (``bizCode``) of ``device`` at ``ts`` (ms)."""
    return {
        "dataId": data_id,
        "devId": device,
        "productKey": "pk-1",
        "bizCode": biz_code,
        "bizData": {"devId": device, "name": "Kitchen plug", "time": ts // 1000},
        "ts": ts,
    }


def sample(
    document: dict[str, Any], protocol: int = 4, message_id: str | None = None
) -> tuple[Event, Delivery]:
    """An event as the pipeline hands it over, with the broker's metadata."""
    event = build_event(document, protocol)
    delivery = Delivery(
        body=b"",
        properties={},
        message_id=message_id or f"msg-{document.get('dataId')}",
        topic="persistent://tuya/test/event",
        partition=3,
        publish_time_ms=T0 + 5_000,
    )
    return event, delivery


def status(
    device: str, seq: int, value: Any, t: int, code: str = "switch_1"
) -> tuple[Event, Delivery]:
    """:func:`sample` of a one-status report (``code`` = ``value`` at ``t``), id ``device-seq``."""
    return sample(status_doc(device, f"{device}-{seq}", (code, value, t)))
