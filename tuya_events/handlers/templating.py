"""Values from an event, put into a JSON structure: the small template language of actions.

Strings may hold placeholders in braces; nothing is evaluated, a placeholder only names a value:

- ``{event.device_id}``, ``{event.product_key}``, ``{event.biz_code}``, ``{event.data_id}``,
  ``{event.id}`` (dataId, else the message id), ``{event.kind}``, ``{event.protocol}``,
  ``{event.timestamp_ms}``
- ``{status.<code>}``: the value of data point ``<code>`` in a status report
- ``{dp.code}``, ``{dp.value}``, ``{dp.id}``: the report's first data point
- ``{biz_data.<key>}``: a field of a device event's bizData (dots reach deeper)
- ``{document.<key>}``: any field of the decrypted document (dots reach deeper; digits index
  lists)
- ``{rule.name}``

A string that is exactly one placeholder becomes the value itself, with its type (``true`` stays
a boolean, ``25`` a number). Inside a longer string a value is written as text: strings as they
are, anything else as JSON. ``{{`` and ``}}`` are literal braces. A mapping whose only key is
``$json`` becomes the JSON text of its (rendered) value: the safe way to build the JSON-in-a-
string some APIs want, whatever quotes the values hold.

A placeholder whose value the event does not have is an error (:class:`TemplateError`), not an
empty string: a command with a hole in it should not leave.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from tuya_events.delivery import Delivery
from tuya_events.tuya.events import DeviceEvent, Event, StatusReport

JSON_KEY = "$json"
EVENT_FIELDS = (
    "device_id",
    "product_key",
    "biz_code",
    "data_id",
    "id",
    "kind",
    "protocol",
    "timestamp_ms",
)
DP_FIELDS = ("code", "value", "id")
NAMESPACES = ("event", "status", "dp", "biz_data", "document", "rule")

_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
_NAME = re.compile(r"^[A-Za-z0-9_$-]+$")


class TemplateError(Exception):
    """A placeholder the event has no value for."""


class _Missing:
    pass


MISSING: Any = _Missing()


@dataclass(frozen=True, slots=True)
class Scope:
    """What placeholders read: the event, its delivery and the rule's name."""

    event: Event
    delivery: Delivery | None = None
    rule: str = ""


@dataclass(frozen=True, slots=True)
class Placeholder:
    text: str
    namespace: str
    keys: tuple[str, ...]

    def lookup(self, scope: Scope) -> Any:
        event = scope.event
        ns, keys = self.namespace, self.keys
        if ns == "event":
            if keys[0] == "id":
                return event.data_id or (scope.delivery.message_id if scope.delivery else None)
            return getattr(event, keys[0])
        if ns == "status":
            if isinstance(event, StatusReport):
                for item in event.statuses:
                    if item.code == keys[0]:
                        return item.value
            return MISSING
        if ns == "dp":
            if not isinstance(event, StatusReport) or not event.statuses:
                return MISSING
            item = event.statuses[0]
            return {"code": item.code, "value": item.value, "id": item.dp_id}[keys[0]]
        if ns == "biz_data":
            return _dig(event.biz_data if isinstance(event, DeviceEvent) else {}, keys)
        if ns == "document":
            return _dig(event.document, keys)
        return scope.rule

    def value(self, scope: Scope) -> Any:
        value = self.lookup(scope)
        if value is MISSING or value is None:
            raise TemplateError(f"{{{self.text}}} has no value in this event")
        return value


def _dig(value: Any, keys: tuple[str, ...]) -> Any:
    for key in keys:
        if isinstance(value, dict) and key in value:
            value = value[key]
        elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        else:
            return MISSING
    return value


def parse_placeholder(text: str) -> Placeholder:
    """``event.device_id`` -> Placeholder; ValueError naming what is allowed."""
    namespace, _, rest = text.strip().partition(".")
    keys = tuple(rest.split(".")) if rest else ()
    if namespace not in NAMESPACES:
        raise ValueError(
            f"unknown placeholder {{{text}}}: it must start with one of "
            + ", ".join(f"{ns}." for ns in NAMESPACES)
        )
    if not keys or not all(_NAME.match(key) for key in keys):
        raise ValueError(f"placeholder {{{text}}} needs a name after {namespace}.")
    allowed = {"event": EVENT_FIELDS, "dp": DP_FIELDS, "rule": ("name",)}.get(namespace)
    if allowed is not None and (len(keys) != 1 or keys[0] not in allowed):
        raise ValueError(
            f"unknown placeholder {{{text}}}: {namespace}. has "
            + ", ".join(f"{namespace}.{name}" for name in allowed)
        )
    if namespace == "status" and len(keys) != 1:
        raise ValueError(f"placeholder {{{text}}}: status.<code> takes one data-point code")
    return Placeholder(text.strip(), namespace, keys)


Renderer = Callable[[Scope], Any]


def _text(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def _segment(placeholder: Placeholder, scope: Scope) -> str:
    """A value going into a URL path: one non-empty segment, so it cannot change the route."""
    text = _text(placeholder.value(scope))
    if not text or any(c in text for c in "/?#%\\") or any(c.isspace() for c in text):
        raise TemplateError(f"{{{placeholder.text}}} = {text!r} cannot go in a URL path")
    return text


def _compile_string(text: str, path: bool = False) -> Renderer:
    parts: list[str | Placeholder] = []
    position = 0
    for match in _TOKEN.finditer(text):
        parts.append(text[position : match.start()])
        token = match.group(0)
        if token == "{{":
            parts.append("{")
        elif token == "}}":
            parts.append("}")
        elif match.group(1) is not None:
            parts.append(parse_placeholder(match.group(1)))
        else:
            raise ValueError(f"unmatched {token!r} in {text!r} (write {token * 2} for a brace)")
        position = match.end()
    parts.append(text[position:])
    parts = [part for part in parts if part != ""]
    if not parts:
        return lambda scope: ""
    if len(parts) == 1:
        only = parts[0]
        if isinstance(only, Placeholder) and not path:
            return only.value  # the whole string: the value with its own type
        return lambda scope: only
    texts = [part for part in parts if isinstance(part, str)]
    if len(texts) == len(parts):  # no placeholder: one constant string
        joined = "".join(texts)
        return lambda scope: joined

    substitute = _segment if path else lambda part, scope: _text(part.value(scope))

    def render(scope: Scope) -> str:
        return "".join(part if isinstance(part, str) else substitute(part, scope) for part in parts)

    return render


def compile_path(text: str) -> Renderer:
    """A URL path template: each placeholder must render to one plain path segment."""
    return _compile_string(text, path=True)


def compile_template(value: Any) -> Renderer:
    """Compile a JSON-like structure once; ValueError when a placeholder is unknown."""
    if isinstance(value, str):
        return _compile_string(value)
    if isinstance(value, dict):
        if JSON_KEY in value:
            if len(value) != 1:
                raise ValueError(f"a mapping with {JSON_KEY} must have no other key")
            inner = compile_template(value[JSON_KEY])
            return lambda scope: orjson.dumps(inner(scope)).decode()
        items = [(key, compile_template(item)) for key, item in value.items()]
        return lambda scope: {key: render(scope) for key, render in items}
    if isinstance(value, list):
        renderers = [compile_template(item) for item in value]
        return lambda scope: [render(scope) for render in renderers]
    return lambda scope: value


def render_text(renderer: Renderer, scope: Scope) -> str:
    """For places that need text (a path, a query value): non-strings as JSON."""
    return _text(renderer(scope))
