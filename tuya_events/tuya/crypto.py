"""AES as Tuya uses it: ECB with PKCS#7 padding, or GCM with a 12-byte nonce and 16-byte tag.

Both ciphers are OpenSSL's, through ``cryptography`` (see benchmarks/README.md for why). The ECB
context is created once and reused: ECB has no chaining and padding is handled here, so feeding
whole blocks message after message is exact, and it saves ~4 us per message. A cipher object is
therefore not thread-safe: each thread or codec owns its own.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tuya_events.tuya.errors import (
    BAD_LENGTH,
    BAD_PADDING,
    GCM_AUTH_FAILED,
    TOO_SHORT,
    DecodeError,
)

BLOCK = 16
GCM_NONCE = 12
GCM_TAG = 16


def aes_key(access_secret: str) -> bytes:
    """Tuya's AES-128 key: the middle 16 characters of the access secret."""
    key = access_secret[8:24].encode("utf-8")
    if len(key) != BLOCK:
        raise ValueError(
            "the access secret is too short to derive an AES-128 key (needs 24+ chars)"
        )
    return key


def pkcs7_unpad(padded: bytes) -> bytes:
    """Strict unpadding: a wrong pad is an error, never a silently mangled plaintext."""
    if not padded:
        raise DecodeError(TOO_SHORT, "empty ciphertext")
    pad = padded[-1]
    if not 1 <= pad <= BLOCK:
        raise DecodeError(BAD_PADDING, f"pad byte {pad} is outside 1..16")
    if padded[-pad:] != bytes((pad,)) * pad:
        raise DecodeError(BAD_PADDING, f"the last {pad} pad bytes differ")
    return padded[:-pad]


def pkcs7_pad(plain: bytes) -> bytes:
    pad = BLOCK - len(plain) % BLOCK
    return plain + bytes((pad,)) * pad


class EcbCipher:
    """AES-128-ECB + PKCS#7 with one reusable OpenSSL context per direction."""

    __slots__ = ("_decryptor", "_key")

    def __init__(self, key: bytes) -> None:
        self._key = key
        self._decryptor = Cipher(algorithms.AES(key), modes.ECB()).decryptor()

    def decrypt(self, ciphertext: bytes) -> bytes:
        if not ciphertext:
            raise DecodeError(TOO_SHORT, "empty ciphertext")
        if len(ciphertext) % BLOCK:
            raise DecodeError(BAD_LENGTH, f"{len(ciphertext)} bytes is not a multiple of 16")
        return pkcs7_unpad(self._decryptor.update(ciphertext))

    def encrypt(self, plain: bytes) -> bytes:
        encryptor = Cipher(algorithms.AES(self._key), modes.ECB()).encryptor()
        return encryptor.update(pkcs7_pad(plain)) + encryptor.finalize()


class GcmCipher:
    """AES-128-GCM laid out as nonce(12) || ciphertext || tag(16), no associated data."""

    __slots__ = ("_aead",)

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    def decrypt(self, raw: bytes) -> bytes:
        if len(raw) < GCM_NONCE + GCM_TAG:
            raise DecodeError(TOO_SHORT, f"{len(raw)} bytes is shorter than nonce + tag (28)")
        try:
            return self._aead.decrypt(raw[:GCM_NONCE], raw[GCM_NONCE:], None)
        except InvalidTag:
            raise DecodeError(
                GCM_AUTH_FAILED, "the GCM tag does not match (wrong secret or altered data)"
            ) from None

    def encrypt(self, plain: bytes, nonce: bytes | None = None) -> bytes:
        nonce = os.urandom(GCM_NONCE) if nonce is None else nonce
        return nonce + self._aead.encrypt(nonce, plain, None)
