"""Retry decisions: backoff bounds, attempt limits, outage time budget, Retry-After."""

from __future__ import annotations

import pytest

from tuya_events.config.settings import RetrySettings
from tuya_events.handlers.base import HandlerError
from tuya_events.pipeline.policy import RetryPolicy

SETTINGS = RetrySettings(
    max_attempts=4, initial_backoff=1.0, max_backoff=8.0, infrastructure_max_time=100.0
)


@pytest.mark.parametrize("rng", [0.0, 0.5, 0.999])
@pytest.mark.parametrize(("attempt", "step"), [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (9, 8.0)])
def test_backoff_is_jittered_within_half_to_full_step(
    rng: float, attempt: int, step: float
) -> None:
    delay = RetryPolicy(SETTINGS, rng=lambda: rng).backoff(attempt)
    assert step / 2 <= delay <= step


def test_ordinary_failures_stop_at_max_attempts() -> None:
    policy = RetryPolicy(SETTINGS)
    error = HandlerError("x", "boom")
    assert [policy.next_delay(error, n, 0) is not None for n in (1, 2, 3, 4)] == [
        True,
        True,
        True,
        False,
    ]


def test_permanent_failures_are_not_retried() -> None:
    assert RetryPolicy(SETTINGS).next_delay(HandlerError("x", "no", retryable=False), 1, 0) is None


def test_outages_retry_past_max_attempts_until_the_time_budget() -> None:
    policy = RetryPolicy(SETTINGS)
    outage = HandlerError("db", "down", infrastructure=True)
    assert policy.next_delay(outage, 50, elapsed=99.0) is not None
    assert policy.next_delay(outage, 50, elapsed=100.0) is None


def test_retry_after_is_honoured_even_above_max_backoff() -> None:
    policy = RetryPolicy(SETTINGS, rng=lambda: 0.0)
    assert (
        policy.next_delay(HandlerError("http_429", "slow down", retry_after=120.0), 1, 0) == 120.0
    )
    assert policy.next_delay(HandlerError("http_429", "slow down", retry_after=0.1), 1, 0) == 0.5
