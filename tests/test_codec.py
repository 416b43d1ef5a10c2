"""The codec against the shared-doc vectors, and one test per failure reason."""

from __future__ import annotations

import base64

import orjson
import pytest

from tests import vectors as v
from tuya_events.tuya import errors
from tuya_events.tuya.auth import (
    auth1_command_data,
    basic_auth_halves,
    pulsar_password,
    websocket_headers,
)
from tuya_events.tuya.codec import TuyaCodec, TuyaEncoder, encryption_mode
from tuya_events.tuya.crypto import aes_key, pkcs7_unpad
from tuya_events.tuya.envelope import envelope_sign
from tuya_events.tuya.errors import DecodeError
from tuya_events.tuya.events import StatusReport


def envelope(data: str, **extra: object) -> bytes:
    return orjson.dumps({"data": data, "protocol": 4, "pv": "2.0", "t": 1622449865300, **extra})


@pytest.fixture
def codec() -> TuyaCodec:
    return TuyaCodec(v.ACCESS_SECRET)


def test_pulsar_password_vector() -> None:
    assert pulsar_password(v.ACCESS_ID, v.ACCESS_SECRET) == v.PULSAR_PASSWORD


def test_auth1_command_data_is_rebuilt_by_basic_auth_halves() -> None:
    expected = '{"username":"accessIdtesttesttest","password":"ad0139f768d194a4"}'
    assert auth1_command_data(v.ACCESS_ID, v.ACCESS_SECRET) == expected
    left, right = basic_auth_halves(v.ACCESS_ID, v.ACCESS_SECRET)
    assert f"{left}:{right}" == expected
    assert websocket_headers(v.ACCESS_ID, v.ACCESS_SECRET) == {
        "username": v.ACCESS_ID,
        "password": v.PULSAR_PASSWORD,
    }


def test_aes_key_is_the_middle_of_the_secret() -> None:
    assert aes_key(v.ACCESS_SECRET) == v.AES_KEY
    with pytest.raises(ValueError, match="too short"):
        aes_key("short")


@pytest.mark.parametrize(
    ("data", "properties"),
    [(v.ECB_DATA, {}), (v.ECB_DATA, {"em": "aes_ecb"}), (v.GCM_DATA, {"em": "aes_gcm"})],
    ids=["ecb-default", "ecb-explicit", "gcm"],
)
def test_vectors_decrypt_to_the_documented_plaintext(
    codec: TuyaCodec, data: str, properties: dict[str, str]
) -> None:
    _, plain = codec.decrypt(envelope(data), properties)
    assert plain == v.PLAINTEXT.encode()
    event = codec.decode(envelope(data), properties)
    assert isinstance(event, StatusReport)
    assert event.device_id == "devIddevIddevIddevIddevId"
    assert event.data_id == "dataIddataIddataIddataId"
    assert event.product_key == "productKeypro"
    assert [(s.code, s.value, s.t_ms) for s in event.statuses] == [("code", 280, 1622449865296)]
    assert event.document == orjson.loads(v.PLAINTEXT)


def test_encoder_reproduces_both_vectors() -> None:
    encoder = TuyaEncoder(v.ACCESS_ID, v.ACCESS_SECRET)
    document = orjson.loads(v.PLAINTEXT)
    assert encoder.encrypt_document(document, "aes_ecb") == v.ECB_DATA
    assert encoder.encrypt_document(document, "aes_gcm", nonce=v.GCM_NONCE) == v.GCM_DATA


def test_mode_comes_from_the_em_property_only(codec: TuyaCodec) -> None:
    # A GCM message without em is decrypted as ECB and fails: the mode is never guessed.
    with pytest.raises(DecodeError):
        codec.decode(envelope(v.GCM_DATA), {})
    assert encryption_mode({"em": "AES_GCM"}) == "aes_gcm"
    assert encryption_mode(None) == "aes_ecb"


def test_ecb_context_reuse_survives_a_bad_message(codec: TuyaCodec) -> None:
    with pytest.raises(DecodeError):
        codec.decode(envelope(base64.b64encode(b"x" * 17).decode()), {})
    assert codec.decode(envelope(v.ECB_DATA), {}).data_id == "dataIddataIddataIddataId"


def _ecb_raw(plain_padded: bytes) -> str:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    enc = Cipher(algorithms.AES(v.AES_KEY), modes.ECB()).encryptor()
    return base64.b64encode(enc.update(plain_padded) + enc.finalize()).decode()


def _gcm_tampered() -> str:
    raw = bytearray(base64.b64decode(v.GCM_DATA))
    raw[20] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


