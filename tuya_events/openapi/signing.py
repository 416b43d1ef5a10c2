"""Tuya OpenAPI request signing: the current scheme, the legacy one, and the headers they go in.

Everything a dry run shows comes from here, so ``tuya-events api --dry-run`` prints exactly what
the client would send. The formulas are in docs (shared tuya-protocol.md, section 4)::

    string_to_sign = METHOD \\n sha256_hex(body) \\n headers_block \\n url
    token call:      client_id + t + nonce + string_to_sign
    business call:   client_id + access_token + t + nonce + string_to_sign
    sign = UPPER(hex(HMAC_SHA256(access_secret, that)))

The legacy scheme (projects created before mid-2021) signs only ``client_id [+ access_token] + t``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

SIGN_METHOD = "HMAC-SHA256"
TOKEN_PATH = "/v1.0/token"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()

Query = tuple[tuple[str, str], ...]


def split_path(path: str) -> tuple[str, Query]:
    """``/p?b=2&a=1`` -> (``/p``, the pairs as written, decoded): the query may ride in PATH."""
    if "?" not in path:
        return path, ()
    parts = urlsplit(path)
    pairs = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=False)
    return parts.path, tuple(pairs)


def sorted_query(query: Iterable[tuple[str, str]]) -> Query:
    """Sorted by key (stable for repeated keys): the order Tuya signs and we send."""
    return tuple(sorted(query, key=lambda pair: pair[0]))


def canonical_url(path: str, query: Sequence[tuple[str, str]]) -> str:
    """The signed ``url``: path, then ``?k=v&...`` sorted by key, values not encoded."""
    if not query:
        return path
    return path + "?" + "&".join(f"{k}={v}" for k, v in sorted_query(query))


def is_token_call(path: str) -> bool:
    """Token calls (get and refresh) are signed without an access token."""
    return path == TOKEN_PATH or path.startswith(TOKEN_PATH + "/")


def content_sha256(body: bytes | None) -> str:
    return hashlib.sha256(body).hexdigest() if body else EMPTY_SHA256


def headers_block(signature_headers: Mapping[str, str]) -> str:
    return "".join(f"{name}:{value}\n" for name, value in signature_headers.items())


def string_to_sign(
    method: str, body: bytes | None, signature_headers: Mapping[str, str], url: str
) -> str:
    return "\n".join((method.upper(), content_sha256(body), headers_block(signature_headers), url))


def hmac_upper(secret: str, message: str) -> str:
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest().upper()


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """One request, ready to send: what was signed, the sign, and every header.

    ``url`` is the signed path-and-query; ``query`` is sorted, as sent. ``string_to_sign`` is
    empty for the legacy scheme, which signs ``signed`` (client_id [+ access_token] + t) only.
    """

    method: str
    path: str
    query: Query
    body: bytes | None
    url: str
    string_to_sign: str
    signed: str
    sign: str
    headers: dict[str, str] = field(default_factory=dict)
    legacy: bool = False
    token_call: bool = False


def sign_request(
    *,
    client_id: str,
    secret: str,
    method: str,
    path: str,
    query: Sequence[tuple[str, str]] = (),
    body: bytes | None = None,
    t: str,
    access_token: str = "",
    nonce: str = "",
    signature_headers: Mapping[str, str] | None = None,
    legacy: bool = False,
    lang: str | None = "en",
) -> SignedRequest:
    """Sign one request. ``path`` may carry a query string; it is merged with ``query``.

    ``access_token`` is ignored for token calls (``/v1.0/token...``), which are signed without
    one. With ``legacy`` the nonce and Signature-Headers are not part of the sign, so they must
    not be given.
    """
    method = method.upper()
    bare_path, inline = split_path(path)
    pairs = sorted_query((*inline, *query))
    token_call = is_token_call(bare_path)
    token = "" if token_call else access_token
    extra = dict(signature_headers or {})
    url = canonical_url(bare_path, pairs)
    if legacy:
        if nonce or extra:
            raise ValueError("the legacy signing scheme signs no nonce and no Signature-Headers")
        to_sign = ""
        signed = client_id + token + t
    else:
        to_sign = string_to_sign(method, body, extra, url)
        signed = client_id + token + t + nonce + to_sign
    sign = hmac_upper(secret, signed)
    headers = {"client_id": client_id, "sign": sign, "sign_method": SIGN_METHOD, "t": t}
    if token:
        headers["access_token"] = token
    if nonce:
        headers["nonce"] = nonce
    if extra:
        headers["Signature-Headers"] = ":".join(extra)
        headers.update(extra)
    if lang:
        headers["lang"] = lang
    if body:
        headers["Content-Type"] = "application/json"
    return SignedRequest(
        method, bare_path, pairs, body, url, to_sign, signed, sign, headers, legacy, token_call
    )
