"""The retry decisions exactly (issue 15): the documented backoff formula value by value, the
outage budget, and the boundaries of every limit, for the policy and the shared formula."""

from __future__ import annotations

import pytest

from tuya_events.backoff import equal_jitter
from tuya_events.config.settings import RetrySettings
from tuya_events.handlers.base import HandlerError
from tuya_events.pipeline.policy import RetryPolicy

SETTINGS = RetrySettings(
    max_attempts=3,
    initial_backoff=0.5,
    max_backoff=6.0,
    infrastructure_max_time=100.0,
    outage_probe_max=2.5,
)


@pytest.mark.parametrize(
    ("attempt", "rng", "expected"),
    [
        # step = min(6, 0.5 * 2**(attempt-1)); half fixed, half scaled by rng
        (1, 0.0, 0.25),
        (1, 1.0, 0.5),
        (1, 0.5, 0.375),
        (2, 0.0, 0.5),
        (3, 0.5, 1.5),
        (4, 1.0, 4.0),
        (5, 0.0, 3.0),  # 8 capped at 6
        (5, 1.0, 6.0),
        (30, 0.25, 3.75),
    ],
)
def test_equal_jitter_is_half_fixed_half_random(attempt: int, rng: float, expected: float) -> None:
    assert equal_jitter(attempt, 0.5, 6.0, lambda: rng) == pytest.approx(expected)
    assert RetryPolicy(SETTINGS, rng=lambda: rng).backoff(attempt) == pytest.approx(expected)


def test_the_policy_uses_the_given_random_source() -> None:
    draws = iter([0.0, 1.0])
    policy = RetryPolicy(SETTINGS, rng=lambda: next(draws))
    assert [policy.backoff(2), policy.backoff(2)] == [0.5, 1.0]


def test_the_default_random_source_stays_within_the_step() -> None:
    delays = {RetryPolicy(SETTINGS).backoff(3) for _ in range(50)}
    assert all(1.0 <= delay <= 2.0 for delay in delays)
    assert len(delays) > 1  # random, not a fixed point of the interval


def test_the_policy_exposes_its_settings() -> None:
    policy = RetryPolicy(SETTINGS)
    assert policy.settings is SETTINGS
    assert policy.initial_backoff == 0.5
    assert policy.outage_probe_max == 2.5


@pytest.mark.parametrize(
    ("elapsed", "left"), [(0.0, 100.0), (40.0, 60.0), (99.5, 0.5), (100.0, None), (150.0, None)]
)
def test_the_outage_budget_is_what_is_left_of_the_time_limit(
    elapsed: float, left: float | None
) -> None:
    assert RetryPolicy(SETTINGS).outage_budget(elapsed) == left


def test_an_ordinary_failure_is_retried_until_the_last_attempt() -> None:
    policy = RetryPolicy(SETTINGS, rng=lambda: 0.0)
    error = HandlerError("x", "boom")
    assert [policy.next_delay(error, attempt, 0.0) for attempt in (1, 2, 3, 4)] == [
        0.25,
        0.5,
        None,
        None,
    ]


def test_an_ordinary_failure_ignores_the_outage_clock() -> None:
    policy = RetryPolicy(SETTINGS, rng=lambda: 0.0)
    assert policy.next_delay(HandlerError("x", "boom"), 1, elapsed=1e6) == 0.25


def test_an_outage_ignores_the_attempt_count_until_the_time_limit() -> None:
    policy = RetryPolicy(SETTINGS, rng=lambda: 1.0)
    outage = HandlerError("db", "down", infrastructure=True)
    assert policy.next_delay(outage, 3, elapsed=0.0) == 2.0
    assert policy.next_delay(outage, 1000, elapsed=99.9) == 6.0
    assert policy.next_delay(outage, 1, elapsed=100.0) is None


def test_a_permanent_failure_is_never_retried_even_on_the_first_attempt() -> None:
    error = HandlerError("http_400", "bad", retryable=False)
    assert RetryPolicy(SETTINGS).next_delay(error, 0, 0.0) is None


@pytest.mark.parametrize(("retry_after", "expected"), [(0.1, 0.5), (0.5, 0.5), (7.0, 7.0)])
def test_retry_after_is_a_floor_under_the_backoff(retry_after: float, expected: float) -> None:
    policy = RetryPolicy(SETTINGS, rng=lambda: 0.0)
    error = HandlerError("http_429", "slow down", retry_after=retry_after)
    assert policy.next_delay(error, 2, 0.0) == expected
    outage = HandlerError("http_503", "down", infrastructure=True, retry_after=retry_after)
    assert policy.next_delay(outage, 2, 0.0) == expected
