"""No message stops the daemon: the whole decode, sign check included, and the pipeline's intake,
under the nesting, size and type extremes the JSON parser accepts.

The rule: whatever a message contains, the codec raises only ``DecodeError`` (with one of its
reasons), and the pipeline settles the message (a dead letter with that reason) and goes on.
"""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import vectors as v
from tests.pipeline_support import Harness, RecordingHandler, status_message
from tests.support.settings import make_settings
from tuya_events.deadletter.store import DeadLetterStore
from tuya_events.delivery import Delivery
from tuya_events.handlers.payload import event_payload
from tuya_events.tuya.codec import MAX_DEPTH, TuyaCodec, deeper_than, parse_protocol
from tuya_events.tuya.crypto import EcbCipher, GcmCipher
from tuya_events.tuya.errors import REASONS, DecodeError
from tuya_events.tuya.events import timestamp_ms

ORJSON_MAX_DEPTH = 1024  # orjson.loads refuses deeper input: the deepest a message can bring
SIGN_CHECKS = ("off", "log", "enforce")


def nested(depth: int, leaf: bytes = b"1", kind: str = "list") -> bytes:
    """JSON text nested ``depth`` containers deep (the outermost counts as 1)."""
    if kind == "list":
        return b"[" * depth + leaf + b"]" * depth
    return b'{"a":' * depth + leaf + b"}" * depth


def encrypted(plain: bytes, em: str = "aes_ecb") -> str:
    cipher = GcmCipher(v.AES_KEY) if em == "aes_gcm" else EcbCipher(v.AES_KEY)
    return base64.b64encode(cipher.encrypt(plain)).decode()


def envelope_text(fields: dict[str, bytes]) -> bytes:
    """An envelope built as text, so fields can be nested deeper than any encoder allows."""
    return b"{" + b",".join(orjson.dumps(k) + b":" + value for k, value in fields.items()) + b"}"


def decode_outcome(codec: TuyaCodec, body: bytes, properties: Any) -> str:
    """'event' or the DecodeError's reason; any other exception fails the test."""
    try:
        event = codec.decode(body, properties)
    except DecodeError as error:
        assert error.reason in REASONS
        return error.reason
    # What decodes can always be encoded again: every handler's payload is orjson.
    orjson.dumps(event_payload(event, Delivery(body, {}, "m:1")))
    return "event"


def codec(sign_check: str) -> TuyaCodec:
    return TuyaCodec(v.ACCESS_SECRET, sign_check=sign_check)  # type: ignore[arg-type]


# -- the instances the issue found, for every sign-check mode ---------------------------------

VALID_DATA = orjson.dumps(encrypted(b'{"devId":"d1","status":[{"code":"c","value":1}]}'))


@pytest.mark.parametrize("sign_check", SIGN_CHECKS)
@pytest.mark.parametrize("depth", [255, 999, 1000, ORJSON_MAX_DEPTH - 1])
@pytest.mark.parametrize("kind", ["list", "dict"])
def test_a_deeply_nested_envelope_field_is_a_sign_mismatch_not_a_crash(
    sign_check: str, depth: int, kind: str
) -> None:
    body = envelope_text(
        {"data": VALID_DATA, "protocol": b"4", "sign": b'"00"', "x": nested(depth, kind=kind)}
    )
    seen: list[dict] = []
    lenient = TuyaCodec(v.ACCESS_SECRET, sign_check=sign_check, on_sign_mismatch=seen.append)  # type: ignore[arg-type]
    outcome = decode_outcome(lenient, body, {})
    assert outcome == ("bad_sign" if sign_check == "enforce" else "event")
    assert len(seen) == (1 if sign_check == "log" else 0)


@pytest.mark.parametrize("field", ["protocol", "t", "pv", "sign", "data"])
def test_every_envelope_field_may_be_nested_to_the_parser_limit(field: str) -> None:
    fields = {"data": VALID_DATA, "protocol": b"4", "pv": b'"2.0"', "t": b"1", "sign": b'"x"'}
    fields[field] = nested(ORJSON_MAX_DEPTH - 1, kind="dict")
    for sign_check in SIGN_CHECKS:
        decode_outcome(codec(sign_check), envelope_text(fields), {})


def test_an_envelope_past_the_parser_limit_is_a_bad_envelope() -> None:
    body = envelope_text({"data": VALID_DATA, "x": nested(ORJSON_MAX_DEPTH + 1)})
    assert decode_outcome(codec("log"), body, {}) == "bad_envelope"


