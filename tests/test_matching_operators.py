"""Every operator of the routing language in both directions, and rules of several keys: all of
them must hold (a rule reduced to its first condition, or an ignored ``not_in``, routes events to
handlers that must not see them)."""

from __future__ import annotations

import itertools

import pytest

from tuya_events.matching import compile_match
from tuya_events.tuya.events import Event, build_event


def status(device: str = "d1", product: str = "pk1", **values: object) -> Event:
    items = [{"code": code, "value": value, "t": 1700000000000} for code, value in values.items()]
    return build_event({"devId": device, "productKey": product, "dataId": "x", "status": items}, 4)


def device_event(biz_code: str = "online", device: str = "d1", **biz_data: object) -> Event:
    return build_event(
        {"devId": device, "productKey": "pk1", "bizCode": biz_code, "bizData": biz_data}, 20
    )


def holds(condition: object, value: object) -> bool:
    """The condition on a status value and on a bizData field: both must agree."""
    on_status = compile_match({"value": {"v": condition}})(status(v=value))
    on_biz = compile_match({"biz_data": {"v": condition}})(device_event(v=value))
    assert on_status == on_biz, (condition, value)
    return on_status


def missing(condition: object) -> bool:
    on_status = compile_match({"value": {"v": condition}})(status(other=1))
    on_biz = compile_match({"biz_data": {"v": condition}})(device_event(other=1))
    assert on_status == on_biz, condition
    return on_status


OPERATOR_CASES = [
    # (condition, value, expected)
    ({"equals": 25}, 25, True),
    ({"equals": 25}, "25", True),
    ({"equals": 25}, 26, False),
    ({"equals": True}, True, True),
    ({"equals": True}, "true", True),
    ({"equals": True}, 1, False),
    ({"equals": True}, False, False),
    ({"equals": "open"}, "open", True),
    ({"equals": "open"}, "closed", False),
    ({"equals": None}, None, True),
    (True, True, True),  # shorthand for equals
    (True, False, False),
    ({"not_equals": 25}, 26, True),
    ({"not_equals": 25}, "25", False),
    ({"not_equals": 25}, 25, False),
    ({"in": [1, 2]}, 2, True),
    ({"in": [1, 2]}, "1", True),
    ({"in": [1, 2]}, 3, False),
    ({"in": []}, 1, False),
    ({"not_in": [1, 2]}, 3, True),
    ({"not_in": [1, 2]}, 2, False),
    ({"not_in": [1, 2]}, "1", False),
    ({"not_in": []}, 1, True),
    ({"gt": 10}, 11, True),
    ({"gt": 10}, 10, False),
    ({"gt": 10}, 9, False),
    ({"gte": 10}, 10, True),
    ({"gte": 10}, 9.5, False),
    ({"gte": 10}, 11, True),
    ({"lt": 10}, 9, True),
    ({"lt": 10}, 10, False),
    ({"lt": 10}, 11, False),
    ({"lte": 10}, 10, True),
    ({"lte": 10}, 10.5, False),
    ({"lte": 10}, 9, True),
    ({"gt": 10}, "11", True),
    ({"gt": 10}, "eleven", False),
    ({"gt": 0}, True, False),  # a boolean is not a number
    ({"lt": 10}, "nan", False),
    ({"lt": 10}, None, False),
    ({"exists": True}, 0, True),
    ({"exists": False}, 0, False),
    ({"gt": 10, "lt": 20}, 15, True),  # every given operator must hold
    ({"gt": 10, "lt": 20}, 25, False),
    ({"gt": 10, "lt": 20}, 5, False),
    ({"in": [1, 2, 3], "not_in": [2]}, 2, False),
    ({"in": [1, 2, 3], "not_in": [2]}, 3, True),
    ({"equals": 5, "not_equals": 5}, 5, False),
]


@pytest.mark.parametrize(("condition", "value", "expected"), OPERATOR_CASES)
def test_operator(condition: object, value: object, expected: bool) -> None:
    assert holds(condition, value) is expected


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ({"exists": True}, False),
        ({"exists": False}, True),
        ({"equals": None}, False),  # missing is not null
        ({"not_equals": 25}, True),
        ({"in": [None]}, False),
        ({"not_in": [1]}, True),
        ({"gt": 0}, False),
        ({"lte": 0}, False),
    ],
)
def test_operator_on_a_missing_value(condition: object, expected: bool) -> None:
    assert missing(condition) is expected


def test_value_conditions_do_not_apply_to_other_kinds() -> None:
    assert not compile_match({"value": {"v": {"exists": True}}})(device_event(v=1))
    assert not compile_match({"biz_data": {"v": {"exists": True}}})(status(v=1))
    generic = build_event({"devId": "d9", "bizCode": "x", "bizData": {"v": 1}}, 1001)
    assert not compile_match({"biz_data": {"v": {"exists": True}}})(generic)


def test_every_value_key_must_hold() -> None:
    rule = compile_match({"value": {"a": 1, "b": 2}})
    assert rule(status(a=1, b=2))
    assert not rule(status(a=1, b=3))
    assert not rule(status(a=0, b=2))
    assert not rule(status(a=1))
    biz = compile_match({"biz_data": {"a": 1, "b": 2}})
    assert biz(device_event(a=1, b=2))
    assert not biz(device_event(a=1, b=3))
    assert not biz(device_event(a=0, b=2))


# One condition of each key, with an event attribute that satisfies it and one that does not.
KEY_CONDITIONS = {
    "kind": "status",
    "protocol": 4,
    "device_id": "d1",
    "product_key": "pk1",
    "status_code": "switch_1",
    "value": {"switch_1": True},
}


def _event(failing: str | None) -> Event:
    """A status report satisfying every key of KEY_CONDITIONS except ``failing``."""
    device = "d2" if failing == "device_id" else "d1"
    product = "pk2" if failing == "product_key" else "pk1"
    values: dict[str, object] = {"switch_1": failing != "value"}
    if failing == "status_code":
        values = {"other": True}
    event = status(device, product, **values)
    if failing == "protocol":
        event.protocol = 5
    return event


@pytest.mark.parametrize(
    "keys",
    [
        c
        for r in range(2, len(KEY_CONDITIONS) + 1)
        for c in itertools.combinations(KEY_CONDITIONS, r)
    ],
    ids=lambda keys: "+".join(keys),
)
def test_every_key_of_a_multi_key_rule_must_hold(keys: tuple[str, ...]) -> None:
    rule = compile_match({key: KEY_CONDITIONS[key] for key in keys})
    assert rule(_event(None))
    for key in keys:
        if key == "kind":
            assert not rule(device_event()), keys
        else:
            assert not rule(_event(key)), (keys, key)


def test_biz_code_with_other_keys() -> None:
    rule = compile_match({"biz_code": "online", "device_id": "d1", "biz_data": {"x": 1}})
    assert rule(device_event("online", "d1", x=1))
    assert not rule(device_event("offline", "d1", x=1))
    assert not rule(device_event("online", "d2", x=1))
    assert not rule(device_event("online", "d1", x=2))


def test_a_list_of_values_is_any_of_and_a_list_of_rules_any_rule() -> None:
    rule = compile_match({"device_id": ["d1", "d3"], "product_key": "pk1"})
    assert rule(status("d1")) and rule(status("d3"))
    assert not rule(status("d2")) and not rule(status("d3", "pk2"))
    either = compile_match([{"device_id": "d1"}, {"product_key": "pk9"}])
    assert either(status("d1")) and either(status("d7", "pk9"))
    assert not either(status("d7", "pk1"))
    assert compile_match([])(status()) and compile_match(None)(status())
