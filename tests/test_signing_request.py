"""The exact request the signer sends: every header, and the query in the order Tuya signs.

The string to sign is rebuilt from the headers alone, the way Tuya's server does (Tuya's
documented algorithm, computed here and in tests/fake_tuya_openapi.py independently of
tuya_events.openapi.signing), so a header left out or a value changed cannot go unnoticed.
"""

from __future__ import annotations

import hashlib
import hmac

import pytest

from tests import vectors as v
from tests.fake_tuya_openapi import expected_sign
from tuya_events.openapi.signing import canonical_url, sign_request, sorted_query, split_path


def server_side_sign(headers: dict[str, str], method: str, path: str, query, body: bytes) -> str:  # type: ignore[no-untyped-def]
    """What Tuya's server computes from the request as received."""
    names = [n for n in headers.get("Signature-Headers", "").split(":") if n]
    return expected_sign(
        v.API_SECRET,
        headers["client_id"],
        headers.get("access_token", ""),
        headers["t"],
        headers.get("nonce", ""),
        method,
        body,
        names,
        headers,
        path,
        list(query),
    )


def business(**overrides: object):  # type: ignore[no-untyped-def]
    arguments: dict[str, object] = {
        "client_id": v.API_CLIENT_ID,
        "secret": v.API_SECRET,
        "method": "post",
        "path": "/v1.0/devices/d1/commands?z=1",
        "query": [("b", "2"), ("a", "9")],
        "body": b'{"commands":[]}',
        "t": v.API_T,
        "access_token": v.API_ACCESS_TOKEN,
        "nonce": v.API_NONCE,
        "signature_headers": dict(v.API_SIGNATURE_HEADERS),
    }
    arguments.update(overrides)
    return sign_request(**arguments)  # type: ignore[arg-type]


def test_every_header_of_a_business_call() -> None:
    request = business()
    expected = {
        "client_id": v.API_CLIENT_ID,
        "sign": request.sign,
        "sign_method": "HMAC-SHA256",
        "t": v.API_T,
        "access_token": v.API_ACCESS_TOKEN,
        "nonce": v.API_NONCE,
        "Signature-Headers": ":".join(v.API_SIGNATURE_HEADERS),
        **v.API_SIGNATURE_HEADERS,
        "lang": "en",
        "Content-Type": "application/json",
    }
    assert request.headers == expected
    assert request.method == "POST"
    assert request.path == "/v1.0/devices/d1/commands"
    assert request.query == (("a", "9"), ("b", "2"), ("z", "1"))
    assert request.url == "/v1.0/devices/d1/commands?a=9&b=2&z=1"
    assert request.sign == server_side_sign(
        request.headers, "POST", request.path, request.query, request.body
    )
    assert request.legacy is False and request.token_call is False


def test_the_string_to_sign_is_tuyas_formula() -> None:
    request = business()
    block = "".join(f"{k}:{val}\n" for k, val in v.API_SIGNATURE_HEADERS.items())
    digest = hashlib.sha256(b'{"commands":[]}').hexdigest()
    text = f"POST\n{digest}\n{block}\n/v1.0/devices/d1/commands?a=9&b=2&z=1"
    assert request.string_to_sign == text
    assert request.signed == v.API_CLIENT_ID + v.API_ACCESS_TOKEN + v.API_T + v.API_NONCE + text
    mac = hmac.new(v.API_SECRET.encode(), request.signed.encode(), hashlib.sha256)
    assert request.sign == mac.hexdigest().upper()


def test_no_body_no_nonce_no_signed_headers_and_no_lang() -> None:
    request = business(method="GET", body=None, nonce="", signature_headers=None, lang=None)
    assert request.headers == {
        "client_id": v.API_CLIENT_ID,
        "sign": request.sign,
        "sign_method": "HMAC-SHA256",
        "t": v.API_T,
        "access_token": v.API_ACCESS_TOKEN,
    }
    empty = hashlib.sha256(b"").hexdigest()
    assert request.string_to_sign == f"GET\n{empty}\n\n{request.url}"
    assert request.sign == server_side_sign(
        request.headers, "GET", request.path, request.query, b""
    )


def test_a_token_call_carries_no_access_token() -> None:
    for path in ("/v1.0/token", "/v1.0/token/refresh-token-1"):
        request = business(method="GET", path=path, query=[("grant_type", "1")], body=None)
        assert "access_token" not in request.headers
        assert request.token_call is True
        assert request.signed.startswith(v.API_CLIENT_ID + v.API_T + v.API_NONCE)
        assert request.sign == server_side_sign(
            request.headers, "GET", request.path, request.query, b""
        )
    assert business(path="/v1.0/tokens").token_call is False
    assert business(path="/v1.0/tokenx").token_call is False


def test_query_is_sorted_by_key_not_by_value_and_stable_for_repeated_keys() -> None:
    assert sorted_query([("b", "1"), ("a", "2")]) == (("a", "2"), ("b", "1"))
    assert sorted_query([("k", "2"), ("k", "1"), ("a", "3")]) == (
        ("a", "3"),
        ("k", "2"),
        ("k", "1"),
    )
    request = business(path="/v1.0/x", query=[("b", "1"), ("a", "2")])
    assert request.query == (("a", "2"), ("b", "1"))
    assert request.url == "/v1.0/x?a=2&b=1"


def test_the_query_may_ride_in_the_path_decoded_and_blank_values_kept() -> None:
    assert split_path("/p") == ("/p", ())
    assert split_path("/p?b=2&a=&c=x%20y") == ("/p", (("b", "2"), ("a", ""), ("c", "x y")))
    assert canonical_url("/p", ()) == "/p"
    assert canonical_url("/p", [("b", "x y"), ("a", "")]) == "/p?a=&b=x y"


def test_legacy_scheme_headers_and_refusals() -> None:
    request = business(nonce="", signature_headers=None, legacy=True)
    assert request.string_to_sign == ""
    assert request.signed == v.API_CLIENT_ID + v.API_ACCESS_TOKEN + v.API_T
    assert "nonce" not in request.headers and "Signature-Headers" not in request.headers
    assert request.legacy is True
    with pytest.raises(ValueError, match="legacy"):
        business(legacy=True, signature_headers=None)  # a nonce
    with pytest.raises(ValueError, match="legacy"):
        business(legacy=True, nonce="")  # Signature-Headers
