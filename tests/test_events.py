"""Typed events: protocol 4, protocol 20, IoT Core and unknown protocols, tolerant parsing."""

from __future__ import annotations

import orjson
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
        (0, None),
        (99_999_999_999, 99_999_999_999_000),  # the last value read as seconds
        (100_000_000_000, 100_000_000_000),  # the first read as milliseconds
        (253_402_300_799_999, 253_402_300_799_999),  # the end of year 9999
        (253_402_300_800_000, None),
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
        ({"bizCode": "somethingNew", "bizData": {"devId": "d1"}}, 1001),
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


# -- what handlers receive: as_dict() of every event type ------------------------------------


def test_status_report_as_dict() -> None:
    document = {
        "devId": "d1",
        "productKey": "pk1",
        "dataId": "id1",
        "status": [
            {"code": "switch_1", "value": True, "t": 1700000000, "1": True},
            {"code": "temp", "value": 21, "time": 1700000005000, "dpId": 7},
            "odd",
        ],
    }
    event = build_event(document, 4, envelope_t_ms=1)
    assert isinstance(event, StatusReport)
    assert event.as_dict() == {
        "kind": "status",
        "protocol": 4,
        "device_id": "d1",
        "product_key": "pk1",
        "biz_code": None,
        "data_id": "id1",
        "timestamp_ms": 1700000005000,  # the newest data point
        "envelope_t_ms": 1,
        "statuses": [
            {"code": "switch_1", "value": True, "t": 1700000000000, "dp_id": "1"},
            {"code": "temp", "value": 21, "t": 1700000005000, "dp_id": "7"},
            {"code": None, "value": "odd", "t": None, "dp_id": None},
        ],
        "document": document,
    }
    orjson.dumps(event.as_dict())


def test_status_report_without_item_times_takes_the_envelope_time() -> None:
    event = build_event({"devId": "d1", "status": [{"code": "c", "value": 1}]}, 4, 42)
    assert event.timestamp_ms == 42 and event.envelope_t_ms == 42


def test_device_event_as_dict() -> None:
    document = {
        "bizCode": "online",
        "bizData": {"devId": "d7", "time": 3},
        "productKey": 1234,
        "ts": 1700000000,
    }
    event = build_event(document, 20, envelope_t_ms=9)
    assert isinstance(event, DeviceEvent)
    assert event.as_dict() == {
        "kind": "device_event",
        "protocol": 20,
        "device_id": "d7",
        "product_key": "1234",
        "biz_code": "online",
        "data_id": None,
        "timestamp_ms": 1700000000000,
        "envelope_t_ms": 9,
        "biz_data": {"devId": "d7", "time": 3},
        "event_name": "online",
        "document": document,
    }


def test_generic_event_as_dict() -> None:
    document = {"devId": "d9", "bizCode": 5, "t": "1700000000123", "dataId": ""}
    event = build_event(document, 1001)
    assert isinstance(event, GenericEvent)
    assert event.as_dict() == {
        "kind": "generic",
        "protocol": 1001,
        "device_id": "d9",
        "product_key": None,
        "biz_code": None,
        "data_id": None,
        "timestamp_ms": 1700000000123,
        "envelope_t_ms": None,
        "document": document,
    }
    # No time of its own: the envelope's.
    assert build_event({"devId": "d9"}, None, 77).as_dict()["timestamp_ms"] == 77


def test_property_message_is_a_status_report_and_other_kinds_are_not() -> None:
    document = {
        "bizCode": "devicePropertyMessage",
        "devId": "d1",
        "bizData": {"properties": [{"code": "c", "value": 2, "time": 1700000000000}]},
    }
    event = build_event(document, 20)
    assert isinstance(event, StatusReport)
    assert [item.as_dict() for item in event.statuses] == [
        {"code": "c", "value": 2, "t": 1700000000000, "dp_id": None}
    ]
    # A status list outside protocol 4, or a device event without a bizCode: generic.
    assert isinstance(build_event({"status": []}, 20), GenericEvent)
    assert isinstance(build_event({"bizData": {}}, 20), GenericEvent)
    assert isinstance(build_event({"bizCode": "x", "bizData": "no"}, 20), DeviceEvent)
    assert build_event({"bizCode": "x", "bizData": "no"}, 20).as_dict()["biz_data"] == {}
