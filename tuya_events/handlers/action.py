"""``type: action``: call Tuya's OpenAPI when an event matches, e.g. door opens -> light on.

Options::

    rules:
      - name: hall-light                    # default: rule1, rule2, ...
        when:                               # the routing match language (any of a list)
          status_code: doorcontact_state
          value: {doorcontact_state: true}
        then:                               # one or more calls, in order
          - command:                        # POST .../devices/{device_id}/commands
              device_id: bf0123456789light  # default: "{event.device_id}"
              code: switch_1                # or commands: [{code: ..., value: ...}, ...]
              value: true
              family: iot-03                # iot-03 or devices (default: command_family)
          - call:                           # any OpenAPI call
              method: POST
              path: /v1.0/iot-03/messages/app-notifications/actions/push
              query: {}
              body: {...}                   # values may hold placeholders
        cooldown: 30s                       # after a firing, further matches are skipped
        debounce: 0s                        # fire only after this long without a match
        per: device                         # cooldown/debounce per device, or per rule
        dry_run: false                      # overrides the handler's dry_run
    dry_run: false                          # log the calls instead of making them
    command_family: iot-03
    remember: 10000                         # (rule, event) pairs kept for exactly-once
    openapi: {...}                          # client options; better the top-level openapi:

Placeholders are described in :mod:`tuya_events.handlers.templating`.

Exactly once: the pipeline does not call a handler again for a message it already succeeded on
(its dedupe cache). On top of that, this handler remembers which rules fired for which event id
(Tuya's dataId, else the message id) and which calls of a rule already succeeded: a redelivery
the cache missed does not fire again, and a retry after a partial failure sends only the calls
that failed. Both memories live in the process: after a restart, an unacknowledged event fires
again (at least once). Device commands set values, so that repeats the state, not a toggle.

Cooldown and debounce are keyed per device (or per rule) and look at *new* events only: a
redelivered or retried event neither counts as a new match nor is suppressed by its own first
attempt. Cooldown counts from a firing's first attempt. Debounce is leading-edge: a match fires
when the previous match was at least ``debounce`` ago, and every match restarts that quiet
period. A trailing debounce (wait, then act on the last event) cannot work here: a message is
acknowledged only after its handlers finish, and one device's events are handled in order, so
the handler cannot wait for the next event of the same device.

Failures follow the pipeline's policy: configuration problems (1004 sign invalid, 1013 clock,
1106 permission deny, 2884xxxx not subscribed) are dead-lettered at once with a hint of what to
check; 1110/1111 are retried; network errors and HTTP 5xx are retried as outages
(``retry.infrastructure_max_time``). Expired or invalid tokens are renewed inside the client.

Every action handler of one daemon that calls the same cloud project shares one OpenAPI client:
one token (a second token request would invalidate the first) and one rate limit per project.
Its options come from the top-level ``openapi:`` section; a handler's own ``openapi:`` (from
before that section existed) must agree with it and with the other handlers' blocks.
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tuya_events.config.errors import ConfigError, validation_problems
from tuya_events.config.settings import Settings
from tuya_events.config.types import Duration
from tuya_events.delivery import Delivery
from tuya_events.handlers.base import BaseHandler, HandlerContext, HandlerError
from tuya_events.handlers.shared_client import TOP_LEVEL, SharedClient, project_client
from tuya_events.handlers.templating import (
    Renderer,
    Scope,
    TemplateError,
    compile_path,
    compile_template,
    render_text,
)
from tuya_events.matching import MatchRule, Predicate, compile_match
from tuya_events.observability.logging import get_logger
from tuya_events.openapi.client import (
    COMMAND_PATHS,
    OpenApiClient,
    OpenApiOptions,
)
from tuya_events.openapi.errors import OpenApiError
from tuya_events.tuya.events import Event

log = get_logger("tuya_events.handlers.action")

Family = Literal["iot-03", "devices"]


def _check_template(value: Any) -> Any:
    compile_template(value)  # ValueError names the bad placeholder
    return value


# What a path segment may hold: RFC 3986 characters that no client, proxy or server decodes or
# normalises into something else. Not ``%`` (``%2e%2e`` is ``..`` once decoded), ``\`` (a
# separator to some servers), ``;`` (path parameters: ``..;`` passes some proxies as ``..``).
_SEGMENT = re.compile(r"[A-Za-z0-9._~!$&'()*+,=:@-]+")
_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{[^{}]*\}")


def path_problem(path: str) -> str | None:
    """Why ``path`` could reach another route than the one it reads as; None when it cannot.

    An HTTP client normalises ``.`` and ``..`` segments away (yarl does), so a device id ``..``
    would send, signed, a command to a different API; every segment must be plain text.
    """
    if not path.startswith("/"):
        return "does not start with /"
    for segment in path[1:].split("/"):
        if not segment:
            return "has an empty segment"
        if not segment.strip("."):
            return f"has a dot segment {segment!r}"
        if not _SEGMENT.fullmatch(segment):
            return f"has a segment {segment!r} with characters a server may decode or normalise"
    return None


def _static_path(template: str) -> None:
    """Config time: the template's own text must be safe (placeholders are checked when they
    are rendered, with the event's values)."""
    problem = path_problem(_PLACEHOLDER.sub(_stand_in, template))
    if problem:
        raise ValueError(f"{problem}: segments must be plain (no . or .., //, %, \\ or ;)")


