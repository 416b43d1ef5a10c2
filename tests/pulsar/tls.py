"""Credentials of the test broker's other doors: a throwaway CA and server certificate for its TLS
port, and HS256 JWTs for its token provider.

The daemon verifies certificates by default; the tests prove it against a broker whose
certificate only this CA vouches for (and whose name, 127.0.0.1, is in the certificate).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tests.support.pki import make_pki


@dataclass(frozen=True)
class TlsFiles:
    ca_cert: Path
    server_cert: Path
    server_key: Path  # PKCS#8, as the broker wants it


def make_tls_files(directory: Path, host: str = "127.0.0.1") -> TlsFiles:
    pki = make_pki(directory, host, "broker")
    return TlsFiles(pki.ca, pki.cert, pki.key)


def _b64url(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def hs256_token(key: bytes, subject: str) -> str:
    """A JWT signed with HMAC-SHA256 over ``header.payload``, as RFC 7519 lays it out."""
    import hashlib
    import hmac
    import json

    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = _b64url(json.dumps({"sub": subject}).encode())
    signing_input = f"{header}.{payload}".encode("ascii")
    signature = _b64url(hmac.new(key, signing_input, hashlib.sha256).digest())
    return f"{header}.{payload}.{signature}"
