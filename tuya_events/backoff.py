"""The one backoff formula, for every retry loop of ours (handlers, OpenAPI calls)."""

from __future__ import annotations

from collections.abc import Callable


def equal_jitter(attempt: int, initial: float, maximum: float, rng: Callable[[], float]) -> float:
    """Seconds before the retry after failed attempt ``attempt`` (1, 2, ...): the exponential
    step ``initial * 2**(attempt-1)`` capped at ``maximum``, half of it fixed and half random.

    Half fixed keeps a floor under the wait; half random spreads the retries of many messages
    (or clients) that failed together, so they do not all come back at once.
    """
    step: float = min(maximum, initial * 2 ** (attempt - 1))
    return step / 2 + rng() * step / 2
