"""Property tests: round trips in both modes, and arbitrary input only ever raises DecodeError."""

from __future__ import annotations

import base64

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import vectors as v
from tuya_events.tuya.codec import TuyaCodec, TuyaEncoder
from tuya_events.tuya.errors import (
    BAD_BASE64,
    BAD_ENVELOPE,
    BAD_EVENT,
    BAD_JSON,
    BAD_LENGTH,
    BAD_PADDING,
    GCM_AUTH_FAILED,
    REASONS,
    TOO_DEEP,
    TOO_SHORT,
    UNKNOWN_EM,
    DecodeError,
)

ENCODER = TuyaEncoder(v.ACCESS_ID, v.ACCESS_SECRET)
MODES = st.sampled_from(["aes_ecb", "aes_gcm", None])

json_scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=40)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
status_items = st.fixed_dictionaries(
    {"code": st.text(min_size=1, max_size=20), "value": json_scalars, "t": st.integers(1, 2**42)}
)
status_documents = st.fixed_dictionaries(
    {
        "dataId": st.text(min_size=1, max_size=32),
        "devId": st.text(min_size=1, max_size=32),
        "productKey": st.text(max_size=16),
        "status": st.lists(status_items, max_size=5),
    },
    optional={"extra": json_values},
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(document=status_documents, em=MODES)
def test_status_reports_round_trip(document: dict, em: str | None) -> None:
    codec = TuyaCodec(v.ACCESS_SECRET, sign_check="enforce")
    body, properties = ENCODER.encode(document, em=em, protocol=4)
    event = codec.decode(body, properties)
    assert event.document == document
    assert event.device_id == document["devId"]
    assert [s.code for s in event.statuses] == [item["code"] for item in document["status"]]


@settings(max_examples=300)
@given(document=st.dictionaries(st.text(max_size=12), json_values, max_size=6), em=MODES)
def test_any_object_round_trips_in_both_modes(document: dict, em: str | None) -> None:
    codec = TuyaCodec(v.ACCESS_SECRET)
    body, properties = ENCODER.encode(document, em=em, protocol=20)
    assert codec.decode(body, properties).document == document


def _expect_codec_error_only(codec: TuyaCodec, body: bytes | str, properties: dict) -> str | None:
    """Decode; any other exception fails the test. The reason of the DecodeError, None on
    success: each test then checks it is the reason that input must give."""
    try:
        codec.decode(body, properties)
    except DecodeError as error:
        assert error.reason in REASONS
        return error.reason
    return None


def _em_reason(properties: dict) -> str | None:
    """UNKNOWN_EM for an ``em`` that is neither ECB nor GCM (any case, spaces), else None."""
    em = properties.get("em")
    if not em or (isinstance(em, str) and em.strip().lower() in ("aes_ecb", "aes_gcm")):
        return None
    return UNKNOWN_EM


def _is_json_object(body: bytes) -> bool:
    try:
        return isinstance(orjson.loads(body), dict)
    except orjson.JSONDecodeError:
        return False


properties_strategy = st.dictionaries(
    st.sampled_from(["em", "x"]),
    st.sampled_from(["aes_gcm", "aes_ecb", "", "AES_GCM", "zz"]) | st.text(),
)


@settings(max_examples=500)
@given(
    body=st.binary(max_size=300) | st.text(max_size=300).map(str.encode),
    properties=properties_strategy,
)
def test_arbitrary_bodies_raise_only_decode_errors(body: bytes, properties: dict) -> None:
    codec = TuyaCodec(v.ACCESS_SECRET, sign_check="enforce")
    reason = _expect_codec_error_only(codec, body, properties)
    assert reason is not None  # nothing unsigned gets through the enforcing codec
    if _em_reason(properties) is not None:
        assert reason == UNKNOWN_EM
    elif not _is_json_object(body):
        assert reason == BAD_ENVELOPE


@settings(max_examples=500)
@given(
    raw=st.binary(max_size=200),
    em=MODES,
    envelope_extra=st.dictionaries(st.text(max_size=8), json_values),
)
def test_arbitrary_ciphertext_raises_only_decode_errors(
    raw: bytes, em: str | None, envelope_extra: dict
) -> None:
    envelope = {**envelope_extra, "data": base64.b64encode(raw).decode() or "A"}
    body = orjson.dumps(envelope)
    reason = _expect_codec_error_only(TuyaCodec(v.ACCESS_SECRET), body, {"em": em or ""})
    if reason == BAD_ENVELOPE:  # an extra field of the wrong type (protocol: "x")
        return
    if not raw:
        assert reason == BAD_BASE64  # "A" is no base64
    elif em == "aes_gcm":
        # Random bytes never carry a valid tag.
        assert reason == (TOO_SHORT if len(raw) < 28 else GCM_AUTH_FAILED)
    elif len(raw) % 16:
        assert reason == BAD_LENGTH
    else:
        assert reason in (BAD_PADDING, BAD_JSON, BAD_EVENT, TOO_DEEP, None)


@settings(max_examples=300)
@given(data=st.text(max_size=120), protocol=json_values, t=json_values)
def test_arbitrary_envelope_fields_raise_only_decode_errors(
    data: str, protocol: object, t: object
) -> None:
    envelope = {"data": data, "protocol": protocol, "t": t}
    reason = _expect_codec_error_only(TuyaCodec(v.ACCESS_SECRET), orjson.dumps(envelope), {})
    # Text that happens to be base64 of a well-padded ECB block of a JSON object: not in 120
    # characters of random text, so a success here is a codec accepting what it should not.
    assert reason is not None
    if not data:
        assert reason in (BAD_ENVELOPE, TOO_SHORT, BAD_BASE64)


@settings(max_examples=300)
@given(plain=st.binary(max_size=100), em=st.sampled_from(["aes_ecb", "aes_gcm"]))
def test_valid_ciphertext_of_arbitrary_plaintext_raises_only_decode_errors(
    plain: bytes, em: str
) -> None:
    from tuya_events.tuya.crypto import EcbCipher, GcmCipher

    cipher = GcmCipher(v.AES_KEY) if em == "aes_gcm" else EcbCipher(v.AES_KEY)
    data = base64.b64encode(cipher.encrypt(plain)).decode()
    reason = _expect_codec_error_only(
        TuyaCodec(v.ACCESS_SECRET), orjson.dumps({"data": data, "protocol": 4}), {"em": em}
    )
    # Valid ciphertext: padding and tag always pass; only the plaintext can be refused.
    if _is_json_object(plain):
        assert reason in (None, TOO_DEEP)
    else:
        assert reason in (BAD_JSON, BAD_EVENT, TOO_DEEP)
