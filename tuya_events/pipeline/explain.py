"""Which handlers an event would go to and, for each of the others, which rule failed.

For ``tuya-events test-routes``, which works from the configuration alone: each handler's
``match`` rules are compiled as :func:`~tuya_events.pipeline.routes.build_routes` compiles them,
but no handler is built or started (a test run in CI must not reach a database or a webhook).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from tuya_events.config.errors import ConfigError, Problems, validation_problems
from tuya_events.config.settings import Settings
from tuya_events.matching import Predicate, compile_match, explain
from tuya_events.tuya.events import Event

Rules = dict[str, Any] | list[dict[str, Any]] | None


@dataclass(frozen=True, slots=True)
class RouteRules:
    """One configured handler's name and its ``match`` section, compiled."""

    name: str
    rules: Rules
    matches: Predicate


@dataclass(frozen=True, slots=True)
class Outcome:
    """Whether a handler gets the event; when not, why (one line per rule that failed)."""

    handler: str
    matched: bool
    reasons: tuple[str, ...] = ()


def route_rules(settings: Settings) -> list[RouteRules]:
    """Every handler's rules in configuration order; all problems at once, as the daemon
    reports them (``handlers[2].match...``)."""
    problems: Problems = []
    compiled: list[RouteRules] = []
    for index, (name, entry) in enumerate(
        zip(settings.handler_names(), settings.handlers, strict=True)
    ):
        try:
            compiled.append(RouteRules(name, entry.match, compile_match(entry.match)))
        except ValidationError as error:
            problems.extend(validation_problems(error, ("handlers", index, "match")))
    if problems:
        raise ConfigError(problems)
    return compiled


def outcomes(routes: list[RouteRules], event: Event) -> list[Outcome]:
    """Each route's verdict on ``event``, in configuration order."""
    verdicts = []
    for route in routes:
        if route.matches(event):
            verdicts.append(Outcome(route.name, True))
        else:
            reasons = explain(route.rules, event) or ["(the rules do not match; no reason found)"]
            verdicts.append(Outcome(route.name, False, tuple(reasons)))
    return verdicts
