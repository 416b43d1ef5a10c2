"""The device model: scaled values as users mean them, specifications parsed tolerantly, and
nothing but whitelisted fields kept (never a local_key), through the store and back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from tuya_events.catalogue.enrich import apply
from tuya_events.catalogue.store import CatalogueStore, device_from_record
from tuya_events.tuya.devices import (
    MAX_SCALE,
    UNKNOWN_DEVICE,
    DataPoint,
    make_device,
    parse_data_point,
    parse_specification,
)
from tuya_events.tuya.events import StatusItem, build_event


def integer(scale: int, unit: str = "℃") -> DataPoint:
    return DataPoint("t", "Integer", "1", unit, scale)


@pytest.mark.parametrize(
    ("scale", "raw", "expected"),
    [
        (0, 235, 235),
        (1, 235, 23.5),
        (2, 235, 2.35),
        (3, 235, 0.235),
        (1, -55, -5.5),
        (2, -1, -0.01),
        (1, 0, 0.0),
        (3, 1, 0.001),
        (1, 3, 0.3),  # correctly rounded: not 0.30000000000000004
    ],
)
def test_integers_are_divided_by_ten_to_the_scale(scale: int, raw: int, expected: Any) -> None:
    scaled = integer(scale).scaled(raw)
    assert scaled == expected
    assert type(scaled) is type(expected)
    assert repr(scaled) == repr(expected)


@pytest.mark.parametrize(
    ("point", "raw"),
    [
        (DataPoint("mode", "Enum", range=("auto", "manual")), "auto"),
        (DataPoint("switch", "Boolean"), True),
        (DataPoint("switch", "Boolean"), False),
        (DataPoint("colour", "Json"), '{"h":1}'),
        (DataPoint("text", "String", scale=2), "123"),
        (DataPoint("raw", "Raw"), "AAEC"),
        (DataPoint("fault", "Bitmap", labels=("a", "b")), 3),
        (integer(1), True),  # a boolean sent for an Integer is not a number to scale
        (integer(1), "235"),  # nor is a string
        (integer(1), None),
    ],
)
def test_other_types_and_odd_values_pass_through_unchanged(point: DataPoint, raw: Any) -> None:
    assert point.scaled(raw) is raw


def test_a_huge_integer_is_kept_as_sent_rather_than_failing() -> None:
    huge = 10**400
    assert integer(1).scaled(huge) is huge


@pytest.mark.parametrize("scale", [-1, MAX_SCALE + 1, 400, True, 1.5, "2", None])
def test_an_absurd_scale_is_ignored(scale: Any) -> None:
    values = json.dumps({"unit": "W", "scale": scale})
    point = parse_data_point({"code": "p", "type": "Integer", "values": values})
    assert point is not None and point.scale == 0
    assert point.scaled(235) == 235


def test_the_largest_scale_still_applies() -> None:
    values = json.dumps({"scale": MAX_SCALE})
    point = parse_data_point({"code": "p", "type": "Integer", "values": values})
    assert point is not None and point.scaled(5) == 5 / 10**MAX_SCALE


def test_specifications_are_parsed_from_json_in_a_string() -> None:
    answer = {
        "category": "wsdcg",
        "status": [
            {
                "code": "va_temperature",
                "dp_id": 1,
                "type": "Integer",
                "values": '{"unit":"℃","min":-200,"max":600,"scale":1,"step":1}',
            },
            {"code": "mode", "type": "Enum", "values": '{"range":["a","b"]}'},
            {"code": "fault", "type": "Bitmap", "values": '{"label":["x","y"],"maxlen":2}'},
            {"code": "broken", "type": "Integer", "values": "{not json"},
            {"type": "Integer", "values": "{}"},  # no code: skipped
            "not an entry",
        ],
        "functions": [
            {"code": "va_temperature", "type": "Integer", "values": '{"scale":3}'},
            {"code": "switch", "type": "Boolean", "values": "{}"},
        ],
    }
    points = parse_specification(answer)
    assert list(points) == ["va_temperature", "mode", "fault", "broken", "switch"]
    temperature = points["va_temperature"]
    assert (temperature.unit, temperature.scale, temperature.min, temperature.max) == (
        "℃",
        1,
        -200,
        600,
    )
    assert temperature.dp_id == "1"
    assert points["mode"].range == ("a", "b")
    assert points["fault"].labels == ("x", "y")
    assert points["broken"].scale == 0 and points["broken"].unit is None
    assert parse_specification("nonsense") == {}


DETAILS = {
    "id": "bfdev",
    "name": "Kitchen sensor",
    "product_id": "pk1",
    "product_name": "T&H sensor",
    "category": "wsdcg",
    "model": "TH01",
    "online": True,
    "time_zone": "+01:00",
    "active_time": 1700000000,
    "local_key": "0123456789abcdef",
    "ip": "203.0.113.9",
    "uid": "eu1234",
    "lat": "48.8",
    "lon": "2.3",
    "owner_id": "home1",
    "status": [{"code": "va_temperature", "value": 235}],
}


def test_details_keep_only_the_whitelisted_fields() -> None:
    device = make_device(DETAILS, [integer(1)], fetched_at_ms=5)
    shown = [repr(device), orjson.dumps(device.as_dict()).decode(), str(device.event_view())]
    for text in shown:
        for secret in ("0123456789abcdef", "203.0.113.9", "eu1234", "home1", "48.8"):
            assert secret not in text
    assert device.name == "Kitchen sensor" and device.online is True
    assert device.event_view() == {
        "known": True,
        "id": "bfdev",
        "name": "Kitchen sensor",
        "product_id": "pk1",
        "product_name": "T&H sensor",
        "category": "wsdcg",
        "model": "TH01",
        "time_zone": "+01:00",
    }


def test_fields_of_the_wrong_type_are_left_out() -> None:
    device = make_device({"id": "x", "name": 5, "online": "yes", "active_time": "soon"})
    assert (device.name, device.online, device.active_time) == (None, None, None)
    # PostgreSQL refuses NUL in text: a name must not get a device's events refused.
    assert make_device({"id": "x", "name": "Hall\x00 door"}).name == "Hall door"
    with pytest.raises(ValueError):
        make_device({"name": "no id"})


def test_the_store_round_trip_keeps_points_and_names_and_no_secret(tmp_path: Path) -> None:
    points = [integer(1).named("Temperature"), DataPoint("mode", "Enum", "2", range=("a", "b"))]
    device = make_device(DETAILS, points, 10, 20)
    path = tmp_path / "state" / "catalogue.sqlite3"
    with CatalogueStore(path) as store:
        store.save([device])
        store.set_meta("api_family", "devices")
    with CatalogueStore(path) as store:
        (loaded,) = store.load()
        assert store.meta("api_family") == "devices"
    assert loaded == device
    assert b"0123456789abcdef" not in path.read_bytes()


def test_an_unreadable_record_is_skipped_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "catalogue.sqlite3"
    with CatalogueStore(path) as store:
        store.save([make_device({"id": "good"})])
        store.db.execute("INSERT INTO devices VALUES ('bad', '[1, 2]', 0)")
        assert [d.id for d in store.load()] == ["good"]
    with pytest.raises(ValueError):
        device_from_record("[1]")


def test_enriching_an_event_points_each_item_at_its_data_point() -> None:
    device = make_device(DETAILS, [integer(1), DataPoint("switch", "Boolean", "7")])
    document = {
        "devId": "bfdev",
        "status": [
            {"code": "t", "value": 235, "t": 1700000000000},
            {"7": True, "value": True, "t": 1700000000000},  # no code: found by its dp id
            {"code": "unknown_code", "value": 1},
        ],
    }
    event = build_event(document, 4)
    apply(event, device)
    items = event.statuses  # type: ignore[attr-defined]
    assert [(i.name, i.unit, i.scaled) for i in items] == [
        (None, "℃", 23.5),
        (None, None, True),
        (None, None, None),
    ]
    shown = event.as_dict()
    assert shown["device"]["name"] == "Kitchen sensor"
    assert shown["statuses"][0] == {
        "code": "t",
        "value": 235,
        "t": 1700000000000,
        "dp_id": None,
        "name": None,
        "unit": "℃",
        "scaled": 23.5,
    }


def test_an_unknown_device_and_enrichment_off_shape_the_json() -> None:
    document = {"devId": "x", "status": [{"code": "t", "value": 1}]}
    off = build_event(document, 4).as_dict()
    assert "device" not in off and set(off["statuses"][0]) == {"code", "value", "t", "dp_id"}
    unknown = build_event(document, 4)
    unknown.device = UNKNOWN_DEVICE
    shown = unknown.as_dict()
    assert shown["device"] == {"known": False}
    assert shown["statuses"][0]["scaled"] is None


def test_data_point_names_survive_a_new_specification() -> None:
    device = make_device({"id": "d"}, [integer(1)]).with_point_name("1", None, "Inside")
    assert device.points["t"].name == "Inside"
    renewed = device.with_points({"t": integer(2)}, 99)
    assert renewed.points["t"].name == "Inside" and renewed.points["t"].scale == 2
    assert renewed.specification_fetched_at_ms == 99
    item = StatusItem("t", 5, point=renewed.points["t"])
    assert (item.name, item.scaled) == ("Inside", 0.05)
