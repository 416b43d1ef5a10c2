"""Secrets never leave the process: every log line and failure message passes through here.

Two halves. :class:`Redactor` masks known secret values in text, in every form they take on
the way out (raw, percent-encoded, JSON- or repr-escaped). The URL functions say which parts of a
URL or DSN are credentials by its structure (the userinfo password, credential-like query
parameters): :func:`mask_url` masks a URL shown whole (``check-config``), :func:`url_secrets`
gives the values to register with a redactor. Both share one parser, so what is shown masked is
exactly what is masked in logs.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
from collections.abc import Iterable, Iterator
from urllib.parse import quote, quote_plus, unquote, unquote_plus

MASK = "[REDACTED]"
MIN_SECRET_LENGTH = 6  # shorter values would mask ordinary words

# Safe sets of the percent-encoders a secret may pass through: everything encoded, Python's
# default (``/`` kept), and RFC 3986's userinfo/query characters kept (as URL libraries do).
_QUOTE_SAFE = ("", "/", "!$&'()*+,;=:@/?")


def secret_forms(value: str) -> set[str]:
    """The ways ``value`` may be written in a line: raw, percent-encoded, JSON and repr escaped
    (repr escapes a ``'`` only inside a string that holds both kinds of quote: both forms)."""
    # surrogateescape: a secret read from a non-UTF-8 environment still gets every form.
    forms = {
        value,
        quote_plus(value, safe="", errors="surrogateescape"),
        repr(value)[1:-1],
        repr(value + "'\"")[1:-4],
    }
    forms.update(quote(value, safe=safe, errors="surrogateescape") for safe in _QUOTE_SAFE)
    forms.add(json.dumps(value)[1:-1])
    forms.add(json.dumps(value, ensure_ascii=False)[1:-1])
    return forms


def basic_credentials(user: str, password: str) -> list[str]:
    """What HTTP Basic auth puts on the wire for ``user:password`` (base64 of its UTF-8 or, as
    aiohttp sends URL credentials, Latin-1 bytes), and the decoded pair itself."""
    pair = f"{user}:{password}"
    values = [pair]
    for encoding in ("utf-8", "latin-1"):
        with contextlib.suppress(UnicodeEncodeError):
            values.append(base64.b64encode(pair.encode(encoding)).decode("ascii"))
    return values


class Redactor:
    """Masks every known secret value (in each of its :func:`secret_forms`) in text."""

    def __init__(self, secrets: Iterable[str] = (), *, min_length: int = MIN_SECRET_LENGTH) -> None:
        self._min_length = min_length
        self._secrets: tuple[str, ...] = ()
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        known = set(self._secrets)
        for secret in secrets:
            if secret and len(secret) >= self._min_length:
                known |= secret_forms(secret)
        # Longest first, so the common case (no overlap) replaces each secret whole.
        self._secrets = tuple(sorted(known, key=len, reverse=True))

    def __call__(self, text: str) -> str:
        found = [secret for secret in self._secrets if secret in text]
        if not found:
            return text
        return _mask_spans(text, _merged(_occurrences(text, found)))

    def __or__(self, other: Redactor) -> Redactor:
        """Both redactors' secrets in one pass: masking one after the other could leave the
        rest of a secret that overlaps one of the other's."""
        union = Redactor(min_length=min(self._min_length, other._min_length))
        union._secrets = tuple(sorted({*self._secrets, *other._secrets}, key=len, reverse=True))
        return union

    def __bool__(self) -> bool:
        return bool(self._secrets)

    @property
    def longest(self) -> int:
        """Length of the longest form: text cut within that distance may hold a partial one."""
        return len(self._secrets[0]) if self._secrets else 0


def _occurrences(text: str, secrets: list[str]) -> Iterator[tuple[int, int]]:
    """Every occurrence of every secret, overlapping ones included."""
    for secret in secrets:
        start = text.find(secret)
        while start >= 0:
            yield start, start + len(secret)
            start = text.find(secret, start + 1)


def _merged(spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def _mask_spans(text: str, spans: list[tuple[int, int]], mask: str = MASK) -> str:
    """``text`` with each of the sorted, disjoint ``spans`` replaced by ``mask``."""
    parts, position = [], 0
    for start, end in spans:
        parts += [text[position:start], mask]
        position = end
    parts.append(text[position:])
    return "".join(parts)


# -- credential names ------------------------------------------------------------------------

_CREDENTIAL_WORDS = (
    "auth",
    "token",
    "secret",
    "passw",
    "passphrase",
    "cookie",
    "signature",
    "hmac",
    "session",
    "credential",
    "apikey",
    "accesskey",
    "privatekey",
)
_CREDENTIAL_PARTS = frozenset({"key", "pass", "pwd", "sig", "jwt"})
_CREDENTIAL_NAMES = frozenset({"code", "sid"})  # Azure Functions' ?code=, session ids
_NAME_PARTS = re.compile(r"[^a-z0-9]+")


def is_credential_name(name: str) -> bool:
    """Whether a header or query parameter of this name carries a credential: ``Authorization``,
    ``Cookie``, ``X-Api-Key``, ``password``, ``access_token``, ``sig``, ``code`` and the like.
    Errs towards masking: a masked harmless value costs less than a shown secret."""
    lowered = name.lower()
    if lowered in _CREDENTIAL_NAMES or any(word in lowered for word in _CREDENTIAL_WORDS):
        return True
    return not _CREDENTIAL_PARTS.isdisjoint(_NAME_PARTS.split(lowered))


def header_secrets(name: str, value: str) -> list[str]:
    """A credential header's value as sent, its token after the scheme and, for ``Basic``, the
    decoded ``user:password`` and password; nothing for other headers."""
    if not is_credential_name(name):
        return []
    values = [value]
    scheme, _, token = value.strip().partition(" ")
    token = token.strip()
    if token:
        values.append(token)
    if scheme.lower() == "basic" and token:
        try:
            pair = base64.b64decode(token, validate=True).decode("utf-8")
        except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors
            pair = ""
        _, colon, password = pair.partition(":")
        if colon:
            values += [pair, password]
    return values


# -- URL structure ---------------------------------------------------------------------------

_SCHEME = re.compile(r"\s*[A-Za-z][A-Za-z0-9+.\-]*://")  # leading blanks: parsers strip them
# An authority without userinfo: a host (or [IPv6]) and an optional numeric port.
_HOST_PORT = re.compile(r"(?:\[[^\]]*\]|[^:@\[\]]*)(?::\d*)?")
# What follows the userinfo's "@": a host and port, then the path, query, fragment or the end.
_HOST_AFTER_AT = re.compile(r"(?:\[[^\]]*\]|[^/?#@:\[\]]*)(?::\d*)?(?=[/?#]|$)")


def _authority_end(text: str, start: int) -> int:
    ends = [i for i in (text.find(c, start) for c in "/?#") if i >= 0]
    return min(ends, default=len(text))


def _userinfo_end(text: str, start: int) -> int:
    """Index of the ``@`` that ends the userinfo, or -1 when there is none.

    The userinfo runs to the authority's last ``@`` (so a raw ``@`` in a password stays in it).
    A raw ``/``, ``?`` or ``#`` in a password ends the authority early, leaving a port that is
    not a number (``user:pa`` of ``user:pa/ss@db``): the userinfo then runs to the first ``@``
    that a host follows, so a malformed URL is masked rather than shown.
    """
    end = _authority_end(text, start)
    at = text.rfind("@", start, end)
    if at >= 0 or _HOST_PORT.fullmatch(text, start, end):
        return at
    at = text.find("@", end)
    while at >= 0 and not _HOST_AFTER_AT.match(text, at + 1):
        at = text.find("@", at + 1)
    return at


def _credential_params(text: str, start: int, end: int) -> Iterator[tuple[int, int]]:
    """Spans of the values of credential-like ``name=value`` pairs in ``text[start:end]``,
    separated by ``&`` only (as WHATWG, yarl and libpq read a query; a ``;`` is data)."""
    position = start
    while position <= end:
        stop = text.find("&", position, end)
        stop = end if stop < 0 else stop
        name, equals, _ = text[position:stop].partition("=")
        if equals and stop > position + len(name) + 1 and is_credential_name(unquote_plus(name)):
            yield position + len(name) + 1, stop
        position = stop + 1


class UrlCredentials:
    """Where the credentials of one URL are: spans of ``text``, as written."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.user: str | None = None
        self.password: tuple[int, int] | None = None
        self.params: list[tuple[int, int]] = []
        scheme = _SCHEME.match(text)
        if scheme is None:
            return
        start = scheme.end()
        at = _userinfo_end(text, start)
        if at >= 0:
            user, colon, password = text[start:at].partition(":")
            self.user = user
            if colon and password:
                self.password = (start + len(user) + 1, at)
        rest = at + 1 if at >= 0 else start
        query, fragment = text.find("?", rest), text.find("#", rest)
        if fragment < 0:
            fragment = len(text)
        if 0 <= query < fragment:
            self.params += _credential_params(text, query + 1, fragment)
        if fragment < len(text):  # OAuth-style #access_token=...
            self.params += _credential_params(text, fragment + 1, len(text))

    def masked(self, mask: str) -> str:
        spans = ([self.password] if self.password else []) + self.params
        return _mask_spans(self.text, spans, mask) if spans else self.text

    def secrets(self) -> list[str]:
        """Each credential as written and decoded, and for a password the ``user:password``
        pair, as written, decoded and as HTTP Basic auth sends it."""
        values: list[str] = []
        for start, end in self.params:
            raw = self.text[start:end]
            values += [raw, unquote(raw), unquote_plus(raw)]
        if self.password is not None:
            raw = self.text[slice(*self.password)]
            user, password = unquote(self.user or ""), unquote(raw)
            values += [raw, password, f"{self.user}:{raw}", *basic_credentials(user, password)]
        return values


def mask_url(text: str, mask: str = MASK) -> str:
    """The URL ``text`` with its password and credential query values replaced by ``mask``;
    any other text unchanged."""
    return UrlCredentials(text).masked(mask)


def url_secrets(text: str) -> list[str]:
    """The credential values a URL carries (see :meth:`UrlCredentials.secrets`)."""
    return UrlCredentials(text).secrets()


# One per process: secrets are registered as configuration is loaded.
REDACTOR = Redactor()
