"""The redactor and the URL credential parser as logs and ``check-config`` rely on them (issue
15): every credential name family, every form a secret is written in, overlapping secrets, the
length floor, and URLs with credentials in each place they can be."""

from __future__ import annotations

import base64
import json
from urllib.parse import quote, quote_plus

import pytest

from tuya_events.observability.redact import (
    MASK,
    MIN_SECRET_LENGTH,
    Redactor,
    basic_credentials,
    header_secrets,
    is_credential_name,
    mask_url,
    secret_forms,
    url_secrets,
)

CREDENTIAL_NAMES = [
    "Authorization",
    "Proxy-Authorization",
    "X-Auth-Token",
    "access_token",
    "client_secret",
    "password",
    "db_passwd",
    "passphrase",
    "Cookie",
    "Set-Cookie",
    "X-Signature",
    "X-Hub-Hmac",
    "session_id",
    "credentials",
    "x-apikey",
    "accesskey",
    "privatekey",
    "api-key",
    "pass",
    "pwd",
    "sig",
    "jwt",
    "code",
    "sid",
    "SID",
    "X_KEY_ID",
]
PLAIN_NAMES = ["Content-Type", "X-Team", "user", "host", "monkey", "sidecar", "decode", "page"]


@pytest.mark.parametrize("name", CREDENTIAL_NAMES)
def test_credential_names_are_recognised(name: str) -> None:
    assert is_credential_name(name)


@pytest.mark.parametrize("name", PLAIN_NAMES)
def test_ordinary_names_are_not_credentials(name: str) -> None:
    assert not is_credential_name(name)


# -- header values -----------------------------------------------------------------------------


def test_a_bearer_header_gives_the_value_and_its_token() -> None:
    assert header_secrets("Authorization", "Bearer  tok-123 ") == ["Bearer  tok-123 ", "tok-123"]


def test_a_basic_header_gives_the_decoded_pair_and_password() -> None:
    token = base64.b64encode(b"user:pa55word").decode()
    assert header_secrets("Authorization", f"Basic {token}") == [
        f"Basic {token}",
        token,
        "user:pa55word",
        "pa55word",
    ]
    assert header_secrets("authorization", f"BASIC {token}")[2:] == ["user:pa55word", "pa55word"]


@pytest.mark.parametrize("token", ["!!notbase64", base64.b64encode(b"\xff\xfe").decode()])
def test_a_basic_header_that_does_not_decode_gives_the_value_and_token(token: str) -> None:
    assert header_secrets("Authorization", f"Basic {token}") == [f"Basic {token}", token]


def test_a_basic_header_without_a_colon_gives_no_pair() -> None:
    token = base64.b64encode(b"justatoken").decode()
    assert header_secrets("Authorization", f"Basic {token}") == [f"Basic {token}", token]


def test_a_value_without_a_scheme_is_one_secret() -> None:
    assert header_secrets("X-Api-Key", "k-123456") == ["k-123456"]
    assert header_secrets("X-Team", "ops-team") == []


# -- the forms of a secret ---------------------------------------------------------------------


def test_every_form_a_secret_is_written_in_is_known() -> None:
    value = "p@ss w/rd'\"é\\"
    forms = secret_forms(value)
    expected = {
        value,
        quote_plus(value, safe=""),
        quote(value, safe=""),
        quote(value),
        quote(value, safe="!$&'()*+,;=:@/?"),
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
        repr(value)[1:-1],
    }
    assert expected <= forms
    assert "p@ss w/rd\\'\"é\\\\" in forms  # repr escaping a ' when both quotes are present


def test_basic_credentials_as_sent_in_utf8_and_latin1() -> None:
    assert basic_credentials("u", "pé") == [
        "u:pé",
        base64.b64encode("u:pé".encode()).decode(),
        base64.b64encode("u:pé".encode("latin-1")).decode(),
    ]
    assert basic_credentials("u", "p€") == ["u:p€", base64.b64encode("u:p€".encode()).decode()]


# -- the redactor ------------------------------------------------------------------------------


def test_secrets_shorter_than_the_floor_are_not_masked() -> None:
    assert MIN_SECRET_LENGTH == 6
    redact = Redactor(["abcdef", "12345", ""])
    assert redact("abcdef and 12345") == f"{MASK} and 12345"
    assert Redactor(["abc"], min_length=3)("abc") == MASK
    assert not Redactor(["12345"])


def test_every_occurrence_and_form_is_masked() -> None:
    redact = Redactor(["s3cr3t/value"])
    line = f"a s3cr3t/value b {quote_plus('s3cr3t/value')} c s3cr3t/value"
    assert redact(line) == f"a {MASK} b {MASK} c {MASK}"
    assert redact("nothing here") == "nothing here"


def test_overlapping_secrets_are_masked_as_one_span() -> None:
    redact = Redactor(["abcdef123", "123456789"])
    assert redact("xx abcdef123456789 yy") == f"xx {MASK} yy"
    assert redact("abcdef123|123456789") == f"{MASK}|{MASK}"


def test_adjacent_occurrences_of_one_secret_are_merged() -> None:
    assert Redactor(["aaaaaa"])("xaaaaaaaaay") == f"x{MASK}y"


def test_secrets_added_later_are_masked_too() -> None:
    redact = Redactor(["first-secret"])
    redact.add(["second-secret"])
    assert redact("first-secret second-secret") == f"{MASK} {MASK}"


