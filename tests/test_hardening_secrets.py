"""Secrets in every encoding they take on the way out (issue 12, "Secrets").

Generated secrets full of URL syntax (``@ : / % ? #``) sit in URLs and DSNs of every shape; none
may show in ``check-config`` or survive the redactor, raw, percent-encoded or as the base64 of
``user:password``. A careless receiver (a real aiohttp server on 127.0.0.1) echoes what the
webhook sent after a filler chosen so that cutting the excerpt before masking it would leave the
start of a secret. Console logs are checked for tracebacks in a subprocess of their own.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import string
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus, unquote

import pytest
import yaml
from aiohttp import web
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from yarl import URL

import tuya_events
from tests import vectors as v
from tests.pipeline_support import Harness, decoded_status, status_message
from tests.support.servers import ThreadedAiohttpServer, serving
from tests.support.settings import make_settings, routes_of
from tests.support.waiting import wait_until
from tuya_events.config.errors import ConfigError
from tuya_events.config.loader import settings_from_mapping
from tuya_events.config.render import MASK as SHOWN_MASK
from tuya_events.config.render import render_effective_config
from tuya_events.config.secrets import secret_values
from tuya_events.handlers.base import HandlerError
from tuya_events.handlers.webhook import (
    EXCERPT_CHARS,
    EXCERPT_READ_BYTES,
    WebhookHandler,
    WebhookOptions,
)
from tuya_events.observability.redact import MASK, REDACTOR, Redactor, mask_url

BASE = {"tuya": {"access_id": v.ACCESS_ID, "access_secret": v.ACCESS_SECRET, "region": "eu"}}
URL_SYNTAX = "@:/%?#&=+ !$'()*,;[]"
ALPHABET = string.ascii_letters + string.digits + URL_SYNTAX + '-._"\\éßΩ'
CREDENTIAL_PARAMS = (
    *("password", "passwd", "pass", "secret", "token", "key", "api_key", "access_token"),
    *("sig", "signature", "X-Amz-Signature", "sslpassword", "code"),
)

secrets_ = st.text(alphabet=ALPHABET, min_size=8, max_size=24)
users = st.text(alphabet=string.ascii_letters + string.digits + "-._~!$'()*,;=", max_size=8)
# How a config author may percent-encode: everything, or leaving sub-delimiters as they are.
quote_safe = st.sampled_from(["", "!$'()*,;=", "!$'()*,;=:@"])


@pytest.fixture(autouse=True)
def registered_secrets() -> Iterator[None]:
    """Generated secrets go no further than this test: the process-wide redactor is restored."""
    saved = REDACTOR._secrets
    yield
    REDACTOR._secrets = saved


def basic(user: str, password: str, encoding: str = "latin-1") -> str:
    return base64.b64encode(f"{user}:{password}".encode(encoding)).decode()


def encodings(secret: str, user: str | None = None) -> set[str]:
    """Every way the secret could leak: raw, percent-encoded and, with a user, HTTP Basic."""
    forms = {secret, quote(secret, safe=""), quote(secret), quote_plus(secret, safe="")}
    if user is not None:
        forms.add(basic(user, secret, "utf-8"))
        forms.add(f"{user}:{secret}")
        if all(ord(c) < 256 for c in secret):
            forms.add(basic(user, secret))
    return forms


def strings_of(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from strings_of(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings_of(value)
    elif isinstance(node, str):
        yield node


# -- URLs and DSNs of every shape ------------------------------------------------------------


@dataclass(frozen=True)
class Shape:
    """A URL with a secret in it: ``build(secret_as_written, user)`` -> URL."""

    name: str
    build: Callable[[str, str], str]
    raw_allowed: str  # characters a secret may hold unencoded in this place
    has_user: bool


SHAPES = [
    Shape("userinfo", lambda s, u: f"{{scheme}}://{u}:{s}@db.example:5432/x", "@:%&=+$[]", True),
    Shape("empty user", lambda s, u: f"{{scheme}}://:{s}@db.example/x", "@:%&=+", True),
    Shape(
        "query",
        lambda s, u: f"{{scheme}}://{u}@db.example/x?sslmode=require&{{param}}={s}&a=1",
        "@:/?%=+",
        False,
    ),
    Shape("fragment", lambda s, u: f"{{scheme}}://db.example/cb#{{param}}={s}", "@:/?%=+", False),
]
# Where a URL may stand in the file: not only ``dsn``.
PLACES = {
    "dsn": ("postgresql", lambda url: {"handlers": [{"type": "database", "dsn": url}]}),
    "webhook url": ("https", lambda url: {"handlers": [{"type": "webhook", "url": url}]}),
    "pulsar_url": ("pulsar+ssl", lambda url: {"tuya": {**BASE["tuya"], "pulsar_url": url}}),
    "any key": ("https", lambda url: {"handlers": [{"type": "x.y:Z", "callback": [url]}]}),
    "a header": (
        "https",
        lambda url: {
            "handlers": [{"type": "webhook", "url": "https://h/", "headers": {"X-U": url}}]
        },
    ),
}


@dataclass(frozen=True)
class Case:
    url: str
    secret: str
    user: str | None  # when the secret is a password: the Basic pair is a form of it too
    place: str
    written: str  # the secret as the URL holds it

    def tree(self, url: str | None = None) -> dict[str, Any]:
        return {**BASE, **PLACES[self.place][1](url or self.url)}

    def forms(self) -> set[str]:
        return encodings(self.secret, self.user) | {self.written}

    def distinct(self, *public: str) -> bool:
        """Whether no form of the secret is also ordinary text of the configuration."""
        return not any(form in text for form in self.forms() for text in public)


@st.composite
def urls(draw: st.DrawFn) -> Case:
    """A secret in a URL: percent-encoded, or raw where that leaves the same URL."""
    shape = draw(st.sampled_from(SHAPES))
    place = "any key" if shape.name == "fragment" else draw(st.sampled_from(sorted(PLACES)))
    secret = draw(secrets_)
    user = draw(users) if shape.name != "empty user" else ""
    assume(not any(form in user for form in encodings(secret)))  # the user is shown
    raw = unquote(secret) == secret and all(
        c.isalnum() or c in shape.raw_allowed + "-._" for c in secret
    )
    written = secret if raw and draw(st.booleans()) else quote(secret, safe=draw(quote_safe))
    param = draw(st.sampled_from(CREDENTIAL_PARAMS))
    url = shape.build(written, user).replace("{scheme}", PLACES[place][0])
    return Case(
        url.replace("{param}", param), secret, user if shape.has_user else None, place, written
    )


EXAMPLES = [  # the issue's own cases: a raw @, an empty user, a password in the query
    Case("postgresql://user:p@ss-word@db.example/x", "p@ss-word", "user", "dsn", "p@ss-word"),
    Case("postgresql://:s3cr3t-pw@db.example/x", "s3cr3t-pw", "", "dsn", "s3cr3t-pw"),
    Case("postgresql://db.example/x?password=s3cr3t-pw", "s3cr3t-pw", None, "dsn", "s3cr3t-pw"),
    Case("https://hook:pw%2F%3F%23%40x@db.example/x", "pw/?#@x", "hook", "webhook url", "pw%2F%3F%23%40x"),  # noqa: E501
]  # fmt: skip


def with_examples(test: Callable[..., None]) -> Callable[..., None]:
    for case in EXAMPLES:
        test = example(case)(test)
    return test


@settings(max_examples=300, deadline=None)
@given(urls())
@with_examples
def test_check_config_shows_no_url_credential_in_any_encoding(case: Case) -> None:
    text = render_effective_config(settings_from_mapping(case.tree(), {}))
    baseline = render_effective_config(settings_from_mapping(case.tree("https://h/"), {}))
    assume(case.distinct(baseline))
    shown = [text, *strings_of(yaml.safe_load(text))]  # also where YAML folds or escapes it
    for form in case.forms():
        assert not [where for where in shown if form in where], (form, text)
    # Masked by structure: the rest of the URL stays readable.
    assert SHOWN_MASK in text and "db.example" in text


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://user:p@ss@db/x", "postgresql://user:********@db/x"),
        ("postgresql://:pw-secret@db/x", "postgresql://:********@db/x"),
        ("postgresql://db/x?sslmode=require&password=pw", "postgresql://db/x?sslmode=require&password=********"),
        # A raw / ? or # in a password makes the URL malformed: still masked, not shown.
        ("postgresql://u:pa/ss@db/x", "postgresql://u:********@db/x"),
        ("postgresql://u:pa?ss@db/x", "postgresql://u:********@db/x"),
        ("https://h:443/x?email=a@b.c&q=1", "https://h:443/x?email=a@b.c&q=1"),
        ("https://host/@user/feed", "https://host/@user/feed"),
        ("https://h/x?code=azure-fn-key&x-api-key=k&sig=s&v=2", "https://h/x?code=********&x-api-key=********&sig=********&v=2"),
        ("https://h/cb#access_token=tok&state=1", "https://h/cb#access_token=********&state=1"),
        ("pulsar+ssl://mqe.tuyaeu.com:7285/", "pulsar+ssl://mqe.tuyaeu.com:7285/"),
        ("not a url: user:pw@host", "not a url: user:pw@host"),
        (" postgresql://u:pw@db/x", " postgresql://u:********@db/x"),  # parsers strip the blank
    ],
)  # fmt: skip
def test_urls_are_masked_by_their_structure(url: str, shown: str) -> None:
    assert mask_url(url, SHOWN_MASK) == shown


def test_a_dsn_that_is_not_a_url_is_masked_whole() -> None:
    tree = {**BASE, "handlers": [{"type": "database", "dsn": "host=db password=pw-secret"}]}
    rendered = yaml.safe_load(render_effective_config(settings_from_mapping(tree, {})))
    assert rendered["handlers"][0]["dsn"] == SHOWN_MASK


# -- the redactor's secrets: the same structure, for log lines --------------------------------


@settings(max_examples=300, deadline=None)
@given(urls())
@with_examples
def test_every_url_credential_is_registered_for_the_logs(case: Case) -> None:
    redact = Redactor(secret_values(settings_from_mapping(case.tree(), {})))
    for form in case.forms():
        redacted = redact(f"connect failed ({form}) for {form}")
        assert form not in redacted.replace(MASK, "\0"), form


def test_secret_values_cover_tuya_urls_headers_and_every_handler_key() -> None:
    token = "hdr-token-123456"
    tree = {
        "tuya": {**BASE["tuya"], "pulsar_url": "pulsar+ssl://:pulsar-pw-1@h:6651/"},
        "handlers": [
            {"type": "webhook", "url": "https://h/", "headers": {"X-Auth": f"Bearer {token}"}},
            {"type": "x.y:Z", "upstream": {"url": "https://u:nested-pw-1@h/"}},
            {"type": "database", "dsn": "postgresql://db/x?password=query-pw-1"},
        ],
    }  # fmt: skip
    values = secret_values(settings_from_mapping(tree, {}))
    for secret in ("pulsar-pw-1", token, f"Bearer {token}", "nested-pw-1", "query-pw-1"):
        assert secret in values
    assert "**********" not in values  # pydantic's placeholder for the access secret


# -- one masking implementation ----------------------------------------------------------------

masking_alphabet = st.text(alphabet="abcdef%:@", min_size=6, max_size=10)


@settings(max_examples=300, deadline=None)
@given(st.lists(masking_alphabet, min_size=1, max_size=4), st.data())
def test_redactor_masks_every_character_of_every_occurrence(
    secrets: list[str], data: st.DataObject
) -> None:
    """Overlapping secrets and overlapping occurrences included: nothing of one survives."""
    pieces = data.draw(st.lists(st.sampled_from([*secrets, "x", "ab", "%3A", " "]), max_size=12))
    text = "".join(pieces)
    covered = [False] * len(text)
    for secret in secrets:
        for start in range(len(text)):
            if text.startswith(secret, start):
                covered[start : start + len(secret)] = [True] * len(secret)
    expected, position = "", 0
    while position < len(text):
        if covered[position]:
            expected += MASK
            while position < len(text) and covered[position]:
                position += 1
        else:
            expected += text[position]
            position += 1
    assert Redactor(secrets)(text) == expected


def test_redactor_masks_a_secret_in_its_escaped_and_encoded_forms() -> None:
    secret = 'pa"ss\\wörd/?@1'
    redact = Redactor([secret])
    escaped = (json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1])
    encoded = (quote(secret, safe=""), quote_plus(secret, safe=""), repr(secret)[1:-1])
    for form in (secret, *escaped, *encoded):
        assert redact(f"<{form}>") == f"<{MASK}>"
    assert Redactor(["short"])("short") == "short"  # below the minimum length: ordinary words
    assert Redactor(["abcd"], min_length=4)("abcd") == MASK


def test_two_redactors_mask_in_one_pass() -> None:
    """Overlapping secrets of two redactors: one after the other would leave the rest."""
    first, second = Redactor(["abcdefgh"]), Redactor(["efghijkl"])
    assert second(first("abcdefghijkl")) == MASK + "ijkl"
    assert (first | second)("abcdefghijkl") == MASK


# -- the webhook's error excerpts, from a careless receiver ------------------------------------


@dataclass
class EchoReceiver(ThreadedAiohttpServer):
    """Answers 400 with ``lead`` filler characters, then the header (or ``path``: the request
    line's target) that the URL's last segment names, then every header and the target."""

    thread_name = "echo-receiver"
    port: int = 0

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/{lead}/{item}", self._answer)
        return app

    async def _answer(self, request: web.Request) -> web.Response:
        await request.read()
        item = request.match_info["item"]
        first = request.raw_path if item == "path" else request.headers.get(item, "")
        everything = " ".join(f"{name}: {value}" for name, value in request.headers.items())
        filler = "~" * int(request.match_info["lead"])
        body = f"{filler} {first} | {everything} | {request.method} {request.raw_path}"
        return web.Response(status=400, text=body)


@pytest.fixture(scope="module")
def echo() -> Iterator[EchoReceiver]:
    with serving() as start:
        yield start(EchoReceiver())


latin1_secrets = st.text(alphabet=ALPHABET.replace("Ω", ""), min_size=8, max_size=24)
HEADER_ALPHABET = string.ascii_letters + string.digits + "@:/%?#&=+!$'()*,;\"\\-._"
header_secrets_ = st.text(alphabet=HEADER_ALPHABET, min_size=8, max_size=24)


@dataclass(frozen=True)
class Sent:
    """One way of sending a credential: the handler's options, the echoed item that carries it
    (a header, or ``path``: the request target), the secret-bearing token in that item and
    where it starts, and every form of the secret that must not show."""

    options: dict[str, Any]
    token: str
    offset: int
    forms: set[str]


ECHOED_FIRST = {
    "url userinfo": "authorization",
    "url empty user": "authorization",
    "bearer header": "authorization",
    "basic header": "authorization",
    "api key header": "x-api-key",
    "url query": "path",
}


def sent_as(kind: str, secret: str, user: str, port: int, lead: int, safe: str) -> Sent:
    path = f"/{lead:03d}/{ECHOED_FIRST[kind]}"
    base = f"http://127.0.0.1:{port}{path}"
    if kind in ("url userinfo", "url empty user"):
        user = user if kind == "url userinfo" else ""
        url = f"http://{user}:{quote(secret, safe=safe)}@127.0.0.1:{port}{path}"
        forms = encodings(secret, user)
        return Sent({"url": url}, basic(user, secret), len("Basic "), forms)
    if kind == "bearer header":
        headers = {"Authorization": f"Bearer {secret}"}
        return Sent({"url": base, "headers": headers}, secret, len("Bearer "), {secret})
    if kind == "basic header":
        token = basic(user, secret, "utf-8")
        headers = {"Authorization": f"Basic {token}"}
        forms = {token, f"{user}:{secret}", secret}
        return Sent({"url": base, "headers": headers}, token, len("Basic "), forms)
    if kind == "api key header":
        return Sent({"url": base, "headers": {"X-Api-Key": secret}}, secret, 0, {secret})
    assert kind == "url query"
    url = URL(f"{base}?token={quote(secret, safe=safe)}&v=1")
    token = url.raw_query_string.split("&")[0].partition("=")[2]  # as aiohttp sends it
    forms = encodings(secret) | {token}
    return Sent({"url": str(url)}, token, len(path) + len("?token="), forms)


def leaks(message: str, whole: set[str], starts: set[str]) -> list[str]:
    """Forms found whole, and the start (4 characters or more) of a secret-bearing token at the
    end of the message: what cutting before masking leaves."""
    found = [form for form in whole if form in message]
    found += [t[:k] for t in starts for k in range(4, len(t)) if message.endswith(t[:k])]
    return found


@pytest.mark.parametrize("kind", sorted(ECHOED_FIRST))
def test_webhook_excerpt_is_masked_before_it_is_cut(kind: str, echo: EchoReceiver) -> None:
    secrets = header_secrets_ if "header" in kind else latin1_secrets

    @settings(max_examples=40, deadline=None)
    @given(secrets, users, quote_safe, st.integers(min_value=0, max_value=200))
    def check(secret: str, user: str, safe: str, into: int) -> None:
        first = sent_as(kind, secret, user, echo.port, 0, safe)
        into = 4 + into % (len(first.token) - 4)  # the cut falls inside the token, 4 or more in
        lead = EXCERPT_CHARS - 1 - first.offset - into
        sent = sent_as(kind, secret, user, echo.port, lead, safe)
        message = excerpt_of(sent.options)
        assert not leaks(message, sent.forms, {sent.token, secret}), message
        excerpt = message.removeprefix("HTTP 400: ")
        assert excerpt.startswith("~" * lead + " ")
        # The mask stands where the token (or the header value holding it) was.
        assert MASK[:4] in excerpt[EXCERPT_CHARS - into - sent.offset :], message

    check()


def excerpt_of(options: dict[str, Any]) -> str:
    handler = WebhookHandler("hook", WebhookOptions.model_validate(options))
    event, delivery = decoded_status()

    async def scenario() -> str:
        await handler.start()
        try:
            with pytest.raises(HandlerError) as raised:
                await handler.handle(event, delivery)
        finally:
            await handler.stop()
        return raised.value.message

    return asyncio.run(scenario())


@dataclass
class SlowEcho(EchoReceiver):
    """Sends the handler's read limit in one piece that ends inside the echoed Authorization,
    the rest later; the filler is whitespace, which folds away in the excerpt."""

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        auth = request.headers["Authorization"].encode()
        cut = len(auth) // 2
        response = web.StreamResponse(status=400)
        await response.prepare(request)
        await response.write(b"x" + b" " * (EXCERPT_READ_BYTES - 1 - cut) + auth[:cut])
        await asyncio.sleep(0.2)
        await response.write(auth[cut:] + b" " * 1000)
        return response


def test_a_secret_cut_off_by_the_read_limit_is_not_shown() -> None:
    receiver = SlowEcho().start()
    try:
        secret = "Bearer s3cret-token-value-longer-than-four"
        options = {
            "url": f"http://127.0.0.1:{receiver.port}/0/x",
            "headers": {"Authorization": secret},
        }
        message = excerpt_of(options)
    finally:
        receiver.stop()
    assert message.startswith("HTTP 400: x")
    assert not leaks(message, {secret, secret[7:]}, {secret, secret[7:]}), message


def test_url_credentials_echoed_by_a_receiver_never_reach_dead_letters_or_logs(
    tmp_path: Path,
    echo: EchoReceiver,
    captured_logs: io.StringIO,
) -> None:
    user, password = "hook-user", "pw:with@and/and%"
    url = f"http://{user}:{quote(password, safe='')}@127.0.0.1:{echo.port}/175/authorization"
    settings_ = make_settings(tmp_path, [{"type": "webhook", "url": url}])
    REDACTOR.add(secret_values(settings_))  # as `tuya-events run` does
    [route] = routes_of(settings_)

    async def scenario() -> list[Any]:
        async with Harness(settings_, [route.handler]) as h:
            h.source.publish(*status_message("dev00", 0), partition=0, key="dev00")
            await wait_until(lambda: len(h.source.acknowledged) == 1)
            return h.store.list()

    [record] = asyncio.run(scenario())
    assert record.reason == "http_400" and MASK in record.message
    text = record.message + repr(record.as_dict(include_body=True)) + captured_logs.getvalue()
    assert "message dead-lettered" in captured_logs.getvalue()
    for form in encodings(password, user):
        assert form not in text, form
    # The receiver echoed the Basic token across the excerpt's cut: not even its start shows.
    assert basic(user, password)[:8] not in text


# -- bad configuration: refused at load time ---------------------------------------------------


@pytest.mark.parametrize(
    "url",
    ["https://user:pw-secret@h/x", "https://:pw-secret@h/x", "https://user@h/x"],
)
@pytest.mark.parametrize("header", ["Authorization", "authorization"])
def test_url_credentials_and_an_authorization_header_are_refused(
    tmp_path: Path, url: str, header: str
) -> None:
    entry = {"type": "webhook", "url": url, "headers": {header: "Bearer hdr-secret-1"}}
    settings_ = make_settings(tmp_path, [entry])
    with pytest.raises(ConfigError) as raised:
        routes_of(settings_)
    [(path, problem)] = raised.value.problems
    assert path == "handlers[0].headers" and "Authorization" in problem
    assert "pw-secret" not in raised.value.render() and "hdr-secret-1" not in raised.value.render()


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("https://user:pw-%CE%A9-secret@h/x", "Latin-1"),
        ("https://us%3Aer:pw-secret@h/x", "':'"),
    ],
)
def test_url_credentials_that_basic_auth_cannot_send_are_refused(
    tmp_path: Path, url: str, problem: str
) -> None:
    entry = {"type": "webhook", "url": url}
    settings_ = make_settings(tmp_path, [entry])
    with pytest.raises(ConfigError) as raised:
        routes_of(settings_)
    [(path, message)] = raised.value.problems
    assert path == "handlers[0].url" and problem in message and "pw-" not in message


def test_url_credentials_with_other_headers_are_fine(tmp_path: Path) -> None:
    entry = {"type": "webhook", "url": "https://u:pw@h/x", "headers": {"X-Team": "ops"}}
    settings_ = make_settings(tmp_path, [entry])
    [route] = routes_of(settings_)
    assert isinstance(route.handler, WebhookHandler)


# -- console logs: tracebacks pass through the redactor too ------------------------------------

LOGGING_SCRIPT = r"""
import logging, os
from tuya_events.observability.logging import configure_logging, get_logger
from tuya_events.observability.redact import REDACTOR

ESCAPED = os.environ["ESCAPED_SECRET"]
QUOTED = "it's-a-s3cr3t"
REDACTOR.add(["s3cr3t-tb-value-8842", ESCAPED, QUOTED])
configure_logging("info", os.environ["LOG_FORMAT"])


def connect():
    raise RuntimeError("login refused for s3cr3t-tb-value-8842 and " + ESCAPED)


def chained():
    try:
        connect()
    except RuntimeError as exc:
        raise ValueError("retry with s3cr3t-tb-value-8842 failed") from exc


log, stdlib = get_logger("t"), logging.getLogger("lib")
try:
    chained()
except ValueError as exc:
    log.exception("structlog exception")
    log.error("structlog exc_info", exc_info=exc)
    stdlib.exception("stdlib exception")
    stdlib.error("stdlib exc_info %s", "s3cr3t-tb-value-8842", exc_info=True)
    log.warning("as a value", error=exc, cause=exc.__cause__)
log.warning("stack s3cr3t-tb-value-8842", stack_info=True)
# Values a console renderer shows as repr(): with spaces, with both kinds of quote, nested.
log.warning("fields", error="both ' and \" around " + QUOTED, nested={"k": [ESCAPED, QUOTED]})
stdlib.warning("stdlib %s and %r", QUOTED, {"k": ESCAPED})
print("done", flush=True)
"""


@pytest.mark.parametrize("log_format", ["console", "json"])
def test_tracebacks_are_redacted_in_every_log_format(tmp_path: Path, log_format: str) -> None:
    script = tmp_path / "logs_an_exception.py"
    script.write_text(LOGGING_SCRIPT)
    escaped = 'pa"ss\\wörd-77'
    root = str(Path(tuya_events.__file__).resolve().parent.parent)  # this checkout's code
    environ = {
        **os.environ,
        "LOG_FORMAT": log_format,
        "ESCAPED_SECRET": escaped,
        "PYTHONPATH": root,
    }
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, env=environ
    )
    assert result.returncode == 0 and result.stdout == "done\n", result.stderr
    output = result.stderr
    assert output.count("Traceback (most recent call last)") >= 4, output  # they are rendered
    assert "RuntimeError" in output and "connect()" in output
    assert output.count(MASK) >= 20, output
    for secret in ("s3cr3t-tb-value-8842", escaped, "it's-a-s3cr3t"):
        for form in (
            repr(secret)[1:-1],
            secret.replace("'", "\\'"),
            secret,
            json.dumps(secret)[1:-1],
            json.dumps(secret, ensure_ascii=False)[1:-1],
        ):
            assert form not in output, (form, output)
    if log_format == "json":
        assert all(json.loads(line) for line in output.splitlines())