def _stand_in(match: re.Match[str]) -> str:
    token = match.group(0)
    return {"{{": "{", "}}": "}"}.get(token, "x")


def _safe_path(path: str) -> str:
    problem = path_problem(path)
    if problem:
        raise TemplateError(f"the path {path!r} {problem}: refused, it could reach another path")
    return path


class CommandStep(BaseModel):
    """Device commands: ``commands: [...]``, or one ``code`` and ``value``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    device_id: str = "{event.device_id}"
    commands: list[dict[str, Any]] | None = None
    code: str | None = None
    value: Any = None
    family: Family | None = None
    path: str | None = None  # overrides family: e.g. /v1.0/devices/{device_id}/commands

    @model_validator(mode="after")
    def _one_form(self) -> CommandStep:
        if (self.commands is None) == (self.code is None):
            raise ValueError("give either commands: [...] or code: and value:")
        if self.code is not None and "value" not in self.model_fields_set:
            raise ValueError("code: needs a value:")
        if self.commands is not None:
            if not self.commands:
                raise ValueError("commands: must not be empty")
            for command in self.commands:
                if set(command) != {"code", "value"}:
                    raise ValueError("each command is {code: ..., value: ...}")
        return self

    @field_validator("device_id")
    @classmethod
    def _device(cls, value: str) -> str:
        if not value or any(c in value for c in "/?#"):
            raise ValueError("must be a device id or a placeholder such as {event.device_id}")
        compile_path(value)
        _static_path("/" + value)
        return value

    @field_validator("path")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        if value is not None:
            if not value.startswith("/") or "{device_id}" not in value or "?" in value:
                raise ValueError("must be a path starting with / that contains {device_id}")
            compile_path(value.replace("{device_id}", "x"))
            _static_path(value.replace("{device_id}", "x"))
        return value

    @field_validator("commands", "value")
    @classmethod
    def _values(cls, value: Any) -> Any:
        return _check_template(value)

    def path_template(self, family: Family) -> str:
        template = self.path or COMMAND_PATHS[self.family or family]
        return template.replace("{device_id}", self.device_id)

    def command_list(self) -> list[dict[str, Any]]:
        if self.commands is not None:
            return self.commands
        return [{"code": self.code, "value": self.value}]


class CallStep(BaseModel):
    """Any OpenAPI call; ``path``, query values and ``body`` may hold placeholders."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: Literal["GET", "POST", "PUT", "DELETE", "PATCH"]
    path: str
    query: dict[str, Any] = Field(default_factory=dict)
    body: Any = None

    @field_validator("method", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must start with / (the host comes from tuya.region/openapi_url)")
        if "?" in value:
            raise ValueError("put query parameters under query:")
        compile_path(value)
        _static_path(value)
        return value

    @field_validator("query", "body")
    @classmethod
    def _values(cls, value: Any) -> Any:
        return _check_template(value)


class Step(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    command: CommandStep | None = None
    call: CallStep | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Step:
        if (self.command is None) == (self.call is None):
            raise ValueError("each step is either command: or call:")
        return self


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = Field(default=None, min_length=1)
    when: list[MatchRule] = Field(min_length=1)
    then: list[Step] = Field(min_length=1)
    cooldown: Duration = 0.0
    debounce: Duration = 0.0
    per: Literal["device", "rule"] = "device"
    dry_run: bool | None = None

    @field_validator("when", "then", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, dict) else value


class ActionOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rules: list[Rule] = Field(min_length=1)
    dry_run: bool = False
    command_family: Family = "iot-03"
    remember: int = Field(default=10_000, ge=1)
    # None: the top-level openapi: section (the recommended place).
    openapi: OpenApiOptions | None = None

    @model_validator(mode="after")
    def _unique_names(self) -> ActionOptions:
        names = [rule.name or f"rule{index + 1}" for index, rule in enumerate(self.rules)]
        duplicated = sorted({name for name in names if names.count(name) > 1})
        if duplicated:
            raise ValueError(f"rule names must be unique: {', '.join(duplicated)}")
        return self


# -- compiled rules ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Call:
    """One step, compiled: renderers for the method's path, query and body."""

    method: str
    path: Renderer
    query: tuple[tuple[str, Renderer], ...]
    body: Renderer | None

    def render(self, scope: Scope) -> tuple[str, list[tuple[str, str]], Any]:
        path = _safe_path(render_text(self.path, scope))
        query = [(key, render_text(value, scope)) for key, value in self.query]
        body = self.body(scope) if self.body is not None else None
        return path, query, body


def _compile_step(step: Step, family: Family) -> _Call:
    if step.command is not None:
        command = step.command
        commands = compile_template(command.command_list())
        return _Call(
            "POST",
            compile_path(command.path_template(family)),
            (),
            lambda scope: {"commands": commands(scope)},
        )
    call = step.call
    assert call is not None
    return _Call(
        call.method,
        compile_path(call.path),
        tuple((key, compile_template(value)) for key, value in call.query.items()),
        compile_template(call.body) if call.body is not None else None,
    )


@dataclass(slots=True)
class _Timing:
    """Per rule and key (a device, or the rule): when a new match was last seen, and when the
    rule last started firing."""

    seen_at: float = float("-inf")
    fired_at: float = float("-inf")


@dataclass(slots=True)
class _Progress:
    """One rule for one event: the calls that succeeded, and whether all did."""

    done: set[int] = field(default_factory=set)
    fired: bool = False


@dataclass(slots=True)
class _CompiledRule:
    index: int
    name: str
    matches: Predicate
    calls: list[_Call]
    cooldown: float
    debounce: float
    per_device: bool
    dry_run: bool
    timing: dict[str, _Timing] = field(default_factory=dict)


# -- one client per cloud project and daemon --------------------------------------------------


def _share(context: HandlerContext, name: str, options: ActionOptions) -> SharedClient:
    """The project's client entry, one per cloud project among the handlers built with this
    context; a handler's own ``openapi:`` must agree with what is set."""
    entry = project_client(context)
    given = options.openapi
    if given is None:
        return entry
    if entry.source is None:
        entry.options, entry.source = given, f"handler {name!r}'s openapi:"
    elif given != entry.options:
        raise ConfigError([(context.key("openapi"), _disagreement(entry.source))])
    return entry


def _disagreement(source: str) -> str:
    if source == TOP_LEVEL:
        fix = "leave openapi: out of this handler and set the options in the top-level one"
    else:
        fix = "set them once in the top-level openapi: section instead of in the handlers"
    return (
        f"differs from {source}: action handlers that call the same cloud project share one "
        f"OpenAPI client (one token, one rate limit); {fix}"
    )


def configured_openapi(settings: Settings) -> OpenApiOptions:
    """The client options the daemon's action handlers use, for ``tuya-events api``: the
    top-level ``openapi:``; in a file without one, the first action handler's own block."""
    if settings.openapi_given:
        return settings.openapi
    for index, entry in enumerate(settings.handlers):
        block = entry.options.get("openapi") if entry.type == "action" else None
        if block is None:
            continue
        try:
            return OpenApiOptions.model_validate(block)
        except ValidationError as error:
            raise ConfigError(validation_problems(error, ("handlers", index, "openapi"))) from None
    return settings.openapi


# -- the handler ------------------------------------------------------------------------------


class ActionHandler(BaseHandler):
    """Rules: when an event matches, make OpenAPI calls built from it; see the module docs."""

    Options = ActionOptions
    # Waiting for the rate limiter is backpressure, not a failure; the client has its own
    # per-request timeout.
    timeout: float | None = None

    def __init__(self, name: str, options: ActionOptions, context: HandlerContext) -> None:
        super().__init__(name)
        self.options = options
        self._context = context
        self.rules = [
            _CompiledRule(
                index,
                rule.name or f"rule{index + 1}",
                compile_match([r.model_dump(by_alias=True, exclude_unset=True) for r in rule.when]),
                [_compile_step(step, options.command_family) for step in rule.then],
                rule.cooldown,
                rule.debounce,
                rule.per == "device",
                options.dry_run if rule.dry_run is None else rule.dry_run,
            )
            for index, rule in enumerate(options.rules)
        ]
        self._progress: OrderedDict[tuple[int, str], _Progress] = OrderedDict()
        self._needs_client = not all(rule.dry_run for rule in self.rules)
        self._shared = _share(context, name, options) if self._needs_client else None
        self._started = False
        self.clock = time.monotonic

    @property
    def client(self) -> OpenApiClient | None:
        return self._shared.client if self._shared is not None else None

    async def start(self) -> None:
        shared = self._shared
        if shared is None or self._started:
            return
        self._started = True
        client = await shared.acquire(self._context.settings, self._context.metrics)
        log.info(
            "action handler ready",
            handler=self.name,
            rules=[rule.name for rule in self.rules],
            openapi=client.base_url,
            dry_run=[rule.name for rule in self.rules if rule.dry_run] or None,
        )

    async def stop(self) -> None:
        shared = self._shared
        if shared is None or not self._started:
            return
        self._started = False
        await shared.release()

    # -- per event --------------------------------------------------------------------------

    async def handle(self, event: Event, delivery: Delivery) -> None:
        event_id = event.data_id or delivery.message_id
        failures: list[HandlerError] = []
        for rule in self.rules:
            if not rule.matches(event):
                continue
            progress = self._progress.get((rule.index, event_id))
            if progress is None:
                if not self._admit(rule, event, event_id):
                    continue
                progress = self._remember((rule.index, event_id))
            elif progress.fired:
                log.debug("action already fired for this event", rule=rule.name, id=event_id)
                continue
            try:
                await self._fire(rule, progress, Scope(event, delivery, rule.name))
            except HandlerError as error:
                failures.append(error)
        if failures:
            raise _combined(failures)

    def _admit(self, rule: _CompiledRule, event: Event, event_id: str) -> bool:
        """A new match: apply debounce and cooldown; a firing starts the cooldown."""
        if not rule.cooldown and not rule.debounce:
            return True
        now = self.clock()
        key = (event.device_id or "") if rule.per_device else ""
        timing = rule.timing.get(key)
        if timing is None:
            timing = rule.timing[key] = _Timing()
        previous_match, timing.seen_at = timing.seen_at, now
        if rule.debounce and now - previous_match < rule.debounce:
            log.debug("action debounced", rule=rule.name, device_id=event.device_id, id=event_id)
            return False
        if rule.cooldown and now - timing.fired_at < rule.cooldown:
            log.debug("action in cooldown", rule=rule.name, device_id=event.device_id, id=event_id)
            return False
        timing.fired_at = now
        return True

    def _remember(self, key: tuple[int, str]) -> _Progress:
        progress = self._progress[key] = _Progress()
        while len(self._progress) > self.options.remember:
            self._progress.popitem(last=False)
        return progress

    async def _fire(self, rule: _CompiledRule, progress: _Progress, scope: Scope) -> None:
        for index, call in enumerate(rule.calls):
            if index in progress.done:
                continue
            try:
                path, query, body = call.render(scope)
            except TemplateError as error:
                raise HandlerError(
                    "template", f"rule {rule.name}: {error}", retryable=False
                ) from None
            if rule.dry_run:
                log.info(
                    "action (dry run): would call",
                    handler=self.name,
                    rule=rule.name,
                    method=call.method,
                    path=path,
                    query=dict(query) or None,
                    body=body,
                )
            else:
                await self._send(rule, call.method, path, query, body)
            progress.done.add(index)
        progress.fired = True
        log.info(
            "action fired",
            handler=self.name,
            rule=rule.name,
            device_id=scope.event.device_id,
            calls=len(rule.calls),
            dry_run=rule.dry_run or None,
        )

    async def _send(
        self, rule: _CompiledRule, method: str, path: str, query: list[tuple[str, str]], body: Any
    ) -> None:
        client = self.client
        if client is None or not self._started:
            raise HandlerError("not_started", "the action handler is not started")
        try:
            await client.request(method, path, query=query, body=body)
        except OpenApiError as error:
            raise _handler_error(rule.name, method, error) from None


def _handler_error(rule: str, method: str, error: OpenApiError) -> HandlerError:
    message = f"rule {rule}: {method} {error}"
    reason = f"openapi_{error.reason}"
    if error.infrastructure:
        return HandlerError(reason, message, infrastructure=True)
    if error.retryable or error.token_problem:
        return HandlerError(reason, message, retryable=True)
    return HandlerError(reason, message, retryable=False)


def _combined(failures: list[HandlerError]) -> HandlerError:
    """Several rules failed: retry when any of them may still work (the others' finished calls
    are not repeated); dead-letter only when none can."""
    if len(failures) == 1:
        return failures[0]
    retryable = [f for f in failures if f.retryable]
    first = (retryable or failures)[0]
    return HandlerError(
        first.reason,
        "; ".join(f.message for f in failures),
        retryable=bool(retryable),
        infrastructure=any(f.infrastructure for f in retryable),
    )
