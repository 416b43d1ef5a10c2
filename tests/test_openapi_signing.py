"""OpenAPI signing against the shared document's vectors, and the rules around them.

The fake server's own verifier (tests/fake_tuya_openapi.py) is checked against the same vectors,
so the end-to-end tests that rely on it rest on the document, not on the client's signer.
"""

from __future__ import annotations

import hashlib
import hmac

import pytest

from tests import vectors as v
from tests.fake_tuya_openapi import expected_legacy_sign, expected_sign
from tuya_events.openapi.signing import (
    EMPTY_SHA256,
    canonical_url,
    sign_request,
    split_path,
    string_to_sign,
)


def vector_request(path: str, **overrides: object) -> object:
    arguments: dict = {
        "client_id": v.API_CLIENT_ID,
        "secret": v.API_SECRET,
        "method": "GET",
        "path": path,
        "t": v.API_T,
        "nonce": v.API_NONCE,
        "access_token": v.API_ACCESS_TOKEN,
        "signature_headers": v.API_SIGNATURE_HEADERS,
    }
    arguments.update(overrides)
    return sign_request(**arguments)


def test_token_call_vector() -> None:
    signed = vector_request("/v1.0/token?grant_type=1")
    assert signed.sign == v.API_TOKEN_SIGN
    assert signed.token_call
    # A token call signs no access token and sends none, even when one is at hand.
    assert v.API_ACCESS_TOKEN not in signed.signed
    assert "access_token" not in signed.headers


def test_business_call_vector() -> None:
    signed = vector_request("/v2.0/apps/schema/users?page_no=1&page_size=50")
    assert signed.sign == v.API_BUSINESS_SIGN
    assert signed.string_to_sign == (
        "GET\n"
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n"
        "area_id:29a33e8796834b1efa6\n"
        "call_id:8afdb70ab2ed11eb85290242ac130003\n"
        "\n"
        "/v2.0/apps/schema/users?page_no=1&page_size=50"
    )
    assert signed.signed == (
        v.API_CLIENT_ID + v.API_ACCESS_TOKEN + v.API_T + v.API_NONCE + signed.string_to_sign
    )


def test_query_from_path_or_arguments_is_signed_sorted() -> None:
    """PATH may carry the query in any order, or the pairs may come separately: same sign."""
    reversed_in_path = vector_request("/v2.0/apps/schema/users?page_size=50&page_no=1")
    as_pairs = vector_request(
        "/v2.0/apps/schema/users", query=[("page_size", "50"), ("page_no", "1")]
    )
    mixed = vector_request("/v2.0/apps/schema/users?page_size=50", query=[("page_no", "1")])
    for signed in (reversed_in_path, as_pairs, mixed):
        assert signed.sign == v.API_BUSINESS_SIGN
        assert signed.query == (("page_no", "1"), ("page_size", "50"))


def test_fake_server_verifier_agrees_with_the_vectors() -> None:
    """The fake server computes the sign with its own code; it must match the document too."""
    token = expected_sign(
        v.API_SECRET,
        v.API_CLIENT_ID,
        "",
        v.API_T,
        v.API_NONCE,
        "GET",
        b"",
        ["area_id", "call_id"],
        v.API_SIGNATURE_HEADERS,
        "/v1.0/token",
        [("grant_type", "1")],
    )
    business = expected_sign(
        v.API_SECRET,
        v.API_CLIENT_ID,
        v.API_ACCESS_TOKEN,
        v.API_T,
        v.API_NONCE,
        "GET",
        b"",
        ["area_id", "call_id"],
        v.API_SIGNATURE_HEADERS,
        "/v2.0/apps/schema/users",
        [("page_size", "50"), ("page_no", "1")],
    )
    assert (token, business) == (v.API_TOKEN_SIGN, v.API_BUSINESS_SIGN)


def test_body_is_hashed_as_the_exact_bytes_sent() -> None:
    compact = b'{"commands":[{"code":"switch_1","value":true}]}'
    spaced = b'{"commands": [{"code": "switch_1", "value": true}]}'
    one = vector_request("/v1.0/iot-03/devices/d1/commands", method="POST", body=compact)
    two = vector_request("/v1.0/iot-03/devices/d1/commands", method="POST", body=spaced)
    assert one.string_to_sign.split("\n")[1] == hashlib.sha256(compact).hexdigest()
    assert one.sign != two.sign
    assert one.headers["Content-Type"] == "application/json"
    assert one.body == compact


def test_no_body_hashes_the_empty_string_and_sends_no_content_type() -> None:
    assert EMPTY_SHA256.startswith("e3b0c442") and EMPTY_SHA256.endswith("b855")
    signed = vector_request("/v1.0/iot-03/devices/d1")
    assert signed.string_to_sign.split("\n")[1] == EMPTY_SHA256
    assert "Content-Type" not in signed.headers


def test_query_values_are_signed_unencoded() -> None:
    path, query = split_path("/v1.0/x?name=a%20b&zeta=%C3%A9&alpha=1%262")
    assert path == "/v1.0/x"
    assert canonical_url(path, query) == "/v1.0/x?alpha=1&2&name=a b&zeta=é"
    assert string_to_sign("get", None, {}, "/p").startswith("GET\n")


def test_headers_without_nonce_and_signature_headers() -> None:
    signed = sign_request(
        client_id="id",
        secret="s" * 32,
        method="GET",
        path="/v1.0/devices/d1",
        t="1700000000000",
        access_token="tok",
    )
    assert signed.headers == {
        "client_id": "id",
        "sign": signed.sign,
        "sign_method": "HMAC-SHA256",
        "t": "1700000000000",
        "access_token": "tok",
        "lang": "en",
    }
    # An empty headers block still leaves its line: METHOD, hash, "", url.
    assert signed.string_to_sign == f"GET\n{EMPTY_SHA256}\n\n/v1.0/devices/d1"


def test_legacy_scheme_signs_client_id_token_and_t_only() -> None:
    """The pre-2021 formula, recomputed here with hashlib from the document's description."""
    business = vector_request(
        "/v1.0/devices/d1", legacy=True, nonce="", signature_headers=None, method="POST", body=b"{}"
    )
    wanted = hmac.new(
        v.API_SECRET.encode(),
        (v.API_CLIENT_ID + v.API_ACCESS_TOKEN + v.API_T).encode(),
        hashlib.sha256,
    ).hexdigest()
    assert business.sign == wanted.upper()
    assert business.sign == expected_legacy_sign(
        v.API_SECRET, v.API_CLIENT_ID, v.API_ACCESS_TOKEN, v.API_T
    )
    token = vector_request("/v1.0/token?grant_type=1", legacy=True, nonce="", signature_headers={})
    assert token.signed == v.API_CLIENT_ID + v.API_T
    assert "nonce" not in token.headers and token.string_to_sign == ""
    with pytest.raises(ValueError, match="legacy"):
        vector_request("/v1.0/devices/d1", legacy=True)