REASON_CASES = [
    (errors.BAD_ENVELOPE, b"not json", {}),
    (errors.BAD_ENVELOPE, b"[1, 2]", {}),
    (errors.BAD_ENVELOPE, orjson.dumps({"protocol": 4}), {}),
    (errors.BAD_ENVELOPE, orjson.dumps({"data": 17}), {}),
    (errors.BAD_BASE64, envelope("!!!not base64!!!"), {}),
    (errors.BAD_BASE64, envelope("abc"), {}),
    (errors.UNKNOWN_EM, envelope(v.ECB_DATA), {"em": "aes_cbc"}),
    (errors.TOO_SHORT, envelope(base64.b64encode(bytes(27)).decode()), {"em": "aes_gcm"}),
    (errors.BAD_LENGTH, envelope(base64.b64encode(bytes(20)).decode()), {}),
    (errors.BAD_PADDING, envelope(_ecb_raw(b"A" * 15 + b"\x00")), {}),
    (errors.BAD_PADDING, envelope(_ecb_raw(b"A" * 15 + b"\x11")), {}),
    (errors.BAD_PADDING, envelope(_ecb_raw(b"A" * 13 + b"\x02\x03\x03")), {}),
    (errors.GCM_AUTH_FAILED, envelope(_gcm_tampered()), {"em": "aes_gcm"}),
    (errors.GCM_AUTH_FAILED, envelope(v.ECB_DATA), {"em": "aes_gcm"}),
    (errors.BAD_JSON, envelope(_ecb_raw(b"not json at all\x01")), {}),
    (errors.BAD_EVENT, envelope(_ecb_raw(b"[1,2,3]" + b"\x09" * 9)), {}),
    # 208 levels of lists, 8 bytes of padding: deeper than MAX_DEPTH (200).
    (errors.TOO_DEEP, envelope(_ecb_raw(b"[" * 204 + b"]" * 204 + b"\x08" * 8)), {}),
    # A transport that breaks its contract (properties not a mapping): still a reason of ours.
    (errors.DECODER_ERROR, envelope(v.ECB_DATA), ["em"]),
]


@pytest.mark.parametrize(("reason", "body", "properties"), REASON_CASES)
def test_every_failure_has_its_reason(
    codec: TuyaCodec, reason: str, body: bytes, properties: dict[str, str]
) -> None:
    with pytest.raises(DecodeError) as caught:
        codec.decode(body, properties)
    assert caught.value.reason == reason
    assert v.ACCESS_SECRET not in str(caught.value)


def test_every_reason_code_is_exercised(codec: TuyaCodec) -> None:
    """Each reason is raised by some real input: reasons collected from decode calls."""
    raised = set()
    for _, body, properties in REASON_CASES:
        try:
            codec.decode(body, properties)
        except DecodeError as error:
            raised.add(error.reason)
    enforcing = TuyaCodec(v.ACCESS_SECRET, sign_check="enforce")
    try:
        enforcing.decode(envelope(v.ECB_DATA, sign="0" * 32), {})
    except DecodeError as error:
        raised.add(error.reason)
    assert raised == set(errors.REASONS)


def test_strict_unpad_accepts_full_block_of_padding() -> None:
    assert pkcs7_unpad(b"A" * 16 + b"\x10" * 16) == b"A" * 16


def test_sign_enforce_rejects_a_wrong_or_missing_sign() -> None:
    encoder = TuyaEncoder(v.ACCESS_ID, v.ACCESS_SECRET)
    body, properties = encoder.encode({"devId": "d1", "bizCode": "online", "bizData": {}})
    strict = TuyaCodec(v.ACCESS_SECRET, sign_check="enforce")
    assert strict.decode(body, properties).device_id == "d1"
    tampered = orjson.loads(body)
    tampered["t"] += 1
    for bad in (tampered, {k: val for k, val in tampered.items() if k != "sign"}):
        with pytest.raises(DecodeError) as caught:
            strict.decode(orjson.dumps(bad), properties)
        assert caught.value.reason == errors.BAD_SIGN


def test_sign_log_mode_reports_and_goes_on() -> None:
    seen: list[dict] = []
    lenient = TuyaCodec(v.ACCESS_SECRET, sign_check="log", on_sign_mismatch=seen.append)
    event = lenient.decode(envelope(v.ECB_DATA, sign="0" * 32), {})
    assert event.data_id == "dataIddataIddataIddataId"
    assert len(seen) == 1 and seen[0]["sign"] == "0" * 32


def test_envelope_sign_formula() -> None:
    import hashlib

    env = {"data": "abc", "protocol": 4, "pv": "2.0", "t": 1, "empty": "", "sign": "x"}
    expected = hashlib.md5(b"data=abc||protocol=4||pv=2.0||t=1||secret").hexdigest()
    assert envelope_sign(env, "secret") == expected


def test_envelope_sign_fast_path_equals_the_general_formula() -> None:
    import hashlib

    env = {"data": "abc", "protocol": 4, "pv": "2.0", "t": 1622449865300, "sign": "x"}
    general = hashlib.md5(b"data=abc||protocol=4||pv=2.0||t=1622449865300||secret").hexdigest()
    assert envelope_sign(env, "secret") == general
    # Not the usual shape: the general code (a string protocol, an empty pv, a bool, no sign).
    assert envelope_sign({**env, "protocol": "4"}, "secret") == general
    no_pv = hashlib.md5(b"data=abc||protocol=4||t=1622449865300||secret").hexdigest()
    assert envelope_sign({**env, "pv": ""}, "secret") == no_pv
    as_bool = hashlib.md5(b"data=abc||protocol=true||pv=2.0||t=1622449865300||secret").hexdigest()
    assert envelope_sign({**env, "protocol": True}, "secret") == as_bool
    other = {"data": "abc", "protocol": 4, "pv": "2.0", "t": 1622449865300, "extra": 1}
    with_extra = hashlib.md5(
        b"data=abc||extra=1||protocol=4||pv=2.0||t=1622449865300||secret"
    ).hexdigest()
    assert envelope_sign(other, "secret") == with_extra
