"""Token buckets per endpoint class, so the daemon stays under Tuya's per-project limits.

Tuya allows device commands at 4 requests/s per cloud project and status queries at 50/s; past
that it answers 1110. A bucket holds ``burst`` tokens and gains ``rate`` per second; with the
default burst of 1, requests leave at most ``rate`` per second, evenly spaced, which is what a
per-second limit on the server side accepts.

Waiting is first come, first served: each caller reserves the next free slot at once (the
generic cell rate algorithm, equivalent to a token bucket), then sleeps until it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping

TOKEN = "token"
COMMAND = "command"
QUERY = "query"
ENDPOINT_CLASSES = (TOKEN, COMMAND, QUERY)


def endpoint_class(method: str, path: str, token_call: bool = False) -> str:
    """``token`` for token calls, ``query`` for reads, ``command`` for commands and other writes:
    Tuya counts device commands against the tighter limit, and a write we cannot place is
    safer under it."""
    if token_call:
        return TOKEN
    return QUERY if method.upper() == "GET" else COMMAND


class TokenBucket:
    """``rate`` requests per second, up to ``burst`` at once after a quiet spell."""

    def __init__(
        self, rate: float, burst: int = 1, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._interval = 1.0 / rate
        self._clock = clock
        # The theoretical arrival time of the next request: the bucket is full when it is <= now.
        self._next = 0.0

    def reserve(self) -> float:
        """Take the next slot; returns how long to wait for it (0 when a token is free)."""
        now = self._clock()
        earliest = self._next - (self.burst - 1) * self._interval
        start = max(now, earliest)
        self._next = max(self._next, now) + self._interval
        return start - now

    async def acquire(self) -> float:
        """Wait for a slot; returns the seconds waited."""
        wait = self.reserve()
        if wait > 0:
            await asyncio.sleep(wait)
        return wait


class RateLimiter:
    """One bucket per endpoint class; classes without a limit (token calls) pass at once."""

    def __init__(
        self,
        limits: Mapping[str, tuple[float, int]],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.buckets = {
            name: TokenBucket(rate, burst, clock) for name, (rate, burst) in limits.items()
        }

    async def acquire(self, endpoint: str) -> float:
        bucket = self.buckets.get(endpoint)
        return await bucket.acquire() if bucket is not None else 0.0
