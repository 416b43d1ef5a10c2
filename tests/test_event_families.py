"""Every Tuya message family typed: kinds, event_name, decoded values, notices, resync marker."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from tests import vectors as v
from tuya_events.matching import compile_match
from tuya_events.tuya.codec import EM_ECB, EM_GCM, TuyaCodec, TuyaEncoder
from tuya_events.tuya.errors import DecodeError
from tuya_events.tuya.events import (
    EVENT_NAMES,
    MAX_EMBEDDED_CHARS,
    MAX_EMBEDDED_CONTAINERS,
    MAX_EMBEDDED_DEPTH,
    DeviceEvent,
    Event,
    GenericEvent,
    NoticeEvent,
    StatusItem,
    StatusReport,
    base64_json,
    build_event,
)

ENCODER = TuyaEncoder(v.ACCESS_ID, v.ACCESS_SECRET)
CODEC = TuyaCodec(v.ACCESS_SECRET)
T_MS = 1700000000999
DOCS = Path(__file__).resolve().parent.parent / "docs" / "events.md"


def family(name: str) -> Event:
    protocol, document, _, _ = v.FAMILIES[name]
    return build_event(document, protocol, 1700000000999)


def b64(document: Any) -> str:
    return base64.b64encode(orjson.dumps(document)).decode()


# -- every family decodes to its kind ------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(v.FAMILIES))
def test_every_family_decodes_to_its_kind(name: str) -> None:
    protocol, document, kind, event_name = v.FAMILIES[name]
    event = build_event(document, protocol, 1700000000999)
    assert event.kind == kind
    assert event.protocol == protocol and event.document is document
    assert event.biz_code == document.get("bizCode")  # the raw code, unchanged
    if kind == "device_event":
        assert isinstance(event, DeviceEvent) and event.event_name == event_name
        assert event.device_id == v.DEVICE_ID
        assert event.biz_data is document["bizData"]
    else:
        assert not isinstance(event, DeviceEvent)
    orjson.dumps(event.as_dict())


@pytest.mark.parametrize("em", [EM_ECB, EM_GCM])
@pytest.mark.parametrize("name", sorted(v.FAMILIES))
def test_every_family_through_the_codec_encrypted(name: str, em: str) -> None:
    protocol, document, kind, _ = v.FAMILIES[name]
    body, properties = ENCODER.encode(document, em=em, protocol=protocol, t_ms=1700000000999)
    event = CODEC.decode(body, properties)
    assert event.kind == kind
    assert event.as_dict() == build_event(document, protocol, 1700000000999).as_dict()


def test_iot_core_fields_come_from_bizdata() -> None:
    event = family("device_online")
    assert isinstance(event, DeviceEvent)
    assert event.device_id == v.DEVICE_ID
    assert event.product_key == v.PRODUCT_KEY  # bizData.productId
    assert event.data_id == "deviceOnline-0001"
    assert event.timestamp_ms == 1700000000123
    report = family("property_message")
    assert isinstance(report, StatusReport)
    assert report.product_key == v.PRODUCT_KEY and report.data_id == "devicePropertyMessage-0001"
    assert [(s.code, s.value, s.dp_id) for s in report.statuses] == [("va_temperature", 235, "1")]


def test_a_top_level_product_key_and_data_id_win_over_bizdata() -> None:
    event = build_event(
        {
            "bizCode": "deviceOnline",
            "productKey": "top",
            "dataId": "top-id",
            "bizData": {"devId": "d", "productId": "inner", "dataId": "inner-id"},
        },
        1001,
    )
    assert (event.product_key, event.data_id) == ("top", "top-id")


# -- event_name: the table -----------------------------------------------------------------------

# Written out here, not read from EVENT_NAMES, so that a changed mapping fails a test.
TABLE = {
    "online": ["online", "deviceOnline"],
    "offline": ["offline", "deviceOffline"],
    "renamed": ["nameUpdate", "deviceNameUpdate"],
    "dp_renamed": ["dpNameUpdate"],
    "bound": ["bindUser", "deviceBindSpace"],
    "unbound": ["deviceUnbindSpace"],
    "deleted": ["delete"],
    "transferred": ["deviceTransfer"],
    "frozen": ["deviceFreeze"],
    "unfrozen": ["deviceUnFreeze"],
    "ota_progress": ["upgradeStatus", "upgradeProcess", "deviceOtaProgress"],
    "shared": ["share"],
    "signal": ["deviceSignal"],
    "dp_command": ["deviceDpCommand"],
    "model_event": ["deviceEventMessage"],
    "action_response": ["deviceActionResponseMessage"],
    "query_response": ["deviceQueryPropertyMessage"],
    "notify": ["event_notify"],
}
CODES = [(code, name) for name, codes in TABLE.items() for code in codes]


@pytest.mark.parametrize("protocol", [20, 1000, 1001, 1002, None])
@pytest.mark.parametrize(("biz_code", "event_name"), CODES)
def test_every_code_of_the_table_has_its_event_name(
    biz_code: str, event_name: str, protocol: int | None
) -> None:
    event = build_event({"bizCode": biz_code, "bizData": {"devId": "d1"}}, protocol)
    assert isinstance(event, DeviceEvent)
    assert event.event_name == event_name and event.biz_code == biz_code
    assert event.as_dict()["event_name"] == event_name


def test_the_table_is_the_whole_mapping_and_the_documented_one() -> None:
    assert dict(CODES) == EVENT_NAMES
    documented: dict[str, str] = {}
    for row in re.finditer(r"^\| `(\w+)` \| (.+) \|$", DOCS.read_text(), re.MULTILINE):
        for code in re.findall(r"`(\w+)`", row.group(2)):
            documented.setdefault(code, row.group(1))
    for code, name in CODES:
        if code != "event_notify":  # documented per etype: doorbell / notify
            assert documented.get(code) == name, code


def test_unknown_bizcodes_on_device_protocols() -> None:
    legacy = build_event({"bizCode": "homeCreate", "bizData": {"uid": "u"}}, 20)
    assert isinstance(legacy, DeviceEvent) and legacy.event_name is None
    assert legacy.as_dict()["event_name"] is None
    iot = build_event({"bizCode": "somethingNew", "bizData": {"devId": "d"}}, 1001)
    assert isinstance(iot, GenericEvent)


# -- rules on event_name and source --------------------------------------------------------------


def test_one_rule_catches_both_families() -> None:
    online = compile_match({"event_name": "online"})
    assert online(family("online")) and online(family("device_online"))
    assert not online(family("offline")) and not online(family("device_offline"))
    assert not online(family("status")) and not online(family("automation"))
    assert not online(family("backlog_notice"))
    either = compile_match({"event_name": ["online", "offline"], "kind": "device_event"})
    assert all(either(family(n)) for n in ("online", "offline", "device_online", "device_offline"))
    assert not either(family("name_update"))
    assert compile_match({"event_name": "doorbell"})(family("doorbell"))
    assert compile_match({"event_name": "ota_progress"})(family("ota_progress"))
    assert compile_match({"event_name": "ota_progress"})(family("upgrade_process"))


def test_event_name_and_biz_code_together() -> None:
    rule = compile_match({"event_name": "online", "biz_code": "deviceOnline"})
    assert rule(family("device_online")) and not rule(family("online"))


@pytest.mark.parametrize("rule", [{"event_name": "onlien"}, {"source": "replay"}])
def test_unknown_names_in_rules_are_refused(rule: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        compile_match(rule)


def test_rules_on_source() -> None:
    resync = compile_match({"source": "resync"})
    live = compile_match({"source": ["live"]})
    assert resync(family("resync_status")) and not live(family("resync_status"))
    assert live(family("status")) and not resync(family("status"))
    assert compile_match({"source": ["live", "resync"]})(family("resync_status"))
    assert compile_match([{"source": "resync"}, {"event_name": "online"}])(family("online"))


@pytest.mark.parametrize(
    ("rule", "name", "expected"),
    [
        ({"protocol": 22}, "automation", True),
        ({"protocol": 22, "biz_code": "automationExternalAction"}, "automation", True),
        ({"protocol": 25, "biz_code": "sceneExecute"}, "scene", True),
        ({"protocol": [40, 43, 45]}, "outdoor_alert", True),
        ({"protocol": 43, "biz_code": "placeholderTrafficEvent"}, "traffic_center", True),
        ({"protocol": 45}, "voice_assistant", True),
        ({"protocol": 45}, "traffic_center", False),
        ({"biz_code": "spaceCreate"}, "space_create", True),
        ({"kind": "generic", "protocol": 25}, "scene", True),
        ({"kind": "device_event"}, "scene", False),
        ({"event_name": "online"}, "automation", False),
    ],
)
def test_generic_families_route_by_protocol_and_biz_code(
    rule: dict[str, Any], name: str, expected: bool
) -> None:
    event = family(name)
    assert isinstance(event, GenericEvent)
    assert compile_match(rule)(event) is expected


# -- values that are base64 of a JSON document ---------------------------------------------------


def test_a_camera_value_is_decoded_and_the_raw_value_kept() -> None:
    report = family("camera_picture")
    assert isinstance(report, StatusReport)
    item = report.statuses[0]
    assert item.value == v.CAMERA_PICTURE_B64
    assert item.decoded == v.CAMERA_PICTURE
    assert report.as_dict()["statuses"] == [
        {
            "code": "movement_detect_pic",
            "value": v.CAMERA_PICTURE_B64,
            "t": 1700000000000,
            "dp_id": None,
            "decoded": v.CAMERA_PICTURE,
        }
    ]
    enriched = item.as_dict(enriched=True)
    assert enriched["decoded"] == v.CAMERA_PICTURE and enriched["scaled"] is None


def test_ordinary_values_are_not_decoded_and_their_json_is_unchanged() -> None:
    report = family("status")
    assert report.as_dict()["statuses"] == [
        {"code": "switch_1", "value": False, "t": 1628229842692, "dp_id": "1"}
    ]
    colour = StatusItem("colour_data", '{"h":1,"s":2,"v":3}')
    assert colour.decoded is None and "decoded" not in colour.as_dict()


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        235,
        2.5,
        "",
        "ey",
        "eyes_closed",  # starts like base64 of '{"', is not base64
        "eyAAAAAA",  # base64, not JSON
        b64("just text"),  # base64 of a JSON string: not a document
        b64(12),
        "W3sibm9wZSI6",  # a JSON document cut short
        "AEQAbwBvAHIAQgBlAGwAbA==",  # base64 of UTF-16 text (a doorbell's alarm_message)
        "eyJh\nIjoxfQ==",  # a newline inside
        ["eyJhIjoxfQ=="],
        {"a": 1},
    ],
)
def test_values_that_are_not_base64_json(value: Any) -> None:
    assert base64_json(value) is None
    assert StatusItem("c", value).decoded is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b64({"a": 1}), {"a": 1}),
        (b64([{"a": 1}]), [{"a": 1}]),
        (b64(["x"]), ["x"]),
        (b64({"a": 1}).rstrip("="), {"a": 1}),  # padding left off
    ],
)
def test_values_that_are_base64_json(value: str, expected: Any) -> None:
    assert base64_json(value) == expected


def test_huge_deep_and_bracket_heavy_values_are_left_undecoded() -> None:
    huge = b64({"pad": "x" * MAX_EMBEDDED_CHARS})
    deep = b64(orjson.loads("[" * (MAX_EMBEDDED_DEPTH + 1) + "]" * (MAX_EMBEDDED_DEPTH + 1)))
    as_deep_as_allowed = orjson.loads("[" * MAX_EMBEDDED_DEPTH + "]" * MAX_EMBEDDED_DEPTH)
    many = [[] for _ in range(MAX_EMBEDDED_CONTAINERS)]  # one more than allowed, with the outer
    assert base64_json(huge) is None and base64_json(deep) is None
    assert base64_json(b64(as_deep_as_allowed)) == as_deep_as_allowed
    assert base64_json(b64(many)) is None and base64_json(b64(many[1:])) == many[1:]
    document = {
        "devId": "d",
        "status": [{"code": "p", "value": huge}, {"code": "q", "value": deep}],
    }
    event = build_event(document, 4)
    assert [item.get("decoded") for item in event.as_dict()["statuses"]] == [None, None]
    assert [item.value for item in event.statuses] == [huge, deep]  # kept as sent


# -- event_notify (doorbells) --------------------------------------------------------------------


def test_a_doorbell_notify() -> None:
    event = family("doorbell")
    assert isinstance(event, DeviceEvent) and event.notification is not None
    assert event.event_name == "doorbell" and event.biz_code == "event_notify"
    assert event.notification.type == "ac_doorbell"
    assert event.notification.data == "617bdf7a1700000000"
    assert event.notification.decoded is None
    assert event.as_dict()["notification"] == {"type": "ac_doorbell", "data": "617bdf7a1700000000"}
    assert event.biz_data["edata"] == "617bdf7a1700000000"  # kept as sent


@pytest.mark.parametrize(
    ("edata", "decoded"),
    [
        (b64({"files": ["a.jpeg"]}), {"files": ["a.jpeg"]}),
        ('{"files": ["a.jpeg"]}', {"files": ["a.jpeg"]}),
        ("{not json", None),
        (17, None),
        (None, None),
    ],
)
def test_notify_data_decoded_when_it_holds_json(edata: Any, decoded: Any) -> None:
    event = build_event(
        {"bizCode": "event_notify", "bizData": {"devId": "d", "etype": "doorbell", "edata": edata}},
        20,
    )
    assert isinstance(event, DeviceEvent) and event.notification is not None
    assert event.event_name == "doorbell"
    assert event.notification.data == edata and event.notification.decoded == decoded
    assert ("decoded" in event.as_dict()["notification"]) is (decoded is not None)


def test_notify_variants() -> None:
    other = build_event({"bizCode": "event_notify", "bizData": {"etype": "motion"}}, 20)
    assert isinstance(other, DeviceEvent) and other.event_name == "notify"
    top = build_event(
        {"bizCode": "event_notify", "devId": "d", "etype": "doorbell", "edata": "x", "bizData": 5},
        20,
    )
    assert isinstance(top, DeviceEvent) and top.notification is not None
    assert top.event_name == "doorbell" and top.notification.data == "x" and top.biz_data == {}
    # Reported on protocol 43 (unverified): still a doorbell, not a generic event.
    on_43 = build_event({"bizCode": "event_notify", "bizData": {"etype": "ac_doorbell"}}, 43)
    assert isinstance(on_43, DeviceEvent) and on_43.event_name == "doorbell"
    odd = build_event({"bizCode": "event_notify", "bizData": {"etype": ["doorbell"]}}, 20)
    assert isinstance(odd, DeviceEvent) and odd.event_name == "notify"
    assert odd.notification is not None and odd.notification.type is None


def test_only_event_notify_has_a_notification() -> None:
    event = family("online")
    assert isinstance(event, DeviceEvent)
    assert event.notification is None and "notification" not in event.as_dict()


# -- notices -------------------------------------------------------------------------------------


def test_a_backlog_notice() -> None:
    event = family("backlog_notice")
    assert isinstance(event, NoticeEvent) and event.kind == "notice"
    assert event.event_type == "pulsar_backlog_notice"
    assert event.event_data == orjson.loads(v.NOTICE_EVENT_DATA)
    assert event.event_data is not None and event.event_data["backLogNum"] == 2543
    assert event.document["bizData"]["eventData"] == v.NOTICE_EVENT_DATA  # the raw string kept
    assert event.device_id is None and event.timestamp_ms == 1700000000123
    out = event.as_dict()
    assert out["event_type"] == "pulsar_backlog_notice" and out["event_data"]["topic"]
    assert "source" not in out
    orjson.dumps(out)


@pytest.mark.parametrize(
    ("document", "protocol", "event_type", "event_data"),
    [
        # eventData that is not JSON, or not an object: a notice all the same.
        ({"bizCode": "HighPriorityNotice", "bizData": {"eventData": "{oops"}}, 10000, None, None),
        ({"bizCode": "HighPriorityNotice", "bizData": {"eventData": "[1]"}}, 10000, None, None),
        ({"bizCode": "HighPriorityNotice", "bizData": {"eventData": 7}}, 10000, None, None),
        ({"bizCode": "HighPriorityNotice", "bizData": "x"}, 10000, None, None),
        # Variants: already an object; at the top level; no bizCode; another protocol number.
        ({"bizData": {"eventType": "t", "eventData": {"a": 1}}}, 10000, "t", {"a": 1}),
        ({"eventType": "t", "eventData": '{"a": 1}'}, 10000, "t", {"a": 1}),
        ({"bizCode": "HighPriorityNotice", "bizData": {"eventType": 3}}, None, None, None),
        (
            {
                "bizCode": "HighPriorityNotice",
                "bizData": {"eventData": '{"a":' * 40 + "1" + "}" * 40},
            },
            10000,
            None,
            None,
        ),
    ],
)
def test_notice_variants(
    document: dict[str, Any], protocol: int | None, event_type: Any, event_data: Any
) -> None:
    event = build_event(document, protocol)
    assert isinstance(event, NoticeEvent)
    assert (event.event_type, event.event_data) == (event_type, event_data)
    orjson.dumps(event.as_dict())


def test_notices_route_by_kind() -> None:
    notice = compile_match({"kind": "notice"})
    assert notice(family("backlog_notice")) and not notice(family("online"))
    assert compile_match({"protocol": 10000, "biz_code": "HighPriorityNotice"})(
        family("backlog_notice")
    )


# -- the resync marker ---------------------------------------------------------------------------


def test_the_resync_marker() -> None:
    event = family("resync_status")
    assert event.source == "resync"
    assert event.as_dict()["source"] == "resync"
    online = build_event(
        {"bizCode": "online", "bizData": {"devId": "d"}, "_tuya_events": v.RESYNC_MARKER}, 20
    )
    assert online.source == "resync" and isinstance(online, DeviceEvent)


@pytest.mark.parametrize(
    "marker", [None, "resync", {"source": "live"}, {"source": "RESYNC"}, {"gap_seconds": 9}, [1]]
)
def test_anything_but_the_marker_is_live(marker: Any) -> None:
    document: dict[str, Any] = {"devId": "d", "status": [{"code": "c", "value": 1}]}
    if marker is not None:
        document["_tuya_events"] = marker
    event = build_event(document, 4)
    assert event.source == "live" and "source" not in event.as_dict()


@pytest.mark.parametrize("name", sorted(v.FAMILIES))
def test_live_events_have_no_source_in_their_json(name: str) -> None:
    event = family(name)
    assert ("source" in event.as_dict()) is (name == "resync_status")


# -- malformed variants: events, never an exception but DecodeError ------------------------------


@pytest.mark.parametrize(
    ("document", "protocol", "kind"),
    [
        ({"bizCode": "deviceOnline", "bizData": "not a dict", "devId": "d"}, 1001, "device_event"),
        ({"bizCode": "deviceOnline", "bizData": [1, 2]}, 1001, "device_event"),
        ({"bizCode": "devicePropertyMessage", "bizData": None}, 1000, "generic"),
        ({"bizCode": "devicePropertyMessage", "bizData": {"properties": "x"}}, 1000, "status"),
        ({"bizCode": "devicePropertyMessage", "bizData": {"properties": [1]}}, 1000, "status"),
        ({"bizCode": "deviceOtaProgress", "bizData": {"productId": [1]}}, 1002, "device_event"),
        ({"bizCode": "HighPriorityNotice"}, 10000, "notice"),
        ({"bizCode": ["online"], "bizData": {}}, 20, "generic"),
        ({"status": [{"code": "p", "value": "ey" + "A" * 100_000}]}, 4, "status"),
        ({"status": [{"code": "p", "value": b64({"a": "x" * 100_000})}]}, 4, "status"),
    ],
)  # fmt: skip
def test_malformed_variants_give_events(document: dict[str, Any], protocol: int, kind: str) -> None:
    event = build_event(document, protocol)
    assert event.kind == kind
    orjson.dumps(event.as_dict())
    body, properties = ENCODER.encode(document, em=EM_GCM, protocol=protocol, t_ms=T_MS)
    decoded = CODEC.decode(body, properties)
    assert decoded.as_dict() == build_event(document, protocol, T_MS).as_dict()


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
ODD = JSON | st.sampled_from([v.CAMERA_PICTURE_B64, v.NOTICE_EVENT_DATA, "eyJ", "{", "doorbell"])


@settings(max_examples=300, deadline=None)
@given(
    name=st.sampled_from(sorted(v.FAMILIES)),
    path=st.lists(st.sampled_from(["bizData", "eventData", "etype", "edata", "status", "properties",
                                    "_tuya_events", "source", "bizCode", "devId", "value", 0]),
                  min_size=1, max_size=3),
    replacement=ODD,
)  # fmt: skip
def test_any_mangled_family_document_gives_an_event(
    name: str, path: list[Any], replacement: Any
) -> None:
    protocol, original, _, _ = v.FAMILIES[name]
    document = orjson.loads(orjson.dumps(original))
    holder: Any = document
    for key in path[:-1]:
        nxt = holder.get(key) if isinstance(holder, dict) else None
        if not isinstance(nxt, (dict, list)):
            break
        holder = nxt[0] if isinstance(nxt, list) and nxt else nxt
    if isinstance(holder, dict):
        holder[str(path[-1])] = replacement
    try:
        event = build_event(document, protocol)
    except DecodeError:  # pragma: no cover - a dict document is never refused
        raise AssertionError("a JSON object was refused") from None
    assert isinstance(event, Event)
    orjson.dumps(event.as_dict())
    assert compile_match({"event_name": ["online", "doorbell"], "source": "live"})(event) in (
        True,
        False,
    )
