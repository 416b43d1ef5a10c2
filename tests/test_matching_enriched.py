"""The match keys that read enrichment (``device_name``, ``category``, ``scaled``), each in both
directions, on a known device, an unknown one, and with enrichment off (where they never hold,
so a rule written for an enriched daemon routes nothing by mistake)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from tests.support.enriched_events import enrich, thermometer
from tuya_events.matching import compile_match
from tuya_events.tuya.devices import UNKNOWN_DEVICE, DeviceView
from tuya_events.tuya.events import Event, build_event


def report(**values: Any) -> Event:
    items = [{"code": code, "value": value, "t": 1700000000000} for code, value in values.items()]
    return build_event({"devId": "dev-a", "productKey": "pk1", "dataId": "x", "status": items}, 4)


def online() -> Event:
    return build_event({"devId": "dev-a", "bizCode": "online", "bizData": {"time": 1}}, 20)


CELLAR = thermometer()


def known(event: Event, device: DeviceView = CELLAR) -> Event:
    return enrich(event, device)


def matches(rule: Any, event: Event) -> bool:
    return compile_match(rule)(event)


# --- device_name and category ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ({"device_name": "Cellar"}, True),
        ({"device_name": ["Attic", "Cellar"]}, True),
        ({"device_name": "Attic"}, False),
        ({"device_name": "cellar"}, False),  # exact names
        ({"category": "wsdcg"}, True),
        ({"category": ["cz", "wsdcg"]}, True),
        ({"category": "cz"}, False),
        ({"category": "wsdcg", "device_name": "Attic"}, False),  # all keys must hold
        ({"category": "wsdcg", "device_name": "Cellar", "kind": "status"}, True),
    ],
)
def test_device_name_and_category_on_a_known_device(rule: dict[str, Any], expected: bool) -> None:
    assert matches(rule, known(report(va_temperature=235))) is expected
    assert matches(rule | {"kind": ["status", "device_event"]}, known(online())) is expected


@pytest.mark.parametrize("rule", [{"device_name": "Cellar"}, {"category": "wsdcg"}])
def test_device_keys_never_hold_for_an_unknown_device_or_with_enrichment_off(
    rule: dict[str, Any],
) -> None:
    assert matches(rule, known(report(va_temperature=235))) is True
    assert matches(rule, enrich(report(va_temperature=235), UNKNOWN_DEVICE)) is False
    assert matches(rule, report(va_temperature=235)) is False  # device None
    assert matches(rule, enrich(online(), UNKNOWN_DEVICE)) is False


def test_a_known_device_without_a_name_matches_no_name() -> None:
    nameless = thermometer(name=None)
    assert matches({"device_name": "Cellar"}, known(report(x=1), nameless)) is False
    assert matches({"category": "wsdcg"}, known(report(x=1), nameless)) is True


def test_device_keys_in_a_list_of_rules() -> None:
    rules = [{"device_name": "Attic"}, {"category": "wsdcg"}]
    assert matches(rules, known(report(x=1))) is True
    assert matches(rules, report(x=1)) is False


# --- scaled ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "raw", "expected"),
    [
        ({"gt": 23.0}, 235, True),  # 23.5 °C
        ({"gt": 24.0}, 235, False),
        ({"gt": 200}, 235, False),  # the raw value would pass: the scaled one does not
        ({"lte": 23.5}, 235, True),
        ({"lt": 23.5}, 235, False),
        ({"gte": -20}, -200, True),
        ({"gte": -19.9}, -200, False),
        ({"equals": 23.5}, 235, True),
        ({"equals": 235}, 235, False),
        ({"in": [23.5, 24.0]}, 240, True),
        ({"not_in": [23.5, 24.0]}, 240, False),
        ({"exists": True}, 235, True),
        ({"exists": False}, 235, False),
    ],
)
def test_scaled_conditions_on_an_integer_point(
    condition: dict[str, Any], raw: int, expected: bool
) -> None:
    event = known(report(va_temperature=raw))
    assert matches({"scaled": {"va_temperature": condition}}, event) is expected


def test_scaled_of_a_point_with_scale_0_and_of_other_types_is_the_value() -> None:
    event = known(report(va_humidity=61, battery_state="low"))
    assert matches({"scaled": {"va_humidity": {"gt": 60}}}, event) is True
    assert matches({"scaled": {"va_humidity": {"gt": 61}}}, event) is False
    assert matches({"scaled": {"battery_state": "low"}}, event) is True
    assert matches({"scaled": {"battery_state": "high"}}, event) is False


def test_value_keeps_testing_the_raw_value_beside_scaled() -> None:
    event = known(report(va_temperature=235))
    assert matches({"value": {"va_temperature": {"gt": 200}}}, event) is True
    rule = {"value": {"va_temperature": {"gt": 200}}, "scaled": {"va_temperature": {"gt": 30}}}
    assert matches(rule, event) is False


@pytest.mark.parametrize(
    "event",
    [
        known(report(va_temperature=235), UNKNOWN_DEVICE),  # unknown device: no points
        report(va_temperature=235),  # enrichment off
        known(report(other_code=235)),  # known device, a code without a specification
        known(report(va_humidity=50)),  # the code is not in the report
        known(online()),  # not a status report
    ],
    ids=["unknown-device", "enrichment-off", "point-not-known", "code-absent", "device-event"],
)
def test_scaled_of_a_point_not_known_is_missing(event: Event) -> None:
    assert matches({"scaled": {"va_temperature": {"gt": -1000}}}, event) is False
    assert matches({"scaled": {"va_temperature": {"exists": True}}}, event) is False
    assert matches({"scaled": {"va_temperature": {"exists": False}}}, event) is True
    assert matches({"scaled": {"va_temperature": {"not_equals": 1}}}, event) is True


def test_several_scaled_conditions_must_all_hold() -> None:
    rule = {"scaled": {"va_temperature": {"gt": 20}, "va_humidity": {"lt": 70}}}
    assert matches(rule, known(report(va_temperature=235, va_humidity=61))) is True
    assert matches(rule, known(report(va_temperature=235, va_humidity=71))) is False
    assert matches(rule, known(report(va_temperature=195, va_humidity=61))) is False
    assert matches(rule, known(report(va_temperature=235))) is False  # humidity missing


def test_the_new_keys_are_validated() -> None:
    with pytest.raises(ValidationError):
        compile_match({"device_name": [1, 2]})
    with pytest.raises(ValidationError):
        compile_match({"scaled": {"va_temperature": {"greater": 1}}})
    with pytest.raises(ValidationError):
        compile_match({"categroy": "wsdcg"})
