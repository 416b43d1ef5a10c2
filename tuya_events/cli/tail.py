"""``tuya-events tail``: watch the events a running daemon handles, as they pass.

It reads the daemon's ``/tail`` stream (server-sent events, observability/tail.py) from the HTTP
listener of the configuration (``-c``), filtered on the daemon's side by ``--match`` rules,
the same language as a handler's ``match:``. Readable lines on a terminal, JSON lines otherwise
(or with ``--json``). Messages this viewer missed because it fell behind are counted by the
daemon and shown where the gap is; the daemon itself is never slowed by a viewer.

Exit codes: 0 when the daemon ended the stream (it stopped), 1 when it refused the viewer (no
or a wrong token, the tail off), 64 for match rules that do not validate, 69 when the daemon
is unreachable, went away or fell silent, 78 for a bad configuration.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import orjson
from pydantic import ValidationError

from tuya_events.cli.exits import FAILURE, OK, UNAVAILABLE, USAGE, CliError
from tuya_events.config import ConfigError, load_settings
from tuya_events.config.errors import validation_problems
from tuya_events.config.loader import parse_document
from tuya_events.config.settings import Settings
from tuya_events.matching import compile_match
from tuya_events.observability.redact import REDACTOR

DEFAULT_URL = "http://127.0.0.1:9464"
TOKEN_ENV = "TUYA_EVENTS_TAIL_TOKEN"
PATH = "/tail"
MAX_RULES_BYTES = 64 << 10


def add_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    parents: list[argparse.ArgumentParser],
) -> None:
    parser = subparsers.add_parser(
        "tail",
        parents=parents,
        help="watch the events a running daemon handles, live (secrets masked)",
        description="Stream the events a running daemon handles: decoded, enriched, with the "
        "handlers that took each one and those whose rules did not match. The daemon is read "
        "through its HTTP listener (http.listen of -c); beyond loopback it needs the tail's "
        f"token (tail.token of -c, or ${TOKEN_ENV}). Exit 0 when the daemon ends the stream, "
        "1 when it refuses, 64 for bad --match rules, 69 when it is unreachable or goes away.",
    )
    parser.add_argument(
        "--match",
        metavar="RULES",
        help="only events these rules take, as a handler's match: (YAML or JSON), e.g. "
        "'category: wsdcg' or '{value: {doorcontact_state: true}}'; @FILE reads them from FILE",
    )
    output = parser.add_mutually_exclusive_group()
    output.add_argument(
        "--json", action="store_true", help="JSON lines (the default when stdout is not a tty)"
    )
    output.add_argument(
        "--text", action="store_true", help="readable lines (the default on a terminal)"
    )
    parser.add_argument("--url", help=f"the daemon's HTTP address (default {DEFAULT_URL})")
    parser.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        help="seconds without a word from the daemon (it sends one every 15 s) before giving "
        "up (default 60)",
    )
    parser.set_defaults(handler=run)


# -- arguments ------------------------------------------------------------------------------


def match_rules(text: str | None) -> Any:
    """``--match`` parsed and validated as a handler's rules (None without it)."""
    if not text:
        return None
    source = "--match"
    if text.startswith("@"):
        source = text[1:]
        try:
            text = Path(source).read_bytes()[:MAX_RULES_BYTES].decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CliError(f"--match: cannot read {source}: {exc}", USAGE) from None
    try:
        rules = parse_document(text, source)
    except ConfigError as error:
        raise CliError(error.render(), USAGE) from None
    if not isinstance(rules, (dict, list)):
        raise CliError("--match: rules are a mapping (or a list of them)", USAGE)
    try:
        compile_match(rules)
    except ValidationError as error:
        lines = [f"  {where}: {why}" for where, why in validation_problems(error, ("match",))]
        raise CliError("--match rules do not validate:\n" + "\n".join(lines), USAGE) from None
    return rules


def _settings(args: argparse.Namespace) -> Settings | None:
    if args.url and not args.config:
        return None
    return load_settings(args.config)


def _base_url(args: argparse.Namespace, settings: Settings | None) -> str:
    if args.url:
        url: str = args.url
        return url.rstrip("/")
    if settings is None:
        return DEFAULT_URL
    host, port = settings.http.listen
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _token(settings: Settings | None) -> str | None:
    token = os.environ.get(TOKEN_ENV)
    if not token and settings is not None:
        secret = settings.tail.token or getattr(settings.http, "token", None)
        token = secret.get_secret_value() if secret is not None else None
    if token:
        REDACTOR.add([token])
    return token or None


# -- the stream -----------------------------------------------------------------------------


