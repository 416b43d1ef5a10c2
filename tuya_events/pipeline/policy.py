"""Retry decisions, in one place: how long to wait before the next attempt, or give up."""

from __future__ import annotations

import random
from collections.abc import Callable

from tuya_events.backoff import equal_jitter
from tuya_events.config.settings import RetrySettings
from tuya_events.handlers.base import HandlerError


class RetryPolicy:
    """Jittered exponential backoff bounded by attempts, or by time for infrastructure outages."""

    def __init__(self, settings: RetrySettings, rng: Callable[[], float] = random.random) -> None:
        self.settings = settings
        self._rng = rng

    def backoff(self, attempt: int) -> float:
        settings = self.settings
        return equal_jitter(attempt, settings.initial_backoff, settings.max_backoff, self._rng)

    @property
    def initial_backoff(self) -> float:
        return self.settings.initial_backoff

    @property
    def outage_probe_max(self) -> float:
        """The longest wait between two probes of a down target: the most its return can go
        unnoticed."""
        return self.settings.outage_probe_max

    def outage_budget(self, elapsed: float) -> float | None:
        """How much longer a message may wait on an outage, ``elapsed`` seconds after its first
        failure; None: dead-letter it now."""
        left = self.settings.infrastructure_max_time - elapsed
        return left if left > 0 else None

    def next_delay(self, error: HandlerError, attempt: int, elapsed: float) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``, or None to dead-letter now."""
        if not error.retryable:
            return None
        if error.infrastructure:
            if elapsed >= self.settings.infrastructure_max_time:
                return None
        elif attempt >= self.settings.max_attempts:
            return None
        delay = self.backoff(attempt)
        if error.retry_after is not None:
            # The handler caps what a server may ask for; honour it even above max_backoff.
            delay = max(delay, error.retry_after)
        return delay
