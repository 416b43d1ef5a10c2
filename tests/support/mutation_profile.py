"""Fewer, reproducible Hypothesis examples while ``make mutation`` runs (docs/testing.md).

Every surviving mutant runs every property test that reaches it, with hundreds of examples each,
which made a module take most of an hour. Under mutation (``TUYA_EVENTS_MUTATION`` set, which only
``make mutation`` does) each property test runs at most ``MUTATION_EXAMPLES`` examples, chosen
deterministically, so one run's verdict on a mutant is the next run's. Loaded by mutmut only
(``-p tests.support.mutation_profile`` in ``[tool.mutmut]``); ``make test`` never sees it.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

ENV = "TUYA_EVENTS_MUTATION"
MUTATION_EXAMPLES = 40

settings.register_profile(
    "mutation", max_examples=MUTATION_EXAMPLES, derandomize=True, deadline=None, database=None
)


def active() -> bool:
    return bool(os.environ.get(ENV))


if active():
    settings.load_profile("mutation")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Cap the tests' own ``@settings(max_examples=...)``, which a profile does not override."""
    if not active():
        return
    for item in items:
        test = getattr(item, "obj", None)
        own = getattr(test, "_hypothesis_internal_use_settings", None)
        if test is None or own is None:
            continue
        test._hypothesis_internal_use_settings = settings(
            own,
            max_examples=min(own.max_examples, MUTATION_EXAMPLES),
            derandomize=True,
            deadline=None,
            database=None,
        )
