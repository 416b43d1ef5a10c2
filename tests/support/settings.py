"""The configuration the in-process tests start from, and its validated Settings."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests import vectors as v
from tuya_events.config.loader import settings_from_mapping
from tuya_events.config.settings import Settings
from tuya_events.handlers import HandlerContext
from tuya_events.observability.metrics import Metrics
from tuya_events.pipeline.routes import Route, build_routes

FAST_RETRY = {"initial_backoff": "10ms", "max_backoff": "50ms", "max_attempts": 3}
"""Short retry settings: outages and retries take fractions of a second."""


def settings_tree(
    tmp_path: Path, handlers: Sequence[dict[str, Any]] | None = None, **sections: Any
) -> dict[str, Any]:
    """The vectors' credentials (region eu), dead letters under ``tmp_path``, fast retries, no
    HTTP listener, no enrichment, and ``handlers`` when given; each of ``sections`` is merged
    over its section (``tuya={"openapi_url": ...}`` keeps the credentials)."""
    tree: dict[str, Any] = {
        "tuya": {"access_id": v.ACCESS_ID, "access_secret": v.ACCESS_SECRET, "region": "eu"},
        "dead_letter": {"path": str(tmp_path / "dead-letters.sqlite3")},
        "retry": dict(FAST_RETRY),
        "http": {"enabled": False},
        # Off unless a test turns it on (with a fake OpenAPI): events keep their first-release
        # shape, and no test reaches for Tuya's cloud.
        "enrichment": {"enabled": False},
    }
    if handlers is not None:
        tree["handlers"] = list(handlers)
    for name, values in sections.items():
        tree[name] = {**tree.get(name, {}), **values}
    return tree


def make_settings(
    tmp_path: Path, handlers: Sequence[dict[str, Any]] | None = None, **sections: Any
) -> Settings:
    """:func:`settings_tree`, validated as the daemon validates its configuration file."""
    return settings_from_mapping(settings_tree(tmp_path, handlers, **sections), {})


def routes_of(settings: Settings, metrics: Metrics | None = None) -> list[Route]:
    """The routes (handlers built and validated) the daemon would run for ``settings``;
    raises ConfigError naming the key paths of what is wrong."""
    return build_routes(settings, HandlerContext(settings, metrics or Metrics()))
