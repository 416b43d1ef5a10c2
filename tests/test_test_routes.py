"""``tuya-events test-routes`` (issue 20): routing rules checked in CI, as the user runs it.

The installed command on real files; and :func:`tuya_events.matching.explain` held against
:func:`~tuya_events.matching.compile_match` over generated rules and events, so the reason it
gives for a non-match can never contradict the match itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from tests import vectors as v
from tests.support.cli import run_cli
from tuya_events.catalogue.enrich import apply
from tuya_events.matching import compile_match, explain
from tuya_events.tuya.devices import UNKNOWN_DEVICE, DataPoint, make_device
from tuya_events.tuya.events import build_event

HANDLERS = [
    {"type": "log"},
    {"type": "log", "name": "door", "match": {"value": {"doorcontact_state": True}}},
    {
        "type": "log",
        "name": "hot",
        "match": [
            {"category": "wsdcg", "scaled": {"va_temperature": {"gt": 30}}},
            {"device_name": "Attic"},
        ],
    },
    {"type": "log", "name": "presence", "match": {"event_name": ["online", "offline"]}},
]
CELLAR = {
    "name": "Cellar",
    "category": "wsdcg",
    "points": [{"code": "va_temperature", "type": "Integer", "scale": 1, "unit": "℃"}],
}


def status(device: str, code: str, value: Any) -> dict[str, Any]:
    return {"devId": device, "productKey": "pk", "status": [{"code": code, "value": value}]}


def write_config(tmp_path: Path, enrichment: bool = True, handlers: Any = None) -> Path:
    config = tmp_path / "config.yaml"
    tree = {
        "tuya": {"access_id": v.ACCESS_ID, "access_secret": v.ACCESS_SECRET, "region": "eu"},
        "dead_letter": {"path": str(tmp_path / "dl.sqlite3")},
        "enrichment": {"enabled": enrichment},
        "handlers": HANDLERS if handlers is None else handlers,
    }
    config.write_text(yaml.safe_dump(tree, allow_unicode=True))
    return config


def test_routes(tmp_path: Path, cases: Any, **config: Any) -> tuple[int, str, str]:
    path = tmp_path / "cases.yaml"
    path.write_text(cases if isinstance(cases, str) else yaml.safe_dump(cases, allow_unicode=True))
    result = run_cli("test-routes", "-c", write_config(tmp_path, **config), path)
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, result.stdout, result.stderr


test_routes.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


def test_cases_that_hold_exit_0_and_say_where_each_event_goes(tmp_path: Path) -> None:
    cases = [
        {
            "name": "door opened",
            "message": status("d1", "doorcontact_state", True),
            "expect": ["log", "door"],
        },
        {
            "name": "hot cellar",
            "message": status("d2", "va_temperature", 315),
            "device": CELLAR,
            "expect": ["log", "hot"],
        },
        {
            "name": "online, legacy",
            "protocol": 20,
            "message": {"devId": "d1", "bizCode": "online", "bizData": {"time": 1700000000}},
            "expect": ["log", "presence"],
        },
        {
            "name": "online, IoT Core",
            "protocol": 1001,
            "message": {"bizCode": "deviceOnline", "bizData": {"devId": "d1"}, "ts": 1},
            "expect": ["log", "presence"],
        },
    ]
    code, out, _ = test_routes(tmp_path, cases)
    assert code == 0, out
    assert "PASS door opened\n  handlers: log, door\n" in out
    assert "PASS hot cellar\n  handlers: log, hot\n" in out
    assert "not door: value.doorcontact_state is missing, wanted {equals: true}" in out
    assert "4 cases: 4 passed, 0 failed" in out


def test_a_case_that_fails_exits_1_naming_the_rule(tmp_path: Path) -> None:
    cases = [
        {"name": "mild cellar", "message": status("d2", "va_temperature", 235), "device": CELLAR,
         "expect": ["log", "hot"]},
        {"name": "closed door", "message": status("d1", "doorcontact_state", False),
         "expect": ["log"]},
    ]  # fmt: skip
    code, out, _ = test_routes(tmp_path, cases)
    assert code == 1
    assert "FAIL mild cellar\n  expected: log, hot\n  handlers: log\n" in out
    assert "  not hot (expected): no rule matched\n" in out
    assert "    rule 1: scaled.va_temperature is 23.5, wanted {gt: 30.0}\n" in out
    assert '    rule 2: device_name is "Cellar", not "Attic"\n' in out
    assert "PASS closed door" in out
    assert "not door: value.doorcontact_state is false, wanted {equals: true}" in out
    assert "2 cases: 1 passed, 1 failed" in out


def test_without_device_data_the_device_is_unknown(tmp_path: Path) -> None:
    case = [{"name": "c", "message": status("d2", "va_temperature", 315), "expect": ["log"]}]
    code, out, _ = test_routes(tmp_path, case)
    assert code == 0
    assert "rule 1: category: the device is not in the catalogue; scaled.va_temperature is " in out
    assert "rule 2: device_name: the device is not in the catalogue" in out


def test_with_enrichment_off_device_data_is_not_used(tmp_path: Path) -> None:
    case = [
        {"name": "c", "message": status("d2", "va_temperature", 315), "device": CELLAR,
         "expect": ["log", "hot"]},
    ]  # fmt: skip
    code, out, _ = test_routes(tmp_path, case, enrichment=False)
    assert code == 1
    assert "category: the event is not enriched (enrichment is off)" in out
    assert "note: enrichment is off in this configuration: the device data is not used" in out


def test_tuyas_specification_form_is_accepted_as_device_data(tmp_path: Path) -> None:
    spec = {"status": [{"code": "va_temperature", "type": "Integer",
                        "values": '{"unit":"℃","scale":1,"min":-200,"max":600}'}]}  # fmt: skip
    device = {"name": "Cellar", "category": "wsdcg", "specification": spec}
    case = [{"name": "c", "message": status("d2", "va_temperature", 315), "device": device,
             "expect": ["log", "hot"]}]  # fmt: skip
    assert test_routes(tmp_path, case)[0] == 0


@pytest.mark.parametrize(
    ("cases", "problem"),
    [
        ([{"name": "c", "message": {}, "expect": ["lgo"]}], "cases[0].expect[0]: no handler"),
        ([{"name": "c", "message": {}, "expect": [], "colour": 1}], "cases[0].colour"),
        ([{"name": "c", "message": "not a mapping", "expect": []}], "cases[0].message"),
        ([{"message": {}, "expect": []}], "cases[0].name"),
        ([{"name": "c", "message": {}, "expect": [], "device": {"name": "x"}}], "cases[0].device"),
        ({"name": "c"}, "non-empty list of cases"),
        ("- name: [unclosed\n", "line"),
        ("- {name: a, name: b, message: {}, expect: []}\n", "duplicate key"),
    ],
)
def test_a_bad_cases_file_exits_78(tmp_path: Path, cases: Any, problem: str) -> None:
    code, out, err = test_routes(tmp_path, cases)
    assert code == 78, out + err
    assert problem in err


def test_a_bad_configuration_or_a_missing_file_exits_78(tmp_path: Path) -> None:
    handlers = [{"type": "log", "match": {"colour": "red"}}]
    code, _, err = test_routes(tmp_path, [{"name": "c", "message": {}, "expect": []}],
                               handlers=handlers)  # fmt: skip
    assert code == 78 and "handlers[0].match.colour" in err
    result = run_cli("test-routes", "-c", write_config(tmp_path), tmp_path / "absent.yaml")
    assert result.returncode == 78 and "cannot read" in result.stderr


# -- explain agrees with the match ----------------------------------------------------------

CODES = ("doorcontact_state", "va_temperature", "battery")
VALUES = st.one_of(st.booleans(), st.integers(-5, 400), st.sampled_from(["low", "25", ""]))
CONDITIONS = st.one_of(
    VALUES,
    st.fixed_dictionaries(
        {},
        optional={
            "equals": VALUES,
            "gt": st.integers(-5, 400),
            "lte": st.integers(-5, 400),
            "in": st.lists(VALUES, max_size=3),
            "exists": st.booleans(),
        },
    ),
)
RULE = st.fixed_dictionaries(
    {},
    optional={
        "kind": st.sampled_from(["status", "device_event", ["status", "generic"]]),
        "protocol": st.sampled_from([4, 20, [4, 1001]]),
        "device_id": st.sampled_from(["d1", ["d1", "d2"]]),
        "status_code": st.sampled_from(CODES),
        "value": st.dictionaries(st.sampled_from(CODES), CONDITIONS, max_size=2),
        "scaled": st.dictionaries(st.sampled_from(CODES), CONDITIONS, max_size=2),
        "device_name": st.sampled_from(["Cellar", ["Attic", "Cellar"]]),
        "category": st.sampled_from(["wsdcg", "mcs"]),
        "event_name": st.sampled_from(["online", ["offline", "renamed"]]),
        "biz_data": st.dictionaries(st.sampled_from(["time", "devId"]), CONDITIONS, max_size=1),
    },
)
DEVICE = make_device(
    {"id": "d1", "name": "Cellar", "category": "wsdcg"},
    [DataPoint("va_temperature", "Integer", unit="℃", scale=1), DataPoint("battery", "Enum")],
)


@st.composite
def events(draw: st.DrawFn) -> Any:
    device_id = draw(st.sampled_from(["d1", "d2"]))
    if draw(st.booleans()):
        items = draw(st.dictionaries(st.sampled_from(CODES), VALUES, min_size=1, max_size=3))
        document = {
            "devId": device_id,
            "status": [{"code": c, "value": x} for c, x in items.items()],
        }
        event = build_event(document, 4)
    else:
        code = draw(st.sampled_from(["online", "offline", "nameUpdate"]))
        document = {"devId": device_id, "bizCode": code, "bizData": {"time": draw(VALUES)}}
        event = build_event(document, draw(st.sampled_from([20, 1001])))
    enrichment = draw(st.sampled_from(["off", "unknown", "known"]))
    if enrichment == "unknown":
        event.device = UNKNOWN_DEVICE
    elif enrichment == "known":
        apply(event, DEVICE)
    return event


@settings(max_examples=400, deadline=None)
@given(rules=st.one_of(RULE, st.lists(RULE, min_size=1, max_size=3)), event=events())
def test_explain_gives_a_reason_exactly_when_the_rules_do_not_match(rules: Any, event: Any) -> None:
    matched = compile_match(rules)(event)
    reasons = explain(rules, event)
    assert matched == (reasons == []), (rules, event, reasons)
    assert all(reason and not reason.endswith(": ") for reason in reasons)
