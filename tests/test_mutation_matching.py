"""Numbers in text (issue 15): Tuya sends ``"25"`` for 25, but ``"inf"`` and ``"-inf"`` are no
readings, so no bound holds for them and they equal no number."""

from __future__ import annotations

import pytest

from tuya_events.matching import compile_match
from tuya_events.tuya.events import build_event


def holds(condition: object, value: object) -> bool:
    event = build_event({"devId": "d1", "status": [{"code": "v", "value": value}]}, 4)
    return compile_match({"value": {"v": condition}})(event)


@pytest.mark.parametrize(
    ("condition", "value"),
    [
        ({"gt": 10}, "inf"),
        ({"gte": 10}, "Infinity"),
        ({"lt": 10}, "-inf"),
        ({"lte": 10}, "-Infinity"),
        ({"equals": float("inf")}, "inf"),
        ({"in": [float("inf")]}, "inf"),
    ],
)
def test_infinite_text_is_not_a_number(condition: object, value: str) -> None:
    assert holds(condition, value) is False


@pytest.mark.parametrize(("condition", "value"), [({"gt": 10}, "1e3"), ({"lt": 0}, "-0.5")])
def test_finite_numbers_in_text_are_numbers(condition: object, value: str) -> None:
    assert holds(condition, value) is True
