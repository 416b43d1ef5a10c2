"""The codec as users meet it (issue 15): what a refused sign says, and the messages the encoder
builds for the simulator, the demo and the tests, exactly as Tuya sends them."""

from __future__ import annotations

import base64
import time

import orjson
import pytest

from tests import vectors as v
from tuya_events.tuya.codec import TuyaCodec, TuyaEncoder, parse_protocol
from tuya_events.tuya.crypto import EcbCipher, aes_key
from tuya_events.tuya.envelope import envelope_sign
from tuya_events.tuya.errors import (
    BAD_BASE64,
    BAD_ENVELOPE,
    BAD_JSON,
    BAD_SIGN,
    DECODER_ERROR,
    UNKNOWN_EM,
    DecodeError,
)

STATUS = {"devId": "d1", "dataId": "x", "status": [{"code": "c", "value": 1, "t": 1700000000000}]}


def encoder() -> TuyaEncoder:
    return TuyaEncoder(v.ACCESS_ID, v.ACCESS_SECRET)


def enforcing() -> TuyaCodec:
    return TuyaCodec(v.ACCESS_SECRET, sign_check="enforce")


def body_with(data: str, **fields: object) -> bytes:
    return orjson.dumps({"data": data, "protocol": 4, "pv": "2.0", "t": 1622449865300, **fields})


# -- a refused sign says which problem it is ---------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({}, "the envelope sign missing"),
        ({"sign": ""}, "the envelope sign missing"),
        ({"sign": None}, "the envelope sign missing"),
        ({"sign": "0" * 32}, "the envelope sign does not match"),
        ({"sign": 12345}, "the envelope sign does not match"),
    ],
    ids=["absent", "empty", "null", "wrong", "a number"],
)
def test_an_enforced_sign_names_what_is_wrong(fields: dict, problem: str) -> None:
    with pytest.raises(DecodeError) as caught:
        enforcing().decode(body_with(v.ECB_DATA, **fields), {})
    assert caught.value.reason == BAD_SIGN
    assert caught.value.detail == problem


def test_an_empty_sign_never_matches_an_envelope_that_cannot_be_signed() -> None:
    # A nested field: no formula signs it, so no sign (not even an empty one) can match.
    with pytest.raises(DecodeError) as caught:
        enforcing().decode(body_with(v.ECB_DATA, sign="", extra={"a": 1}), {})
    assert caught.value.reason == BAD_SIGN


def test_a_sign_in_upper_case_hex_is_accepted() -> None:
    fields = {"data": v.ECB_DATA, "protocol": 4, "pv": "2.0", "t": 1622449865300}
    sign = envelope_sign(fields, v.ACCESS_SECRET).upper()
    event = enforcing().decode(orjson.dumps({**fields, "sign": sign}), {})
    assert event.data_id == "dataIddataIddataIddataId"


# -- the encoder -------------------------------------------------------------------------------


def test_the_encoder_keeps_the_access_id_it_encodes_for() -> None:
    assert encoder().access_id == v.ACCESS_ID


@pytest.mark.parametrize(
    ("document", "protocol"),
    [
        (STATUS, 4),
        ({"devId": "d1", "bizCode": "online", "bizData": {}}, 20),
        ({"devId": "d1", "statuses": []}, 20),
        ([{"status": 1}], 20),
    ],
    ids=["status report", "device event", "no status key", "not an object"],
)
def test_the_encoder_picks_the_protocol_from_the_document(document: object, protocol: int) -> None:
    body, _ = encoder().encode(document, t_ms=1)
    assert orjson.loads(body)["protocol"] == protocol


def test_an_explicit_protocol_wins() -> None:
    body, _ = encoder().encode(STATUS, protocol=1000, t_ms=1)
    assert orjson.loads(body)["protocol"] == 1000


@pytest.mark.parametrize("em", ["aes_ecb", "aes_gcm", None])
def test_encoded_messages_are_signed_and_decode_under_enforce(em: str | None) -> None:
    body, properties = encoder().encode(STATUS, em=em, t_ms=1622449865300)
    envelope = orjson.loads(body)
    assert set(envelope) == {"data", "protocol", "pv", "t", "sign"}
    assert envelope["pv"] == "2.0" and envelope["t"] == 1622449865300
    assert envelope["sign"] == envelope_sign(envelope, v.ACCESS_SECRET)
    assert properties == ({"em": em} if em else {})
    base64.b64decode(envelope["data"], validate=True)
    event = enforcing().decode(body, properties)
    assert event.document == STATUS and event.envelope_t_ms == 1622449865300


def test_the_default_envelope_time_is_now_in_milliseconds() -> None:
    before = int(time.time() * 1000)
    body, _ = encoder().encode(STATUS)
    after = int(time.time() * 1000)
    assert before <= orjson.loads(body)["t"] <= after + 1


