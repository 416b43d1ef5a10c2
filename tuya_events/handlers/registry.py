"""Build handlers from configuration: built-ins by ``type:``, third-party ones by entry point
(group ``tuya_events.handlers``) or by ``type: package.module:Class``.

A handler class derives from ``BaseHandler`` (or subclasses the ``Handler`` protocol by name),
has an ``Options`` pydantic model (its own keys, validated with key paths) and is constructed as
``Class(name, options, context)``. Whatever ``type:`` names is checked to be such a class before
anything is called: naming a module imports it, but a function or another class is never run.
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any, TypeGuard

from pydantic import BaseModel, ValidationError

from tuya_events.config.errors import ConfigError, validation_problems
from tuya_events.config.settings import HandlerSettings
from tuya_events.handlers.base import BaseHandler, Handler, HandlerContext

ENTRY_POINT_GROUP = "tuya_events.handlers"


def _builtin_types() -> dict[str, str]:
    return {
        "action": "tuya_events.handlers.action:ActionHandler",
        "database": "tuya_events.handlers.database:DatabaseHandler",
        "log": "tuya_events.handlers.log:LogHandler",
        "mqtt": "tuya_events.handlers.mqtt:MqttHandler",
        "pulsar": "tuya_events.handlers.pulsar_forward:PulsarForwardHandler",
        "webhook": "tuya_events.handlers.webhook:WebhookHandler",
    }


# ``package.module:Class``: dotted identifiers, one colon, one class name.
_REFERENCE = re.compile(r"^[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")


class HandlerTypeError(LookupError):
    """``type:`` does not name a handler class; nothing it names was called."""


def _load(reference: str) -> Any:
    """Import the module and fetch the attribute; calls nothing else the operator named."""
    if not _REFERENCE.match(reference):
        raise HandlerTypeError(
            f"{reference!r} is not package.module:Class (a built-in type, an entry point in "
            f"group {ENTRY_POINT_GROUP!r}, or a module path, a colon and a class name)"
        )
    module_name, _, attribute = reference.partition(":")
    module = _imported(module_name, lambda: importlib.import_module(module_name))
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise HandlerTypeError(f"module {module_name} has no {attribute}") from None


def _imported(what: str, load: Callable[[], Any]) -> Any:
    """Importing runs the module's code, which may raise anything: a problem, not a crash."""
    try:
        return load()
    except HandlerTypeError:
        raise
    except Exception as exc:
        raise HandlerTypeError(f"cannot import {what}: {type(exc).__name__}: {exc}") from None


def is_handler_class(candidate: Any) -> TypeGuard[type]:
    """A class deriving from the contract in :mod:`tuya_events.handlers.base`: ``BaseHandler``,
    or the ``Handler`` protocol subclassed explicitly. Checked before anything is called, so a
    function or any other class named by ``type:`` is never run."""
    if not isinstance(candidate, type):
        return False
    if not (issubclass(candidate, BaseHandler) or Handler in candidate.__mro__):
        return False
    # The contract itself, a protocol or an abstract class cannot be instantiated.
    abstract = getattr(candidate, "_is_protocol", False) or inspect.isabstract(candidate)
    return candidate not in (BaseHandler, Handler) and not abstract


def _checked(candidate: Any, type_name: str) -> type:
    if not is_handler_class(candidate):
        if isinstance(candidate, type):
            what = f"class {candidate.__qualname__}, which is not a handler"
        else:
            what = f"a {type(candidate).__name__}, not a handler class"
        raise HandlerTypeError(
            f"{type_name!r} names {what} (a handler class derives from "
            "tuya_events.handlers.base.BaseHandler)"
        )
    options = getattr(candidate, "Options", None)
    if options is not None and not (isinstance(options, type) and issubclass(options, BaseModel)):
        raise HandlerTypeError(f"{type_name!r}: its Options must be a pydantic model class")
    return candidate


def resolve_handler_class(type_name: str) -> type:
    """The handler class ``type:`` names; :class:`HandlerTypeError` when there is none."""
    builtins = _builtin_types()
    if type_name in builtins:
        return _checked(_load(builtins[type_name]), type_name)
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        if entry.name == type_name:
            return _checked(_imported(entry.value, entry.load), type_name)
    if ":" in type_name:
        return _checked(_load(type_name), type_name)
    known = ", ".join(sorted(builtins))
    raise HandlerTypeError(
        f"unknown handler type {type_name!r} (built-in: {known}; or an entry point in group "
        f"{ENTRY_POINT_GROUP!r}, or package.module:Class)"
    )


def build_handler(entry: HandlerSettings, context: HandlerContext) -> Handler:
    """One configured handler, its options validated; a :class:`ConfigError` at its key path
    (``context.where``) for a bad type or bad options."""
    try:
        cls = resolve_handler_class(entry.type)
    except HandlerTypeError as exc:
        raise ConfigError([(context.key("type"), str(exc))]) from None
    options_model = getattr(cls, "Options", None)
    try:
        options = options_model.model_validate(entry.options) if options_model else entry.options
    except ValidationError as error:
        raise ConfigError(validation_problems(error, context.where)) from None
    handler: Handler = cls(entry.name or entry.type, options, context)
    return handler
