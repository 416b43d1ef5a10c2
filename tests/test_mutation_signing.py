"""Signing as ``tuya-events api`` uses it (issue 15): a query written loosely in the path, and a
business call signed before any token is known (``--dry-run`` without credentials to spare)."""

from __future__ import annotations

import pytest

from tests import vectors as v
from tuya_events.openapi.signing import hmac_upper, sign_request, split_path


@pytest.mark.parametrize(
    ("path", "pairs"),
    [
        ("/v1.0/devices?b=2&&a=1", (("b", "2"), ("a", "1"))),
        ("/v1.0/devices?flag&a=1", (("flag", ""), ("a", "1"))),
        ("/v1.0/devices?a=1&", (("a", "1"),)),
        ("/v1.0/devices?a=", (("a", ""),)),
    ],
    ids=["empty field", "bare key", "trailing ampersand", "blank value"],
)
def test_a_loosely_written_query_is_read_not_refused(path: str, pairs: tuple) -> None:
    assert split_path(path) == ("/v1.0/devices", pairs)
    signed = sign_request(
        client_id=v.API_CLIENT_ID, secret=v.API_SECRET, method="GET", path=path, t=v.API_T
    )
    assert signed.query == tuple(sorted(pairs))


def test_a_business_call_without_a_token_signs_and_sends_none() -> None:
    signed = sign_request(
        client_id=v.API_CLIENT_ID,
        secret=v.API_SECRET,
        method="GET",
        path="/v1.0/devices/d1",
        t=v.API_T,
        nonce=v.API_NONCE,
    )
    assert "access_token" not in signed.headers
    assert signed.signed == v.API_CLIENT_ID + v.API_T + v.API_NONCE + signed.string_to_sign
    assert signed.sign == hmac_upper(v.API_SECRET, signed.signed)