def sse_events(lines: Iterable[bytes]) -> Iterator[tuple[str, str]]:
    """``(event type, data)`` of each server-sent event; comments (heartbeats) skipped."""
    kind = "message"
    data: list[str] = []
    for raw in lines:
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if not line:
            if data:
                yield kind, "\n".join(data)
            kind, data = "message", []
        elif not line.startswith(":"):
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                kind = value
            elif field == "data":
                data.append(value)


def _when(record: dict[str, Any]) -> str:
    event = record.get("event") or {}
    ms = event.get("timestamp_ms") or (record.get("delivery") or {}).get("publish_time_ms")
    if not isinstance(ms, int) or ms <= 0:
        return "-"
    local = time.localtime(ms / 1000)
    return time.strftime("%Y-%m-%d %H:%M:%S", local) + f".{ms % 1000:03d}"


def _value(item: dict[str, Any]) -> str:
    scaled, unit = item.get("scaled"), item.get("unit")
    value = scaled if "scaled" in item and scaled is not None else item.get("value")
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} {unit}" if unit else text


def _what(event: dict[str, Any]) -> str:
    kind = event.get("kind")
    if kind == "status":
        items = event.get("statuses") or []
        return " ".join(f"{item.get('code')}={_value(item)}" for item in items)
    if kind == "device_event":
        return str(event.get("event_name") or event.get("biz_code"))
    if kind == "notice":
        return str(event.get("event_type"))
    return f"protocol {event.get('protocol')} {event.get('biz_code') or ''}".rstrip()


def readable(kind: str, record: dict[str, Any]) -> str:
    """One line for a person: when, what, which device, what it says, where it went."""
    if kind == "missed":
        return (
            f"... {record.get('missed')} events missed here: this viewer fell behind "
            f"({record.get('total')} in all)"
        )
    delivery = record.get("delivery") or {}
    dead = " [dead-lettered]" if record.get("dead_lettered") else ""
    if kind == "undecodable":
        return f"{_when(record)} undecodable message {delivery.get('message_id')}{dead}"
    event = record.get("event") or {}
    device = str(event.get("device_id") or "-")
    name = (event.get("device") or {}).get("name")
    if name:
        device += f" ({name})"
    handlers = record.get("handlers") or {}
    ran = ", ".join(handlers.get("ran") or []) or "(no handler)"
    skipped = handlers.get("not_matched") or []
    rest = f" (not matched: {', '.join(skipped)})" if skipped else ""
    error = f" [{record['error']}]" if record.get("error") else ""
    return (
        f"{_when(record)} {event.get('kind')} {device} {_what(event)} -> {ran}{rest}{dead}{error}"
    )


def _say(stream: IO[str], line: str) -> None:
    stream.write(line + "\n")
    stream.flush()


def follow(response: Iterable[bytes], as_json: bool, url: str) -> int:
    """Print the stream until the daemon ends it (0) or it breaks off (69)."""
    for kind, data in sse_events(response):
        try:
            record = orjson.loads(data)
        except orjson.JSONDecodeError:
            continue  # not ours: an intermediary's
        if kind == "ready":
            handlers = ", ".join(record.get("handlers") or []) or "none"
            extra = "; filtered" if record.get("filtered") else ""
            _say(sys.stderr, f"watching {url} (handlers: {handlers}{extra})")
        elif kind == "end":
            _say(sys.stderr, f"the daemon ended the stream: {record.get('reason')}")
            return OK
        elif kind in ("event", "undecodable", "missed"):
            if as_json:
                _say(sys.stdout, data)
                if kind == "missed":
                    _say(sys.stderr, readable(kind, record))
            else:
                _say(sys.stdout, readable(kind, record))
    _say(sys.stderr, f"{url}: the stream broke off (the daemon went away?)")
    return UNAVAILABLE


def run(args: argparse.Namespace) -> int:
    rules = match_rules(args.match)
    settings = _settings(args)
    base = _base_url(args, settings)
    url = base + PATH
    if rules is not None:
        url += "?" + urllib.parse.urlencode({"match": orjson.dumps(rules).decode()})
    headers = {"Accept": "text/event-stream"}
    token = _token(settings)
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    as_json = args.json or (not args.text and not sys.stdout.isatty())
    request = urllib.request.Request(url, headers=headers)
    shown = base + PATH
    try:
        with urllib.request.urlopen(request, timeout=args.timeout) as response:
            return follow(response, as_json, shown)
    except urllib.error.HTTPError as error:
        reason = error.read().decode("utf-8", "replace").strip()
        code = UNAVAILABLE if error.code == 503 else FAILURE
        raise CliError(f"{shown}: {error.code} {REDACTOR(reason)}", code) from None
    except TimeoutError:
        raise CliError(
            f"{shown}: no word from the daemon in {args.timeout:g} s", UNAVAILABLE
        ) from None
    except OSError as error:  # refused, reset, unreachable
        raise CliError(f"{shown}: unreachable ({REDACTOR(str(error))})", UNAVAILABLE) from None