@pytest.mark.parametrize("em", ["aes_ecb", "aes_gcm"])
@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 254, 255, 600, ORJSON_MAX_DEPTH])
def test_a_document_nested_deeper_than_handlers_can_encode_is_too_deep(em: str, depth: int) -> None:
    inner = nested(depth - 1, kind="dict")
    plain = b'{"devId":"d1","bizCode":"online","x":' + inner + b"}"
    body = orjson.dumps({"data": encrypted(plain, em), "protocol": 20})
    assert decode_outcome(codec("off"), body, {"em": em}) == "too_deep"


def test_a_document_at_the_depth_limit_decodes_and_encodes_again() -> None:
    plain = b'{"devId":"d1","x":' + nested(MAX_DEPTH - 1) + b"}"
    body = orjson.dumps({"data": encrypted(plain), "protocol": 20})
    assert decode_outcome(codec("off"), body, {}) == "event"


def test_many_brackets_that_nest_shallowly_are_not_too_deep() -> None:
    items = b",".join([b'{"code":"c","value":[1]}'] * (MAX_DEPTH * 2))
    body = orjson.dumps(
        {"data": encrypted(b'{"devId":"d","status":[' + items + b"]}"), "protocol": 4}
    )
    assert decode_outcome(codec("off"), body, {}) == "event"


def test_deeper_than_counts_levels_without_recursion() -> None:
    deep = orjson.loads(nested(ORJSON_MAX_DEPTH, kind="dict"))
    assert deeper_than(deep, ORJSON_MAX_DEPTH - 1)
    assert not deeper_than(deep, ORJSON_MAX_DEPTH)
    assert not deeper_than([[1], {"a": [2]}], 3)
    assert deeper_than([[1], {"a": [[2]]}], 3)


@pytest.mark.parametrize(
    "em", [1, 1.5, True, None, [], ["aes_gcm"], {"x": 1}, b"aes_gcm", "x" * 10_000, "\u0000"]
)
def test_an_em_property_of_any_type_is_a_decode_error_or_ecb(em: object) -> None:
    body = orjson.dumps({"data": encrypted(b'{"devId":"d1"}'), "protocol": 20})
    outcome = decode_outcome(codec("log"), body, {"em": em})
    assert outcome in ("event", "unknown_em")


@pytest.mark.parametrize("properties", [["em"], "em=aes_gcm", 42, object()])
def test_properties_that_are_not_a_mapping_are_a_decoder_error(properties: object) -> None:
    body = orjson.dumps({"data": encrypted(b'{"devId":"d1"}'), "protocol": 20})
    assert decode_outcome(codec("log"), body, properties) == "decoder_error"


@pytest.mark.parametrize(
    "value", ["9" * 5000, "²", "٣", "1" * 10, "-1", "4 ", 1e300, float("inf"), [4], {"p": 4}]
)
def test_protocols_that_are_not_small_decimal_numbers_are_none(value: object) -> None:
    assert parse_protocol(value) is None


@pytest.mark.parametrize(
    "value", [1e300, -1e300, float("inf"), float("nan"), "1e300", "9" * 400, 10**30, 2**63]
)
def test_absurd_timestamps_are_treated_as_missing(value: object) -> None:
    assert timestamp_ms(value) is None


def test_absurd_status_times_are_missing_and_the_event_encodes_again() -> None:
    document = {"devId": "d", "status": [{"code": "c", "value": 1, "t": 2**63 - 1}], "t": 1e300}
    body = orjson.dumps({"data": encrypted(orjson.dumps(document)), "protocol": 4, "t": 1e300})
    event = codec("off").decode(body, {})
    assert event.timestamp_ms is None and event.envelope_t_ms is None
    assert event.statuses[0].t_ms is None  # type: ignore[attr-defined]
    decode_outcome(codec("off"), body, {})


