"""The hot path: Pulsar message body + properties -> typed :class:`Event`.

One :class:`TuyaCodec` per access secret; it owns reusable cipher objects, so it is not
thread-safe (the daemon decodes on its event loop). :class:`TuyaEncoder` does the reverse, exactly
as Tuya does, for the simulator, the demo and the tests.
"""

from __future__ import annotations

import base64
import binascii
import sys
from collections.abc import Callable, Mapping
from typing import Any, Literal

import orjson

from tuya_events.tuya.crypto import EcbCipher, GcmCipher, aes_key
from tuya_events.tuya.envelope import UnsignableEnvelope, envelope_sign
from tuya_events.tuya.errors import (
    BAD_BASE64,
    BAD_ENVELOPE,
    BAD_JSON,
    BAD_SIGN,
    DECODER_ERROR,
    TOO_DEEP,
    UNKNOWN_EM,
    DecodeError,
)
from tuya_events.tuya.events import Event, build_event, timestamp_ms

EM_ECB = "aes_ecb"
EM_GCM = "aes_gcm"
EM_PROPERTY = "em"

SignCheck = Literal["off", "log", "enforce"]

# Deeper than any Tuya document by far, and shallow enough that every handler can encode the
# event again (orjson refuses more than 254 levels; the payload adds a few around the document).
MAX_DEPTH = 200

if sys.version_info >= (3, 11):

    def _b64decode(text: str) -> bytes:
        return binascii.a2b_base64(text, strict_mode=True)

else:  # pragma: no cover - exercised only on 3.10

    def _b64decode(text: str) -> bytes:
        return base64.b64decode(text, validate=True)


def encryption_mode(properties: Mapping[str, str] | None) -> str:
    """The ``em`` property decides per message; absent means ECB, anything unknown is refused."""
    em = properties.get(EM_PROPERTY) if properties else None
    if not em:
        return EM_ECB
    if em in (EM_ECB, EM_GCM):
        return em
    if not isinstance(em, str):
        raise DecodeError(UNKNOWN_EM, f"the em property is a {type(em).__name__}, not a string")
    lowered = em.strip().lower()
    if lowered in (EM_ECB, EM_GCM):
        return lowered
    raise DecodeError(UNKNOWN_EM, f"unsupported encryption mode em={em[:40]!r}")


def parse_envelope(body: bytes | str) -> dict[str, Any]:
    try:
        envelope = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise DecodeError(BAD_ENVELOPE, "the message body is not JSON") from None
    if not isinstance(envelope, dict):
        raise DecodeError(BAD_ENVELOPE, "the message body is not a JSON object")
    data = envelope.get("data")
    if not isinstance(data, str) or not data:
        raise DecodeError(BAD_ENVELOPE, "the envelope has no 'data' string")
    return envelope


