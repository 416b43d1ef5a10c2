"""Strictness users rely on: a wrong pad, a wrong length or non-canonical base64 is refused with
its reason, never decoded into a mangled plaintext (mutation testing showed these unchecked)."""

from __future__ import annotations

import base64

import orjson
import pytest

from tests import vectors as v
from tuya_events.tuya import errors
from tuya_events.tuya.codec import TuyaCodec
from tuya_events.tuya.crypto import EcbCipher, GcmCipher, aes_key, pkcs7_pad, pkcs7_unpad
from tuya_events.tuya.errors import DecodeError


def reason_of(call, *args) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(DecodeError) as caught:
        call(*args)
    return caught.value.reason


@pytest.mark.parametrize("pad", range(1, 17))
def test_every_valid_pad_length_is_removed_exactly(pad: int) -> None:
    plain = b"x" * (32 - pad)
    assert pkcs7_unpad(plain + bytes((pad,)) * pad) == plain


@pytest.mark.parametrize("last", [0, 17, 32, 255])
def test_a_pad_byte_outside_1_to_16_is_bad_padding(last: int) -> None:
    # Blocks filled with the pad byte itself: only the 1..16 range check can refuse them.
    block = bytes((last,)) * 32
    assert reason_of(pkcs7_unpad, block) == errors.BAD_PADDING


def test_empty_input_is_too_short_not_bad_padding() -> None:
    assert reason_of(pkcs7_unpad, b"") == errors.TOO_SHORT


def test_a_pad_whose_bytes_differ_is_bad_padding() -> None:
    assert reason_of(pkcs7_unpad, b"A" * 12 + b"\x01\x04\x04\x04") == errors.BAD_PADDING
    assert reason_of(pkcs7_unpad, b"A" * 14 + b"\x03\x02") == errors.BAD_PADDING


@pytest.mark.parametrize("length", [0, 1, 15, 16, 17, 31, 32])
def test_pad_always_adds_1_to_16_bytes_to_whole_blocks(length: int) -> None:
    padded = pkcs7_pad(b"p" * length)
    assert len(padded) % 16 == 0
    assert 1 <= len(padded) - length <= 16
    assert pkcs7_unpad(padded) == b"p" * length


def test_ecb_round_trip_and_length_errors() -> None:
    cipher = EcbCipher(v.AES_KEY)
    for plain in (b"", b"a", b"a" * 16, b"a" * 33):
        raw = cipher.encrypt(plain)
        assert len(raw) % 16 == 0 and raw != pkcs7_pad(plain)
        assert cipher.decrypt(raw) == plain
    assert reason_of(cipher.decrypt, b"") == errors.TOO_SHORT
    for length in (1, 15, 17, 31):
        assert reason_of(cipher.decrypt, bytes(length)) == errors.BAD_LENGTH


def test_gcm_layout_is_nonce_ciphertext_tag() -> None:
    cipher = GcmCipher(v.AES_KEY)
    nonce = bytes(range(12))
    raw = cipher.encrypt(b"hello", nonce)
    assert raw[:12] == nonce and len(raw) == 12 + 5 + 16
    assert cipher.decrypt(raw) == b"hello"
    assert GcmCipher(v.AES_KEY).decrypt(cipher.encrypt(b"")) == b""
    # Exactly nonce + tag (an empty plaintext) is long enough; one byte less is too short.
    assert len(cipher.encrypt(b"", nonce)) == 28
    assert reason_of(cipher.decrypt, bytes(27)) == errors.TOO_SHORT
    assert reason_of(cipher.decrypt, bytes(28)) == errors.GCM_AUTH_FAILED
    random_nonces = {cipher.encrypt(b"x")[:12] for _ in range(4)}
    assert len(random_nonces) == 4


def test_aes_key_needs_24_characters() -> None:
    assert aes_key("0123456789abcdefghijklmn") == b"89abcdefghijklmn"
    assert aes_key("0123456789abcdefghijklmnXYZ") == b"89abcdefghijklmn"
    with pytest.raises(ValueError, match="too short"):
        aes_key("0123456789abcdefghijklm")


def _envelope(data: str) -> bytes:
    return orjson.dumps({"data": data, "protocol": 4, "pv": "2.0", "t": 1})


@pytest.mark.parametrize(
    "data",
    [
        "YQ==YQ==",  # padding in the middle: a lenient decoder returns b"aa"
        v.ECB_DATA + "==",  # extra padding after a complete quantum
        v.ECB_DATA[:8] + "\n" + v.ECB_DATA[8:],  # whitespace inside
        v.ECB_DATA[:8] + "*" + v.ECB_DATA[8:],  # a character outside the alphabet
        v.ECB_DATA[:-1],  # a truncated quantum
    ],
)
def test_base64_is_strict(data: str) -> None:
    codec = TuyaCodec(v.ACCESS_SECRET)
    with pytest.raises(DecodeError) as caught:
        codec.decode(_envelope(data), {})
    assert caught.value.reason == errors.BAD_BASE64


def test_canonical_base64_still_decodes() -> None:
    assert TuyaCodec(v.ACCESS_SECRET).decode(_envelope(v.ECB_DATA), {}).document == orjson.loads(
        v.PLAINTEXT
    )


def test_the_same_bytes_reencoded_decode_the_same() -> None:
    raw = base64.b64decode(v.ECB_DATA)
    again = base64.b64encode(raw).decode()
    assert TuyaCodec(v.ACCESS_SECRET).decode(_envelope(again), {}).document == orjson.loads(
        v.PLAINTEXT
    )


def test_each_refusal_says_what_was_wrong() -> None:
    """The detail an operator reads in the dead-letter record and the log names the problem."""
    checks = [
        (EcbCipher(v.AES_KEY).decrypt, b"", "empty"),
        (EcbCipher(v.AES_KEY).decrypt, bytes(17), "17 bytes"),
        (GcmCipher(v.AES_KEY).decrypt, bytes(27), "27 bytes"),
        (GcmCipher(v.AES_KEY).decrypt, bytes(28), "tag"),
        (pkcs7_unpad, b"", "empty"),
        (pkcs7_unpad, bytes(16), "pad byte 0"),
        (pkcs7_unpad, b"A" * 14 + b"\x03\x02", "pad bytes differ"),
    ]
    for call, argument, words in checks:
        with pytest.raises(DecodeError) as caught:
            call(argument)
        assert words in str(caught.value), (words, str(caught.value))
