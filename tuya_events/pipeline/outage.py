"""An outage of what a handler depends on, as state of the handler rather than of each message.

Without it, every message waiting on a down webhook or database retried on its own schedule:
hundreds of requests against a target that is down, and, once it is back, each message still
sleeping out its own backoff (34 s to clear a backlog after a 20 s outage). Here the first
infrastructure failure marks the handler down; its waiting messages sleep on the outage, one of
them at a time probes the target (backoff capped at ``retry.outage_probe_max``, 1 s by default),
and the first probe that reaches the target wakes them all at once. A device's messages still
run in order: a device's next message only starts once its current one is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable
from enum import Enum

from tuya_events.backoff import equal_jitter
from tuya_events.handlers.base import HandlerError
from tuya_events.observability.logging import get_logger
from tuya_events.observability.metrics import Metrics

log = get_logger("tuya_events.pipeline")


class Turn(Enum):
    """What a message waiting on an outage is to do next."""

    UP = "up"  # the handler is back: attempt as usual
    PROBE = "probe"  # this message tries the target for everyone
    EXPIRED = "expired"  # waited past retry.infrastructure_max_time: dead-letter it


class Outage:
    """One handler's outage: down or up, who probes next, who waits."""

    def __init__(
        self,
        handler: str,
        metrics: Metrics,
        initial_probe: float,
        max_probe: float,
        rng: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.handler = handler
        self.down = False
        self.waiting = 0
        self._metrics = metrics
        self._initial_probe = initial_probe
        self._max_probe = max(max_probe, initial_probe)
        self._rng = rng
        self._clock = clock
        self._since = 0.0
        self._probing = False
        self._probes = 0
        self._next_probe_at = 0.0
        self._waited = 0  # messages that waited during this outage
        self.reason, self.detail = "unavailable", ""  # the latest infrastructure failure
        self._changed = asyncio.Event()

    # -- transitions ------------------------------------------------------------------------

    def failed(self, error: HandlerError, detail: str) -> None:
        """An infrastructure failure: the handler is down (said once, when it goes down).
        ``detail`` is the failure's masked message."""
        self.reason, self.detail = error.reason, detail
        if self.down:
            return
        self.down = True
        self._since = self._clock()
        self._probes = 0
        self._waited = 0
        self._next_probe_at = self._since + self._probe_delay(error)
        self._metrics.handler_outages.labels(self.handler).inc()
        self._metrics.handler_down.labels(self.handler).set(1)
        log.warning(
            "handler is down: its messages wait, one probe at a time",
            handler=self.handler,
            reason=error.reason,
            error=detail,
        )

    def probe_failed(self, error: HandlerError, detail: str) -> None:
        self.reason, self.detail = error.reason, detail
        self._probing = False
        self._probes += 1
        self._next_probe_at = self._clock() + self._probe_delay(error)
        self._notify()

    def reached(self) -> None:
        """A probe reached the target (a success, or a failure that is the message's own): it
        is up. Only a probe says so: an attempt started before the outage may still succeed,
        which says nothing of a target that asked everyone to wait."""
        self._probing = False
        if not self.down:
            return
        self.down = False
        seconds = self._clock() - self._since
        self._metrics.handler_down.labels(self.handler).set(0)
        self._metrics.handler_outage_seconds.labels(self.handler).inc(seconds)
        log.info(
            "handler is back",
            handler=self.handler,
            down_for=round(seconds, 3),
            messages_waited=self._waited,
            probes=self._probes + 1,
        )
        self._notify()

    def released(self) -> None:
        """A probe that ended without an answer (cancelled at shutdown): let another probe."""
        if self._probing:
            self._probing = False
            self._notify()

    # -- waiting ----------------------------------------------------------------------------

    async def wait(self, budget: float) -> Turn:
        """Sleep until the handler is up, or it is this message's turn to probe, or ``budget``
        seconds (what is left of the message's ``retry.infrastructure_max_time``) have passed."""
        deadline = self._clock() + budget
        self.waiting += 1
        self._waited += 1
        self._metrics.handler_outage_waits.labels(self.handler).inc()
        try:
            while self.down:
                now = self._clock()
                if now >= deadline:
                    return Turn.EXPIRED
                if not self._probing and now >= self._next_probe_at:
                    self._probing = True
                    return Turn.PROBE
                wake = deadline if self._probing else min(deadline, self._next_probe_at)
                changed = self._changed
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(changed.wait(), max(0.0, wake - now))
            return Turn.UP
        finally:
            self.waiting -= 1

    def _notify(self) -> None:
        """Wake every waiter (they look again at the state), and start a new generation."""
        self._changed.set()
        self._changed = asyncio.Event()

    def _probe_delay(self, error: HandlerError) -> float:
        """Backoff up to ``max_probe``; a target that asked for a pause (HTTP ``Retry-After``,
        capped by its handler) gets it, for every message alike."""
        delay = equal_jitter(self._probes + 1, self._initial_probe, self._max_probe, self._rng)
        return delay if error.retry_after is None else max(delay, error.retry_after)
