"""Imports point one way: the layers of the package, checked on the source, lazy imports included.

From the bottom: the Tuya codec, then what a message is (``delivery``) and the match language,
then the transports and the handlers (side by side: neither imports the other), then the
pipeline, then the assembly, the daemon and the commands on top. The device catalogue sits beside
the handlers (it asks the OpenAPI; the pipeline only gets a hook from it), and resync above it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.support.paths import ROOT

PACKAGE = ROOT / "tuya_events"

# A module of the first group must import nothing of the second.
FORBIDDEN = [
    ("tuya", ("pipeline", "handlers", "transport", "daemon", "assembly", "cli", "deadletter")),
    ("delivery", ("pipeline", "handlers", "transport", "daemon", "assembly", "cli", "tuya")),
    ("matching", ("pipeline", "handlers", "transport", "daemon", "assembly", "cli")),
    ("transport", ("pipeline", "handlers", "daemon", "assembly", "cli", "deadletter", "catalogue")),
    ("handlers", ("pipeline", "transport", "daemon", "assembly", "cli", "deadletter", "resync")),
    ("catalogue", ("pipeline", "handlers", "transport", "daemon", "assembly", "cli", "resync")),
    ("resync", ("pipeline", "handlers", "transport", "daemon", "assembly", "cli", "deadletter")),
    ("deadletter.store", ("pipeline", "handlers", "transport", "daemon", "assembly", "cli")),
    ("pipeline", ("transport", "daemon", "assembly", "cli", "catalogue", "resync")),
    ("observability", ("pipeline", "handlers", "transport", "daemon", "assembly", "cli")),
    ("config", ("pipeline", "handlers", "transport", "daemon", "assembly", "cli")),
    ("openapi", ("pipeline", "handlers", "transport", "daemon", "assembly", "cli")),
    ("assembly", ("cli", "daemon")),
    ("daemon", ("cli",)),
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(part for part in parts if part != "__init__")


def imported(path: Path) -> set[str]:
    """Every tuya_events module a file imports, at any depth of its code."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {name.removeprefix("tuya_events.") for name in names if name.startswith("tuya_events.")}


def within(module: str, layer: str) -> bool:
    return module == layer or module.startswith(layer + ".")


MODULES = {module_name(path): imported(path) for path in sorted(PACKAGE.rglob("*.py"))}


@pytest.mark.parametrize(("layer", "below"), FORBIDDEN, ids=[layer for layer, _ in FORBIDDEN])
def test_no_module_imports_a_layer_above_its_own(layer: str, below: tuple[str, ...]) -> None:
    wrong = sorted(
        f"{module} imports {target}"
        for module, targets in MODULES.items()
        if within(module, layer)
        for target in targets
        if any(within(target, upper) for upper in below)
    )
    assert wrong == []


def test_the_rules_see_the_modules_they_are_about() -> None:
    """A rule about a layer that no longer exists would pass for nothing."""
    for layer, _ in FORBIDDEN:
        assert any(within(module, layer) for module in MODULES), layer
    assert "pipeline.pipeline" in MODULES["daemon"] or "pipeline.routes" in MODULES["daemon"]


def test_a_plugin_needs_one_import_for_the_handler_contract() -> None:
    from tuya_events import handlers
    from tuya_events.handlers import base

    for name in ("Handler", "BaseHandler", "HandlerError", "HandlerContext"):
        assert getattr(handlers, name) is getattr(base, name)
