"""Routing rules, table-tested against typed events."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tuya_events.matching import compile_match
from tuya_events.tuya.events import Event, build_event


def status(device: str = "d1", product: str = "pk1", **values: object) -> Event:
    items = [{"code": code, "value": value, "t": 1700000000000} for code, value in values.items()]
    return build_event({"devId": device, "productKey": product, "dataId": "x", "status": items}, 4)


def device_event(biz_code: str = "online", device: str = "d1", **biz_data: object) -> Event:
    return build_event(
        {"devId": device, "productKey": "pk1", "bizCode": biz_code, "bizData": biz_data}, 20
    )


GENERIC = build_event({"devId": "d9", "bizCode": "deviceOnline"}, 1001)

CASES = [
    # (rule, event, expected)
    (None, status(switch_1=True), True),
    ({}, GENERIC, True),
    ({"protocol": 4}, status(switch_1=True), True),
    ({"protocol": [20, 1001]}, status(switch_1=True), False),
    ({"protocol": [20, 1001]}, GENERIC, True),
    ({"kind": "device_event"}, device_event(), True),
    ({"kind": ["status"]}, device_event(), False),
    ({"biz_code": ["online", "offline"]}, device_event("offline"), True),
    ({"biz_code": "online"}, device_event("nameUpdate"), False),
    ({"biz_code": "deviceOnline"}, GENERIC, True),
    ({"device_id": ["d1", "d2"]}, status("d2", switch_1=True), True),
    ({"device_id": ["d1", "d2"]}, status("d3", switch_1=True), False),
    ({"product_key": "pk1"}, status(product="pk1", a=1), True),
    ({"product_key": "pk1"}, status(product="pk2", a=1), False),
    ({"status_code": "doorcontact_state"}, status(doorcontact_state=True), True),
    ({"status_code": ["switch_1", "switch_2"]}, status(doorcontact_state=True), False),
    ({"status_code": "switch_1"}, device_event(), False),
    ({"value": {"doorcontact_state": True}}, status(doorcontact_state=True), True),
    ({"value": {"doorcontact_state": {"equals": True}}}, status(doorcontact_state=False), False),
    ({"value": {"doorcontact_state": True}}, status(other=True), False),
    ({"value": {"temp": {"gt": 300}}}, status(temp=301), True),
    ({"value": {"temp": {"gt": 300}}}, status(temp=300), False),
    ({"value": {"temp": {"gte": 300}}}, status(temp=300), True),
    ({"value": {"temp": {"lt": 10, "gte": 0}}}, status(temp=5), True),
    ({"value": {"temp": {"lt": 10, "gte": 0}}}, status(temp=-1), False),
    ({"value": {"temp": {"gt": 20}}}, status(temp="25"), True),  # numbers sent as text
    ({"value": {"temp": {"gt": 20}}}, status(temp="warm"), False),
    ({"value": {"temp": {"gt": 20}}}, status(temp=True), False),
    ({"value": {"mode": {"in": ["auto", "eco"]}}}, status(mode="eco"), True),
    ({"value": {"mode": {"in": ["auto", "eco"]}}}, status(mode="boost"), False),
    ({"value": {"mode": {"not_in": ["auto"]}}}, status(mode="boost"), True),
    ({"value": {"mode": {"not_equals": "auto"}}}, status(mode="auto"), False),
    ({"value": {"level": 3}}, status(level="3"), True),
    ({"value": {"switch_1": True}}, status(switch_1="true"), True),
    ({"value": {"switch_1": 1}}, status(switch_1=True), False),  # a bool is not the number 1
    ({"value": {"battery": {"exists": False}}}, status(switch_1=True), True),
    ({"value": {"battery": {"exists": True}}}, status(battery=80), True),
    (
        {"biz_data": {"upgradeStatus": {"equals": 3}}},
        device_event("upgradeStatus", upgradeStatus=3),
        True,
    ),
    (
        {"biz_data": {"upgradeStatus": {"in": [4, 7]}}},
        device_event("upgradeStatus", upgradeStatus=3),
        False,
    ),
    ({"biz_data": {"name": {"exists": True}}}, status(a=1), False),
    # AND across keys
    (
        {"product_key": "pk1", "value": {"doorcontact_state": True}},
        status(product="pk1", doorcontact_state=True),
        True,
    ),
    (
        {"product_key": "pk1", "value": {"doorcontact_state": True}},
        status(product="pk2", doorcontact_state=True),
        False,
    ),
    # OR across a list of rules
    ([{"biz_code": "offline"}, {"value": {"temp": {"gt": 50}}}], status(temp=60), True),
    ([{"biz_code": "offline"}, {"value": {"temp": {"gt": 50}}}], device_event("offline"), True),
    ([{"biz_code": "offline"}, {"value": {"temp": {"gt": 50}}}], status(temp=20), False),
]


@pytest.mark.parametrize(("rule", "event", "expected"), CASES)
def test_rule(rule: object, event: Event, expected: bool) -> None:
    assert compile_match(rule)(event) is expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("rule", "location"),
    [
        ({"protocl": 4}, ("protocl",)),
        ({"value": {"temp": {"greater": 3}}}, ("value", "temp", "greater")),
        ({"value": {"temp": {"gt": "high"}}}, ("value", "temp", "gt")),
        ({"protocol": "four"}, ("protocol", 0)),
    ],
)
def test_bad_rules_name_the_key(rule: dict, location: tuple) -> None:
    with pytest.raises(ValidationError) as caught:
        compile_match(rule)
    assert tuple(caught.value.errors()[0]["loc"]) == location


def test_unmatched_events_are_counted_not_errors(tmp_path) -> None:
    import asyncio

    from tests.pipeline_support import Harness, RecordingHandler, status_message
    from tests.support.settings import make_settings
    from tests.support.waiting import wait_until
    from tuya_events.pipeline.routes import Route

    doors = RecordingHandler("doors")

    async def scenario() -> None:
        harness = Harness(
            make_settings(tmp_path), [Route(doors, compile_match({"device_id": "dev01"}))]
        )
        async with harness as h:
            for device in ("dev00", "dev01", "dev02"):
                h.source.publish(*status_message(device, 0))
            await wait_until(lambda: len(h.source.acknowledged) == 3)
            assert h.outcomes("doors", "unmatched") == 2

    asyncio.run(scenario())
    assert doors.seen == [("dev01", 0)]
