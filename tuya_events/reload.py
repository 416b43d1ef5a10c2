"""SIGHUP: the configuration read again and applied between messages, or refused with why.

What can change in place: handlers and their ``match`` rules, the logging level, the OpenAPI rate
limits, enrichment's ``max_wait`` and the catalogue's refresh settings, the retry policy, the
resync settings. A handler whose type and options are unchanged is kept (its connections too),
even when its rules change; a changed one is built anew and started before the switch. Messages
already on their way finish on the handlers they started with (the pipeline keeps each
message's plan); a handler no longer configured is stopped once those messages are done.

What cannot change without a restart -- the credentials, the broker and its subscription, TLS,
the consumer, the dead-letter store, the HTTP listener and the live tail, the state directory
and the catalogue's file, the shared ledger, enrichment on or off -- is refused, naming the
keys, and the running configuration stays, as it does for a file that does not validate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tuya_events.config.settings import HandlerSettings, Settings
from tuya_events.handlers.base import Handler

# Top-level sections that only a restart can change.
FIXED_SECTIONS = ("tuya", "tls", "consumer", "dead_letter", "http", "state", "ledger", "tail")
# Keys within sections that may otherwise change.
FIXED_KEYS = (("catalogue", "path"), ("enrichment", "enabled"), ("logging", "format"))


@dataclass
class Reload:
    """What a reload did (or why it did not)."""

    outcome: str  # applied, invalid, refused, failed
    problems: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)


def restart_needed(old: Settings, new: Settings) -> list[str]:
    """The keys whose change needs a restart, dotted (``tuya.pulsar_url``)."""
    changed: list[str] = []
    for section in FIXED_SECTIONS:
        before, after = getattr(old, section), getattr(new, section)
        if before == after:
            continue
        keys = type(before).model_fields
        differing = [key for key in keys if getattr(before, key) != getattr(after, key)]
        changed.extend(f"{section}.{key}" for key in differing or ["*"])
    for section, key in FIXED_KEYS:
        if getattr(getattr(old, section), key) != getattr(getattr(new, section), key):
            changed.append(f"{section}.{key}")
    return changed


def same_handler(old: HandlerSettings, new: HandlerSettings) -> bool:
    """The same handler if only its ``match`` rules differ: it is kept, connections and all."""
    return old.type == new.type and old.options == new.options


def handler_entries(settings: Settings) -> dict[str, HandlerSettings]:
    return dict(zip(settings.handler_names(), settings.handlers, strict=True))


def diff_handlers(
    old: Settings, new: Settings
) -> tuple[list[str], list[str], list[str], list[str]]:
    """(added, removed, changed, kept) handler names, by name."""
    before, after = handler_entries(old), handler_entries(new)
    added = [name for name in after if name not in before]
    removed = [name for name in before if name not in after]
    changed = [n for n in after if n in before and not same_handler(before[n], after[n])]
    kept = [n for n in after if n in before and same_handler(before[n], after[n])]
    return added, removed, changed, kept


def unwrapped(handler: Handler) -> Any:
    """The handler a ledger guard wraps (the guard itself is rebuilt around kept handlers)."""
    return getattr(handler, "inner", handler)


def names(handlers: Sequence[Handler]) -> list[str]:
    return [handler.name for handler in handlers]