def test_a_given_gcm_nonce_is_used_so_the_message_is_reproducible() -> None:
    first, properties = encoder().encode(STATUS, em="aes_gcm", t_ms=1, nonce=v.GCM_NONCE)
    second, _ = encoder().encode(STATUS, em="aes_gcm", t_ms=1, nonce=v.GCM_NONCE)
    assert first == second
    raw = base64.b64decode(orjson.loads(first)["data"])
    assert raw[:12] == v.GCM_NONCE
    assert enforcing().decode(first, properties).document == STATUS


# -- the envelope as Tuya fills it -------------------------------------------------------------


@pytest.mark.parametrize(
    ("protocol", "expected"),
    [(4, 4), ("4", 4), ("20", 20), ("1000", 1000), ("", None), (None, None)],
)
def test_the_protocol_may_be_a_number_or_a_decimal_string(
    protocol: object, expected: int | None
) -> None:
    body, _ = encoder().encode(STATUS, t_ms=1)
    envelope = {**orjson.loads(body), "protocol": protocol}
    event = TuyaCodec(v.ACCESS_SECRET).decode(orjson.dumps(envelope), {})
    assert event.protocol == expected
    assert event.kind == ("status" if expected == 4 else "generic")
    assert parse_protocol(protocol) == expected


@pytest.mark.parametrize(
    ("t", "expected"),
    [(1622449865300, 1622449865300), (1622449865, 1622449865000), ("1622449865300", 1622449865300)],
    ids=["milliseconds", "seconds", "a string"],
)
def test_the_envelope_time_reaches_the_event(t: object, expected: int) -> None:
    document = {"devId": "d1", "status": [{"code": "c", "value": 1}]}
    body = body_with(encoder().encrypt_document(document), t=t)
    event = TuyaCodec(v.ACCESS_SECRET).decode(body, {})
    assert event.envelope_t_ms == expected
    assert event.timestamp_ms == expected  # no item time: the envelope's


def test_data_that_is_not_base64_says_so() -> None:
    with pytest.raises(DecodeError) as caught:
        TuyaCodec(v.ACCESS_SECRET).decode(body_with("!!!"), {})
    assert caught.value.reason == BAD_BASE64
    assert caught.value.detail == "'data' is not valid base64"


def test_plaintext_that_is_not_json_says_so() -> None:
    raw = EcbCipher(aes_key(v.ACCESS_SECRET)).encrypt(b"{not json")
    with pytest.raises(DecodeError) as caught:
        TuyaCodec(v.ACCESS_SECRET).decode(body_with(base64.b64encode(raw).decode()), {})
    assert caught.value.reason == BAD_JSON
    assert caught.value.detail == "the decrypted data is not JSON"


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b"not json", "the message body is not JSON"),
        (b"[1, 2]", "the message body is not a JSON object"),
        (b'{"protocol": 4}', "the envelope has no 'data' string"),
        (b'{"data": ""}', "the envelope has no 'data' string"),
    ],
    ids=["not json", "not an object", "no data", "empty data"],
)
def test_a_refused_envelope_says_what_was_wrong(body: bytes, detail: str) -> None:
    with pytest.raises(DecodeError) as caught:
        TuyaCodec(v.ACCESS_SECRET).decode(body, {})
    assert caught.value.reason == BAD_ENVELOPE
    assert caught.value.detail == detail


def test_a_decoder_failure_names_the_exception_it_caught() -> None:
    with pytest.raises(DecodeError) as caught:
        TuyaCodec(v.ACCESS_SECRET).decode(body_with(v.ECB_DATA), ["em"])  # type: ignore[arg-type]
    assert caught.value.reason == DECODER_ERROR
    assert caught.value.detail == "the decoder failed on this message (AttributeError)"


@pytest.mark.parametrize(
    ("em", "detail"),
    [
        ("aes_cbc", "unsupported encryption mode em='aes_cbc'"),
        ("x" * 100, "unsupported encryption mode em='" + "x" * 40 + "'"),  # cut: it is logged
        (7, "the em property is a int, not a string"),
    ],
    ids=["unknown", "long", "not a string"],
)
def test_an_unknown_encryption_mode_is_named_in_the_refusal(em: object, detail: str) -> None:
    with pytest.raises(DecodeError) as caught:
        TuyaCodec(v.ACCESS_SECRET).decode(body_with(v.ECB_DATA), {"em": em})  # type: ignore[dict-item]
    assert caught.value.reason == UNKNOWN_EM
    assert caught.value.detail == detail


def test_the_sign_is_not_checked_unless_asked() -> None:
    seen: list[dict] = []
    codec = TuyaCodec(v.ACCESS_SECRET, on_sign_mismatch=seen.append)
    assert codec.sign_check == "off"
    event = codec.decode(body_with(v.ECB_DATA, sign="0" * 32), {})
    assert event.data_id == "dataIddataIddataIddataId"
    assert seen == []
