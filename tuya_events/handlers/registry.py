"""Build handlers from configuration: built-ins by ``type:``, third-party ones by entry point
(group ``tuya_events.handlers``) or by ``type: package.module:Class``.

A handler class has an ``Options`` pydantic model (its own keys, validated with key paths) and
is constructed as ``Class(name, options, context)``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from pydantic import ValidationError

from tuya_events.config.errors import ConfigError
from tuya_events.config.interpolate import key_path
from tuya_events.config.settings import Settings
from tuya_events.handlers.base import Handler
from tuya_events.observability.metrics import Metrics
from tuya_events.pipeline.pipeline import Route

ENTRY_POINT_GROUP = "tuya_events.handlers"


def _builtin_types() -> dict[str, str]:
    return {
        "action": "tuya_events.handlers.action:ActionHandler",
        "database": "tuya_events.handlers.database:DatabaseHandler",
        "log": "tuya_events.handlers.log:LogHandler",
        "pulsar": "tuya_events.handlers.pulsar_forward:PulsarForwardHandler",
        "webhook": "tuya_events.handlers.webhook:WebhookHandler",
    }


@dataclass
class HandlerContext:
    """What a handler may need from the daemon besides its own options."""

    settings: Settings
    metrics: Metrics


def _load(reference: str) -> Any:
    module_name, _, attribute = reference.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


def resolve_handler_class(type_name: str) -> Any:
    builtins = _builtin_types()
    if type_name in builtins:
        return _load(builtins[type_name])
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        if entry.name == type_name:
            return entry.load()
    if ":" in type_name:
        return _load(type_name)
    known = ", ".join(sorted(builtins))
    raise LookupError(
        f"unknown handler type {type_name!r} (built-in: {known}; or an entry point in group "
        f"{ENTRY_POINT_GROUP!r}, or package.module:Class)"
    )


def _problems(error: ValidationError, where: tuple[str | int, ...]) -> list[tuple[str, str]]:
    return [
        (key_path((*where, *item["loc"])), item["msg"].removeprefix("Value error, "))
        for item in error.errors(include_input=False, include_url=False)
    ]


def build_routes(settings: Settings, context: HandlerContext) -> list[Route]:
    """Handlers in configuration order; every problem reported at once as a ConfigError."""
    from tuya_events.pipeline.routing import compile_match

    problems: list[tuple[str, str]] = []
    routes: list[Route] = []
    for index, entry in enumerate(settings.handlers):
        where = ("handlers", index)
        try:
            cls = resolve_handler_class(entry.type)
        except (LookupError, ImportError, AttributeError) as exc:
            problems.append((key_path((*where, "type")), str(exc)))
            continue
        options_model = getattr(cls, "Options", None)
        try:
            options = (
                options_model.model_validate(entry.options) if options_model else entry.options
            )
        except ValidationError as error:
            problems.extend(_problems(error, where))
            continue
        try:
            matches = compile_match(entry.match)
        except ValidationError as error:
            problems.extend(_problems(error, (*where, "match")))
            continue
        handler: Handler = cls(entry.name or entry.type, options, context)
        routes.append(Route(handler, matches))
    if problems:
        raise ConfigError(problems)
    return routes
