"""The envelope ``sign`` (issue 15): the general formula field by field, and the fast path of the
usual five-key envelope, which must give exactly the general formula's text and must be taken
for the envelope Tuya sends (it is the hot path of sign checking)."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from tuya_events.tuya.envelope import (
    UnsignableEnvelope,
    _usual_envelope_sign_text,
    envelope_sign,
)

SECRET = "s3cr3t"
USUAL: dict[str, Any] = {
    "data": "abc",
    "protocol": 4,
    "pv": "2.0",
    "t": 1622449865300,
    "sign": "ignored",
}


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def reference_text(envelope: dict[str, Any], secret: str) -> str:
    """Tuya's formula written out independently: fields but ``sign`` and empty ones, sorted."""

    def render(value: Any) -> str:
        return {True: "true", False: "false"}[value] if isinstance(value, bool) else str(value)

    parts = [
        f"{k}={render(envelope[k])}"
        for k in sorted(envelope)
        if k != "sign" and envelope[k] is not None and envelope[k] != ""
    ]
    return "||".join(parts) + "||" + secret


def test_the_usual_envelope_takes_the_fast_path_with_the_same_text() -> None:
    text = _usual_envelope_sign_text(USUAL, SECRET)
    assert text == "data=abc||protocol=4||pv=2.0||t=1622449865300||s3cr3t"
    assert text == reference_text(USUAL, SECRET)
    assert envelope_sign(USUAL, SECRET) == md5(text)


# Five keys each, but not the usual shape: the fast path must step aside.
UNUSUAL = {
    "no sign": {**{k: v for k, v in USUAL.items() if k != "sign"}, "extra": "x"},
    "no data": {**{k: v for k, v in USUAL.items() if k != "data"}, "extra": "x"},
    "no protocol": {**{k: v for k, v in USUAL.items() if k != "protocol"}, "extra": "x"},
    "no pv": {**{k: v for k, v in USUAL.items() if k != "pv"}, "extra": "x"},
    "no t": {**{k: v for k, v in USUAL.items() if k != "t"}, "extra": "x"},
    "data not a string": {**USUAL, "data": 7},
    "protocol a string": {**USUAL, "protocol": "4"},
    "protocol a bool": {**USUAL, "protocol": True},
    "pv a number": {**USUAL, "pv": 2},
    "t a string": {**USUAL, "t": "1622449865300"},
    "t a float": {**USUAL, "t": 1.5},
    "empty data": {**USUAL, "data": ""},
    "empty pv": {**USUAL, "pv": ""},
    "none pv": {**USUAL, "pv": None},
    "empty data, string pv": {**USUAL, "data": "", "t": 5},
}


@pytest.mark.parametrize("envelope", UNUSUAL.values(), ids=UNUSUAL.keys())
def test_an_unusual_envelope_is_signed_by_the_general_formula(envelope: dict[str, Any]) -> None:
    assert len(envelope) == 5
    assert _usual_envelope_sign_text(envelope, SECRET) is None
    assert envelope_sign(envelope, SECRET) == md5(reference_text(envelope, SECRET))


@pytest.mark.parametrize(("flag", "text"), [(True, "true"), (False, "false")])
def test_booleans_are_signed_as_json_spells_them(flag: bool, text: str) -> None:
    envelope = {"data": "abc", "encrypted": flag, "sign": "x"}
    assert envelope_sign(envelope, SECRET) == md5(f"data=abc||encrypted={text}||{SECRET}")


def test_fields_are_sorted_by_key_and_empty_ones_left_out() -> None:
    envelope = {"t": 1, "b": "", "a": None, "data": "d", "c": 0, "sign": "x"}
    assert envelope_sign(envelope, SECRET) == md5(f"c=0||data=d||t=1||{SECRET}")


@pytest.mark.parametrize(("nested", "kind"), [({"a": 1}, "dict"), ([1, 2], "list")])
def test_a_nested_field_cannot_be_signed(nested: object, kind: str) -> None:
    with pytest.raises(UnsignableEnvelope, match=f"a {kind} field cannot be signed"):
        envelope_sign({"data": "abc", "extra": nested}, SECRET)


@pytest.mark.parametrize("extra", [1, 2], ids=["six fields", "seven fields"])
def test_fields_beyond_the_usual_five_are_signed_too(extra: int) -> None:
    envelope = {**USUAL, **{f"x{i}": f"v{i}" for i in range(extra)}}
    assert envelope_sign(envelope, SECRET) == md5(reference_text(envelope, SECRET))
    assert "x0=v0" in reference_text(envelope, SECRET)


def test_the_sign_is_lowercase_hex_md5() -> None:
    sign = envelope_sign(USUAL, SECRET)
    assert len(sign) == 32 and sign == sign.lower() and int(sign, 16) >= 0
