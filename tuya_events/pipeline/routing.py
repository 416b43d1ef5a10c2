"""Match rules: which events a handler sees. No rule means every event."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tuya_events.tuya.events import Event


def _always(event: Event) -> bool:
    return True


def compile_match(rules: dict[str, Any] | list[dict[str, Any]] | None) -> Callable[[Event], bool]:
    """Turn the ``match:`` section into a predicate; raises ValueError on a bad rule."""
    if not rules:
        return _always
    raise ValueError("match rules are not supported yet (they arrive with the routing work)")
