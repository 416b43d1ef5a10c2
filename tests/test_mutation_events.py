"""Enriched events as handlers receive them (issue 15): once the catalogue knows a device, every
status item carries its name, unit and scaled value; an item the specification does not know
carries them as None, and an event that was not enriched carries none of them."""

from __future__ import annotations

import orjson
import pytest

from tuya_events.tuya.devices import INTEGER, UNKNOWN_DEVICE, DataPoint, Device
from tuya_events.tuya.errors import BAD_EVENT, DecodeError
from tuya_events.tuya.events import StatusReport, build_event, timestamp_ms

TEMPERATURE = DataPoint("va_temperature", INTEGER, "1", "℃", scale=1, name="Living room")
DEVICE = Device("d1", name="Sensor", product_id="p1", points={"va_temperature": TEMPERATURE})


def report() -> StatusReport:
    document = {
        "devId": "d1",
        "status": [
            {"code": "va_temperature", "value": 235, "t": 1700000000000},
            {"code": "battery", "value": 80, "t": 1700000000000},
        ],
    }
    event = build_event(document, 4)
    assert isinstance(event, StatusReport)
    return event


def enrich(event: StatusReport, device: Device) -> None:
    event.device = device
    for item in event.statuses:
        item.point = device.points.get(item.code or "")


def test_an_enriched_report_names_scales_and_gives_units() -> None:
    event = report()
    enrich(event, DEVICE)
    statuses = event.as_dict()["statuses"]
    assert statuses[0] == {
        "code": "va_temperature",
        "value": 235,
        "t": 1700000000000,
        "dp_id": None,
        "name": "Living room",
        "unit": "℃",
        "scaled": 23.5,
    }
    assert statuses[1] == {
        "code": "battery",
        "value": 80,
        "t": 1700000000000,
        "dp_id": None,
        "name": None,
        "unit": None,
        "scaled": None,
    }
    assert event.as_dict()["device"]["name"] == "Sensor"
    orjson.dumps(event.as_dict())


def test_an_unknown_device_still_gets_the_enriched_shape() -> None:
    event = report()
    event.device = UNKNOWN_DEVICE
    out = event.as_dict()
    assert out["device"] == {"known": False}
    assert all(s["name"] is None and s["unit"] is None for s in out["statuses"])
    assert all("scaled" in s for s in out["statuses"])


def test_a_report_that_was_not_enriched_has_no_enrichment_keys() -> None:
    event = report()
    event.statuses[0].point = TEMPERATURE  # a point alone does not make the event enriched
    out = event.as_dict()
    assert "device" not in out
    assert set(out["statuses"][0]) == {"code", "value", "t", "dp_id"}


def test_a_status_item_reads_its_specification_on_demand() -> None:
    item = report().statuses[0]
    assert (item.name, item.unit, item.scaled) == (None, None, None)
    item.point = TEMPERATURE
    assert (item.name, item.unit, item.scaled) == ("Living room", "℃", 23.5)


def test_a_status_code_that_is_not_text_is_none() -> None:
    event = build_event({"devId": "d1", "status": [{"code": 5, "value": 1}]}, 4)
    assert isinstance(event, StatusReport)
    assert event.statuses[0].code is None and event.statuses[0].value == 1


def test_a_property_message_keeps_its_biz_code() -> None:
    document = {"devId": "d1", "bizCode": "devicePropertyMessage", "bizData": {"properties": []}}
    event = build_event(document, 1000)
    assert isinstance(event, StatusReport) and event.biz_code == "devicePropertyMessage"


@pytest.mark.parametrize(("document", "kind"), [([1], "list"), ("x", "str"), (None, "NoneType")])
def test_a_document_that_is_not_an_object_is_refused_naming_its_type(
    document: object, kind: str
) -> None:
    with pytest.raises(DecodeError) as caught:
        build_event(document, 4)
    assert caught.value.reason == BAD_EVENT
    assert caught.value.detail == f"decrypted JSON is a {kind}, not an object"


@pytest.mark.parametrize(("raw", "expected"), [(1, 1000), (0.001, 1), ("1", 1000)])
def test_every_positive_time_is_a_time(raw: object, expected: int) -> None:
    assert timestamp_ms(raw) == expected


def test_a_property_message_is_a_full_status_report() -> None:
    document = {
        "bizCode": "devicePropertyMessage",
        "dataId": "data-1",
        "productKey": "pk1",
        "bizData": {
            "devId": "d1",
            "properties": [
                {"code": "c", "dpId": 3, "value": 2, "time": 1700000000000},
                {"code": "e", "dpId": 4, "value": 5, "time": 1700000009000},
            ],
        },
    }
    event = build_event(document, 1000, 1600000000000)
    assert isinstance(event, StatusReport)
    assert (event.protocol, event.device_id, event.product_key, event.data_id) == (
        1000,
        "d1",
        "pk1",
        "data-1",
    )
    assert event.document is document
    assert (event.timestamp_ms, event.envelope_t_ms) == (1700000009000, 1600000000000)
    assert [(s.code, s.dp_id, s.value) for s in event.statuses] == [("c", "3", 2), ("e", "4", 5)]


@pytest.mark.parametrize("properties", ["ab", None, {"code": "c"}])
def test_property_message_properties_that_are_no_list_give_no_items(properties: object) -> None:
    document = {"bizCode": "devicePropertyMessage", "bizData": {"properties": properties}}
    event = build_event(document, 1000, 5)
    assert isinstance(event, StatusReport)
    assert event.statuses == () and event.timestamp_ms == 5


def test_a_status_report_keeps_a_biz_code_it_carries() -> None:
    event = build_event({"devId": "d1", "bizCode": "x", "status": []}, 4)
    assert isinstance(event, StatusReport) and event.biz_code == "x"


def test_a_generic_event_keeps_every_field_it_has() -> None:
    document = {"devId": "d1", "productKey": "pk1", "bizCode": "spaceCreate", "dataId": "id-1"}
    event = build_event(document, 1010, 1600000000000)
    out = event.as_dict()
    assert out["kind"] == "generic"
    assert (out["device_id"], out["product_key"], out["biz_code"], out["data_id"]) == (
        "d1",
        "pk1",
        "spaceCreate",
        "id-1",
    )
    assert (out["timestamp_ms"], out["envelope_t_ms"]) == (1600000000000, 1600000000000)


def test_a_device_event_keeps_its_data_id() -> None:
    document = {"devId": "d1", "bizCode": "online", "bizData": {}, "dataId": "id-2"}
    assert build_event(document, 20).as_dict()["data_id"] == "id-2"