def test_a_union_masks_both_in_one_pass_with_the_lower_floor() -> None:
    union = Redactor(["abcdefgh"]) | Redactor(["efghijkl"], min_length=4)
    assert union("abcdefghijkl") == MASK
    union.add(["wxyz"])
    assert union("wxyz") == MASK


def test_longest_is_the_length_of_the_longest_form() -> None:
    assert Redactor().longest == 0
    assert not Redactor()
    redact = Redactor(["abc/def"])
    assert redact.longest == len(quote_plus("abc/def", safe=""))
    assert bool(redact)


# -- URLs --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql://user:pw-123@db:5432/x", f"postgresql://user:{MASK}@db:5432/x"),
        ("https://h/p?token=abc&page=2", f"https://h/p?token={MASK}&page=2"),
        ("https://h/p?page=2&api_key=k1#frag", f"https://h/p?page=2&api_key={MASK}#frag"),
        ("https://h/cb#access_token=t1&state=s", f"https://h/cb#access_token={MASK}&state=s"),
        ("https://h/p?token=&x=1", "https://h/p?token=&x=1"),
        ("https://user@h/p", "https://user@h/p"),
        ("https://user:@h/p", "https://user:@h/p"),
        ("https://u:p@ss@h/p", f"https://u:{MASK}@h/p"),
        ("postgresql://u:pa/ss@db/x", f"postgresql://u:{MASK}@db/x"),
        ("  https://u:secretpw@h", f"  https://u:{MASK}@h"),
        ("https://[::1]:80/p?sig=x1", f"https://[::1]:80/p?sig={MASK}"),
        ("not a url token=abc", "not a url token=abc"),
        ("https://h/p?q=a;b&token=x", f"https://h/p?q=a;b&token={MASK}"),
    ],
)
def test_mask_url_masks_credentials_by_structure(url: str, masked: str) -> None:
    assert mask_url(url) == masked
    assert mask_url(url, "***") == masked.replace(MASK, "***")


def test_url_secrets_give_each_credential_as_written_and_decoded() -> None:
    values = url_secrets("https://h/p?token=a%2Bb+c&page=2")
    assert values == ["a%2Bb+c", "a+b+c", "a+b c"]


def test_url_secrets_give_the_password_the_pair_and_basic_auth() -> None:
    values = url_secrets("postgresql://us%40r:p%40ss@db/x")
    assert values[:3] == ["p%40ss", "p@ss", "us%40r:p%40ss"]
    assert values[3:] == basic_credentials("us@r", "p@ss")
    assert url_secrets("https://h/p") == []


def test_a_query_ends_where_the_fragment_begins() -> None:
    url = "https://h/p?token=abc123#frag&x=1"
    assert mask_url(url) == f"https://h/p?token={MASK}#frag&x=1"
    assert url_secrets(url)[:1] == ["abc123"]


def test_only_a_basic_token_is_decoded() -> None:
    token = base64.b64encode(b"user:password").decode()
    assert header_secrets("Authorization", f"Bearer {token}") == [f"Bearer {token}", token]


def test_a_basic_password_may_hold_colons() -> None:
    token = base64.b64encode(b"user:pa:ss:word").decode()
    assert header_secrets("Authorization", f"Basic {token}")[2:] == [
        "user:pa:ss:word",
        "pa:ss:word",
    ]


def test_a_union_knows_its_longest_form() -> None:
    # What cuts text near a secret (webhook excerpts) keeps this far from the cut.
    union = Redactor(["zzzzzz"]) | Redactor(["aaaaaaaaaaaa"])
    assert union.longest == 12
    assert union("zzzzzz aaaaaaaaaaaa") == f"{MASK} {MASK}"


@pytest.mark.parametrize(
    ("value", "form"),
    [
        ("\x07secret\x07", "\\x07secret\\x07"),  # repr of a control character
        ("it's-secret", "it\\'s-secret"),  # repr in a string that holds both quotes
        ("a/b c-secret", "a%2Fb+c-secret"),  # a form field: / encoded, space as +
        ("caf\udce9-secret", "caf%E9-secret"),  # from a non-UTF-8 environment
    ],
    ids=["control", "quote", "form", "surrogate"],
)
def test_the_escaped_forms_a_line_may_hold(value: str, form: str) -> None:
    assert form in secret_forms(value)
    assert Redactor([value])(f"line: {form}") == f"line: {MASK}"


def test_url_secrets_give_every_credential_of_a_url() -> None:
    values = url_secrets("https://u:pw-123@h/p?token=t-1&sig=s-2#access_token=a-3")
    for secret in ("pw-123", "t-1", "s-2", "a-3"):
        assert secret in values, secret


def test_userinfo_is_only_looked_for_before_the_path() -> None:
    url = "https://h/docs/u:pw-in-path@x/y"
    assert mask_url(url) == url
    assert url_secrets(url) == []


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql://u:p/a@x:y@db/x", f"postgresql://u:{MASK}@db/x"),
        ("postgresql://u:p/a@x:y@db/x@z", f"postgresql://u:{MASK}@db/x@z"),
    ],
    ids=["first @ before a host", "a later @ in the path"],
)
def test_a_password_with_a_raw_slash_and_at_is_masked_up_to_the_host(url: str, masked: str) -> None:
    assert mask_url(url) == masked
    assert "p/a@x:y" in url_secrets(url)
