"""Typed events: protocol 4, protocol 20, IoT Core and unknown protocols, tolerant parsing."""

from __future__ import annotations

import pytest

from tuya_events.tuya.errors import DecodeError
from tuya_events.tuya.events import (
    DeviceEvent,
    GenericEvent,
    StatusReport,
    build_event,
    timestamp_ms,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (1628229842692, 1628229842692),
        ("1628229842692", 1628229842692),
        (1628229842, 1628229842000),
        ("1628229842", 1628229842000),
        (1628229842.5, 1628229842500),
        (" 1628229842 ", 1628229842000),
        ("soon", None),
        (None, None),
        (True, None),
        (-5, None),
        ([], None),
        (float("nan"), None),
        (float("inf"), None),
    ],
)
def test_timestamps_in_seconds_or_ms_numbers_or_strings(raw: object, expected: int | None) -> None:
    assert timestamp_ms(raw) == expected


def test_status_report_with_dp_id_keys_and_json_in_strings() -> None:
    document = {
        "dataId": "abc",
        "devId": "dev1",
        "productKey": "pk",
        "status": [
            {"code": "switch_1", "value": False, "t": 1628229842692, "1": "false"},
            {"code": "colour", "value": '{"h":1}', "t": "1628229843", "24": '{"h":1}'},
        ],
        "somethingNew": 1,
    }
    event = build_event(document, 4)
    assert isinstance(event, StatusReport)
    assert [(s.code, s.value, s.t_ms, s.dp_id) for s in event.statuses] == [
        ("switch_1", False, 1628229842692, "1"),
        ("colour", '{"h":1}', 1628229843000, "24"),
    ]
    assert event.timestamp_ms == 1628229843000
    assert event.document["somethingNew"] == 1


def test_device_event_takes_devid_from_bizdata_when_missing() -> None:
    event = build_event({"bizCode": "nameUpdate", "bizData": {"devId": "d9", "name": "Lamp"}}, 20)
    assert isinstance(event, DeviceEvent)
    assert event.device_id == "d9" and event.biz_code == "nameUpdate"
    assert event.biz_data["name"] == "Lamp"


def test_device_event_online() -> None:
    document = {
        "devId": "d1",
        "productKey": "pk",
        "bizCode": "online",
        "bizData": {"time": 146052438362},
        "ts": 1628229842692,
    }
    event = build_event(document, 20, envelope_t_ms=1)
    assert isinstance(event, DeviceEvent)
    assert event.timestamp_ms == 1628229842692 and event.kind == "device_event"


def test_iot_core_property_message_is_a_status_report() -> None:
    document = {
        "devId": "d1",
        "bizCode": "devicePropertyMessage",
        "bizData": {
            "properties": [{"code": "temp", "dpId": 3, "time": 1700000000000, "value": 21}]
        },
    }
    event = build_event(document, 1000)
    assert isinstance(event, StatusReport)
    assert event.statuses[0].code == "temp" and event.statuses[0].dp_id == "3"


@pytest.mark.parametrize(
    ("document", "protocol"),
    [
        ({"bizCode": "deviceOnline", "bizData": {"devId": "d1"}}, 1001),
        ({"whatever": [1, 2]}, 99),
        ({"status": "not a list", "devId": "d1"}, 4),
        ({"devId": "d1"}, None),
    ],
)
def test_unknown_shapes_are_kept_as_generic_events(document: dict, protocol: int | None) -> None:
    event = build_event(document, protocol)
    assert isinstance(event, GenericEvent)
    assert event.document == document


@pytest.mark.parametrize("document", [[1], "text", 3, None])
def test_a_document_that_is_not_an_object_is_refused(document: object) -> None:
    with pytest.raises(DecodeError) as caught:
        build_event(document, 4)
    assert caught.value.reason == "bad_event"


def test_as_dict_is_json_serialisable() -> None:
    import orjson

    event = build_event({"devId": "d", "status": [{"code": "c", "value": 1}]}, 4)
    assert orjson.loads(orjson.dumps(event.as_dict()))["statuses"][0]["code"] == "c"
