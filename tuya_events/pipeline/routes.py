"""Routes: each configured handler with the match rules that decide which events it sees."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pydantic import ValidationError

from tuya_events.config.errors import ConfigError, Problems, validation_problems
from tuya_events.config.settings import Settings
from tuya_events.handlers.base import Handler, HandlerContext
from tuya_events.handlers.registry import build_handler
from tuya_events.matching import always, compile_match
from tuya_events.tuya.events import Event


@dataclass(slots=True)
class Route:
    """A handler and the rule that decides which events it sees."""

    handler: Handler
    matches: Callable[[Event], bool] = always

    @property
    def name(self) -> str:
        return self.handler.name


def build_routes(settings: Settings, context: HandlerContext) -> list[Route]:
    """Handlers in configuration order, each with its match rules; every problem of every
    handler reported at once, as one :class:`ConfigError`."""
    problems: Problems = []
    routes: list[Route] = []
    for index, entry in enumerate(settings.handlers):
        own = context.for_handler(index)
        try:
            matches = compile_match(entry.match)
        except ValidationError as error:
            problems.extend(validation_problems(error, (*own.where, "match")))
            matches = None
        try:
            handler = build_handler(entry, own)
        except ConfigError as error:
            problems.extend(error.problems)
            continue
        if matches is not None:
            routes.append(Route(handler, matches))
    if problems:
        raise ConfigError(problems)
    return routes
