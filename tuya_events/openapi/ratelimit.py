"""Token buckets per endpoint class, so the daemon stays under Tuya's per-project limits.

Tuya allows device commands at 4 requests/s per cloud project and status queries at 50/s; past
that it answers 1110. A bucket holds ``burst`` tokens and gains ``rate`` per second; with the
default burst of 1, requests leave at most ``rate`` per second, evenly spaced, which is what a
per-second limit on the server side accepts.

Waiting is first come, first served (one lock, which asyncio hands over in order). The bucket
is kept as the generic cell rate algorithm's "theoretical arrival time", advanced from the moment
a request actually goes, not from the moment it was due: when the event loop wakes a waiter late,
the requests behind it move back too, so two requests never leave closer than the rate allows.
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
        self._lock = asyncio.Lock()

    async def acquire(self) -> float:
        """Wait for a token; returns the seconds waited."""
        started = self._clock()
        async with self._lock:
            now = self._clock()
            earliest = self._next - (self.burst - 1) * self._interval
            if earliest > now:
                await asyncio.sleep(earliest - now)
                now = max(self._clock(), earliest)
            self._next = max(self._next, now) + self._interval
        return self._clock() - started


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