# -- fuzzing the whole decode -------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=60)
    | st.sampled_from(["", "0" * 9, "9" * 5000, "²", "aes_gcm", "1e300", "\u0000\uffff"])
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=20,
)
# JSON text, so nesting can reach what the parser accepts (beyond any encoder's limit).
json_texts = json_values.map(orjson.dumps) | st.builds(
    nested,
    st.integers(1, ORJSON_MAX_DEPTH + 2),
    json_scalars.map(orjson.dumps),
    st.sampled_from(["list", "dict"]),
)
envelope_fields = st.dictionaries(
    st.sampled_from(["protocol", "t", "pv", "sign", "extra", "data"]), json_texts, max_size=5
)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    fields=envelope_fields,
    document=json_texts,
    data_kind=st.sampled_from(["encrypted", "as-given"]),
    em=st.sampled_from(["aes_ecb", "aes_gcm", None]) | json_scalars,
    sign_check=st.sampled_from(SIGN_CHECKS),
)
def test_any_envelope_and_any_document_decode_or_raise_a_decode_error(
    fields: dict[str, bytes], document: bytes, data_kind: str, em: Any, sign_check: str
) -> None:
    if data_kind == "encrypted":
        fields = {
            **fields,
            "data": orjson.dumps(encrypted(document, em if em == "aes_gcm" else "aes_ecb")),
        }
    properties = {} if em is None else {"em": em}
    decode_outcome(codec(sign_check), envelope_text(fields), properties)


@settings(max_examples=25, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(size=st.integers(0, 3_000_000), filler=st.sampled_from([b"A", b"[", b"\\", b'"']))
def test_sizes_up_to_pulsars_message_limit_raise_only_decode_errors(
    size: int, filler: bytes
) -> None:
    body = b'{"data":"' + filler * (size // 1000) + b'","sign":"' + filler * (size // 3000) + b'"}'
    decode_outcome(codec("log"), body, {})


# -- the pipeline's intake ----------------------------------------------------------------------

# What each brings, and the reason it is dead-lettered with.
POISON: list[tuple[bytes, Any, str]] = [
    # The sign check meets a field nested 1,000 deep, then "AAAA" is no whole AES block.
    (envelope_text({"data": b'"AAAA"', "sign": b'"0"', "x": nested(1000)}), {}, "bad_length"),
    (orjson.dumps({"data": encrypted(b'{"a":' + nested(600) + b"}")}), {}, "too_deep"),
    (orjson.dumps({"data": encrypted(b'{"devId":"x"}')}), {"em": 7}, "unknown_em"),
    (orjson.dumps({"data": encrypted(b"{}")}), ["em"], "decoder_error"),
    # Decodes (its times are missing); the recorder refuses an event without a status.
    (
        orjson.dumps({"data": encrypted(b'{"devId":"t","t":1e300}'), "t": 1e300}),
        {},
        "handler_error",
    ),
    (b'{"data":"' + b"A" * 2_000_000 + b'"}', {}, "bad_padding"),  # 1.5 MB of zeros, decrypted
    (nested(ORJSON_MAX_DEPTH + 5, kind="dict"), {}, "bad_envelope"),
]


@pytest.mark.parametrize("store_plaintext", [False, True])
@pytest.mark.parametrize("style", ["sync", "async"])
def test_poison_messages_are_settled_and_the_devices_behind_them_go_on(
    tmp_path: Path, store_plaintext: bool, style: str
) -> None:
    async def scenario() -> tuple[list[tuple[str, int]], int]:
        settings_ = make_settings(tmp_path, dead_letter={"store_plaintext": store_plaintext})
        handler = RecordingHandler(style=style)
        async with Harness(settings_, [handler]) as h:
            for seq in range(3):
                for body, properties, _reason in POISON:
                    h.source.publish(body, properties, key="dev1")
                h.source.publish(*status_message("dev1", seq), key="dev1")
            await asyncio.wait_for(_until_empty(h), 30)
            in_flight = h.daemon.pipeline.in_flight
            assert await h.stop() == 0
        return handler.seen, in_flight

    seen, in_flight = asyncio.run(scenario())
    assert seen == [("dev1", 0), ("dev1", 1), ("dev1", 2)]
    assert in_flight == 0
    with DeadLetterStore(tmp_path / "dead-letters.sqlite3", store_plaintext=True) as store:
        records = store.list()
    reasons = sorted(record.reason for record in records)
    # "absurd time" decodes (its time is missing) and goes to the handler, which refuses an
    # event without a status: a handler failure, dead-lettered like any other.
    assert reasons == sorted(reason for _body, _properties, reason in POISON for _ in range(3))
    for record in records:
        assert (record.plaintext is not None) == (
            store_plaintext and record.reason == "handler_error"
        )


async def _until_empty(h: Harness) -> None:
    while h.source.unacknowledged or h.source.queued:
        await asyncio.sleep(0.02)