def parse_protocol(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and 0 < len(value) < 10 and value.isascii() and value.isdigit():
        return int(value)
    return None


def deeper_than(document: Any, limit: int) -> bool:
    """Whether containers nest more than ``limit`` levels (the top one is level 1), without
    recursion, so no depth the JSON parser accepts can exhaust the stack."""
    stack: list[tuple[Any, int]] = [(document, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > limit:
            return True
        for child in value.values() if isinstance(value, dict) else value:
            if isinstance(child, (dict, list)):
                stack.append((child, depth + 1))
    return False


class TuyaCodec:
    """Decrypts and types Tuya messages for one access secret."""

    __slots__ = ("_ecb", "_gcm", "_on_sign_mismatch", "_secret", "sign_check")

    def __init__(
        self,
        access_secret: str,
        sign_check: SignCheck = "off",
        on_sign_mismatch: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        key = aes_key(access_secret)
        self._secret = access_secret
        self._ecb = EcbCipher(key)
        self._gcm = GcmCipher(key)
        self.sign_check = sign_check
        self._on_sign_mismatch = on_sign_mismatch

    def decrypt_data(self, data: str, em: str) -> bytes:
        """Base64 ``data`` -> plaintext bytes, in the given mode."""
        try:
            raw = _b64decode(data)
        except (binascii.Error, ValueError):
            raise DecodeError(BAD_BASE64, "'data' is not valid base64") from None
        return self._gcm.decrypt(raw) if em == EM_GCM else self._ecb.decrypt(raw)

    def decrypt(
        self, body: bytes | str, properties: Mapping[str, str] | None
    ) -> tuple[dict[str, Any], bytes]:
        """Envelope and plaintext, after the optional ``sign`` check."""
        em = encryption_mode(properties)
        envelope = parse_envelope(body)
        if self.sign_check != "off":
            self._check_sign(envelope)
        return envelope, self.decrypt_data(envelope["data"], em)

    def decode(self, body: bytes | str, properties: Mapping[str, str] | None) -> Event:
        """The event, or :class:`DecodeError`: whatever the message holds, nothing else."""
        try:
            envelope, plain = self.decrypt(body, properties)
            try:
                document = orjson.loads(plain)
            except orjson.JSONDecodeError:
                raise DecodeError(BAD_JSON, "the decrypted data is not JSON") from None
            # Nesting past MAX_DEPTH takes twice as many bytes of brackets; counting them is a
            # cheap upper bound on the depth (0.3 us), so only a document with many is walked.
            if (
                len(plain) > 2 * MAX_DEPTH
                and plain.count(b"{") + plain.count(b"[") > MAX_DEPTH
                and isinstance(document, (dict, list))
                and deeper_than(document, MAX_DEPTH)
            ):
                raise DecodeError(TOO_DEEP, f"the decrypted JSON nests deeper than {MAX_DEPTH}")
            return build_event(
                document,
                parse_protocol(envelope.get("protocol")),
                timestamp_ms(envelope.get("t")),
            )
        except DecodeError:
            raise
        except Exception as exc:  # a gap in the checks above: still one of our reasons
            raise DecodeError(
                DECODER_ERROR, f"the decoder failed on this message ({type(exc).__name__})"
            ) from exc

    def _check_sign(self, envelope: dict[str, Any]) -> None:
        sign = envelope.get("sign")
        try:
            expected: str | None = envelope_sign(envelope, self._secret)
        except UnsignableEnvelope:
            expected = None  # a nested field: not an envelope Tuya signed
        if isinstance(sign, str) and sign.lower() == expected:
            return
        if self.sign_check == "enforce":
            problem = "missing" if not sign else "does not match"
            raise DecodeError(BAD_SIGN, f"the envelope sign {problem}")
        if self._on_sign_mismatch is not None:
            self._on_sign_mismatch(envelope)


class TuyaEncoder:
    """Builds messages exactly as Tuya's message service sends them."""

    def __init__(self, access_id: str, access_secret: str) -> None:
        key = aes_key(access_secret)
        self.access_id = access_id
        self._secret = access_secret
        self._ecb = EcbCipher(key)
        self._gcm = GcmCipher(key)

    def sign(self, envelope: dict[str, Any]) -> str:
        return envelope_sign(envelope, self._secret)

    def encrypt_document(self, document: Any, em: str = EM_ECB, nonce: bytes | None = None) -> str:
        plain = orjson.dumps(document)
        raw = self._gcm.encrypt(plain, nonce) if em == EM_GCM else self._ecb.encrypt(plain)
        return base64.b64encode(raw).decode("ascii")

    def encode(
        self,
        document: Any,
        em: str | None = EM_ECB,
        protocol: int | None = None,
        t_ms: int | None = None,
        nonce: bytes | None = None,
    ) -> tuple[bytes, dict[str, str]]:
        """Pulsar body and properties; ``em=None`` omits the property (Tuya's ECB default)."""
        if protocol is None:
            protocol = 4 if isinstance(document, dict) and "status" in document else 20
        if t_ms is None:
            import time

            t_ms = int(time.time() * 1000)
        envelope: dict[str, Any] = {
            "data": self.encrypt_document(document, em or EM_ECB, nonce),
            "protocol": protocol,
            "pv": "2.0",
            "t": t_ms,
        }
        envelope["sign"] = self.sign(envelope)
        properties = {EM_PROPERTY: em} if em else {}
        return orjson.dumps(envelope), properties
