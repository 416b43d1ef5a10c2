"""decode -> route -> handle -> acknowledge, and the ack policy, in one place.

Rules this module keeps:
- A message is acknowledged only when every handler it was routed to succeeded, or its failure was
  written durably to the dead-letter store. Nothing else calls ``acknowledge``.
- Messages of one device are handled one after another, in arrival order; different devices run
  concurrently, up to ``max_in_flight`` messages in all.
- Each finished message is reported to the transport once; the Pulsar source turns those into
  cumulative acks of each partition's finished prefix, never past an unfinished message.
- A message whose handlers all finish without waiting is settled inside ``submit``: no task, no
  coroutine. The first handler that has to wait (or fails) moves the rest of that message, and
  the later messages of its device, into a task of their own.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import orjson

from tuya_events.handlers.base import Handler, HandlerError
from tuya_events.observability.logging import get_logger
from tuya_events.observability.metrics import DUPLICATE, FAILURE, RETRY, SUCCESS, UNMATCHED, Metrics
from tuya_events.observability.redact import REDACTOR
from tuya_events.pipeline.dedupe import RecentlyHandled
from tuya_events.pipeline.delivery import Delivery, Failure
from tuya_events.pipeline.policy import RetryPolicy
from tuya_events.pipeline.routing import always
from tuya_events.tuya.codec import TuyaCodec, encryption_mode
from tuya_events.tuya.errors import UNKNOWN_EM, DecodeError
from tuya_events.tuya.events import Event

log = get_logger("tuya_events.pipeline")

DECODE_STAGE = "decode"
HANDLER_STAGE = "handler"
PIPELINE_STAGE = "pipeline"  # a bug of ours, not the message's: kept, logged with its traceback
INTERNAL_ERROR = "internal_error"
DEAD_LETTER_RETRY_SECONDS = 5.0


def _attempt(
    handler: Handler, event: Event, delivery: Delivery
) -> Awaitable[None] | Exception | None:
    """Start one attempt: None when the handler finished without waiting, the exception when it
    failed at once, else what to await (bounded by the handler's timeout when it has one)."""
    try:
        pending = handler.handle(event, delivery)
    except Exception as exc:
        return exc
    if pending is None or handler.timeout is None:
        return pending
    return asyncio.wait_for(pending, handler.timeout)


def _as_handler_error(exc: Exception, handler: Handler) -> HandlerError:
    """Every way an attempt can fail, as a HandlerError with a stable reason."""
    if isinstance(exc, HandlerError):
        return exc
    if isinstance(exc, asyncio.TimeoutError):
        return HandlerError("timeout", f"no answer within {handler.timeout:g}s")
    return HandlerError("handler_error", f"{type(exc).__name__}: {exc}")


@dataclass(slots=True)
class Route:
    """A handler and the rule that decides which events it sees."""

    handler: Handler
    matches: Callable[[Event], bool] = always

    @property
    def name(self) -> str:
        return self.handler.name


@dataclass(slots=True)
class _MessageState:
    """One message on its way through the routes: what it carries across a handler's wait."""

    delivery: Delivery
    event: Event
    only_handler: str | None  # a replay for one handler
    dedupe_key: str
    done: frozenset[str]  # the handlers that already succeeded for it (it was redelivered)
    dead_lettered: bool = False


class DeadLetterSink(Protocol):
    """What the pipeline needs from the dead-letter store (sync; run in a thread)."""

    def put(
        self,
        delivery: Delivery,
        failure: Failure,
        device_id: str | None = None,
        plaintext: bytes | None = None,
    ) -> int: ...

    def count(self) -> int: ...


class RetryLog:
    """One warning per handler and reason per interval, however many messages are retrying.

    In an outage every in-flight message retries on its own; a line each would bury the log.
    The first failure is logged at once with its details, later ones are counted and summed up.
    """

    INTERVAL = 10.0

    def __init__(self) -> None:
        self._last: dict[tuple[str, str], float] = {}
        self._suppressed: dict[tuple[str, str], int] = {}

    def failed(
        self,
        handler: str,
        reason: str,
        message: str,
        delivery: Delivery,
        event: Event,
        attempt: int,
        delay: float,
    ) -> None:
        key = (handler, reason)
        now = time.monotonic()
        if now - self._last.get(key, -self.INTERVAL) < self.INTERVAL:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return
        self._last[key] = now
        log.warning(
            "handler failed, will retry",
            handler=handler,
            reason=reason,
            error=message,
            attempt=attempt,
            retry_in=round(delay, 3),
            message_id=delivery.message_id,
            device_id=event.device_id,
            similar_failures_not_logged=self._suppressed.pop(key, 0),
        )


class Pipeline:
    def __init__(
        self,
        codec: TuyaCodec,
        routes: Sequence[Route],
        dead_letters: DeadLetterSink,
        acknowledge: Callable[[Delivery, bool], None],
        policy: RetryPolicy,
        metrics: Metrics,
        max_in_flight: int = 1000,
        dedupe_capacity: int = 100_000,
        keep_plaintext: bool = False,
    ) -> None:
        self.codec = codec
        self._routes = tuple(routes)
        self.dead_letters = dead_letters
        self.acknowledge = acknowledge
        self.policy = policy
        self.metrics = metrics
        self.max_in_flight = max_in_flight
        self.keep_plaintext = keep_plaintext
        self.recent = RecentlyHandled(dedupe_capacity)
        self._all_names = frozenset(route.name for route in self._routes)
        # Per message: no property call for the name, no call at all for a route without rules.
        self._plan = tuple(
            (route.name, route.handler, None if route.matches is always else route.matches)
            for route in self._routes
        )
        self._retry_log = RetryLog()
        self.in_flight = 0
        self.last_message_at = 0.0
        self._queues: dict[str, deque[tuple[Delivery, Event, str | None]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._capacity = asyncio.Event()
        self._capacity.set()
        self._idle = asyncio.Event()
        self._idle.set()
        metrics.bind_gauges(lambda: self.in_flight, lambda: self.last_message_at)
        for route in self._routes:
            metrics.declare_handler(route.name)

    @property
    def routes(self) -> tuple[Route, ...]:
        """Fixed at construction: the per-message plan is derived from them once."""
        return self._routes

    # -- intake ---------------------------------------------------------------------------

    def submit(self, delivery: Delivery, only_handler: str | None = None) -> None:
        """Take one message; never blocks. Callers wait on :meth:`wait_for_capacity` first."""
        now = time.time()
        self.last_message_at = now
        age = now - delivery.publish_time_ms / 1000 if delivery.publish_time_ms else None
        self.metrics.received(delivery.partition, age)
        self.in_flight += 1
        if self.in_flight == 1:
            self._idle.clear()
        try:
            event = self.codec.decode(delivery.body, delivery.properties)
        except DecodeError as error:
            self._spawn(self._decode_failed(delivery, error))
            return
        self.metrics.decoded(event.kind)
        key = event.device_id or delivery.key or f"partition-{delivery.partition}"
        queue = self._queues.get(key)
        if queue is not None:  # an earlier message of this device is still being handled
            queue.append((delivery, event, only_handler))
            return
        pending = self._handle(delivery, event, only_handler)
        if pending is None:
            self._finished()
            return
        # A handler has to wait: this device's later messages queue behind it, in a task.
        self._queues[key] = deque()
        self._spawn(self._drain_key(key, delivery, event, pending))

    async def wait_for_capacity(self) -> None:
        while self.in_flight >= self.max_in_flight:
            self._capacity.clear()
            await self._capacity.wait()

    async def join(self, timeout: float | None = None) -> bool:
        """Wait until nothing is in flight; False when ``timeout`` ran out first."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    async def cancel(self) -> None:
        """Abandon unfinished work: those messages stay unacknowledged and will be redelivered."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- bookkeeping ------------------------------------------------------------------------

    def _finished(self) -> None:
        # In flight goes down one at a time, so it passes max - 1 on its way below the limit:
        # only then can a receiver be waiting for capacity (and only at 0 for idle).
        self.in_flight -= 1
        if self.in_flight == self.max_in_flight - 1:
            self._capacity.set()
        if self.in_flight == 0:
            self._idle.set()

    def _spawn(self, coro) -> None:  # type: ignore[no-untyped-def]
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _ack(self, delivery: Delivery, dead_lettered: bool) -> None:
        self.acknowledge(delivery, dead_lettered)
        self.metrics.acked()

    # -- per message --------------------------------------------------------------------------

    async def _drain_key(
        self, key: str, delivery: Delivery, event: Event, pending: Awaitable[None] | None
    ) -> None:
        """Finish a device's message that had to wait, then the ones queued behind it."""
        queue = self._queues[key]
        try:
            while True:
                if pending is not None:
                    try:
                        await pending
                    except Exception as exc:
                        await self._internal_error(delivery, event, exc)
                self._finished()
                if not queue:
                    break
                delivery, event, only_handler = queue.popleft()
                pending = self._handle(delivery, event, only_handler)
        finally:
            if self._queues.get(key) is queue and not queue:
                del self._queues[key]

    def _handle(
        self, delivery: Delivery, event: Event, only_handler: str | None
    ) -> Awaitable[None] | None:
        """Handle one message as far as it goes without waiting; None when it is acknowledged.

        Handlers that finish synchronously cost no task and no coroutine; the first one that has
        to wait (or fails) hands the rest of the message to an awaitable, which runs in a task.
        A bug of ours becomes a dead letter (an awaitable too), not a crash of the caller.
        """
        # Tuya's dataId names the report whichever Pulsar message brings it (a redelivery or a
        # resend); the Pulsar message id stands in for events without one.
        dedupe_key = f"data:{event.data_id}" if event.data_id else delivery.message_id
        try:
            done = self.recent.succeeded(dedupe_key)
            return self._run(_MessageState(delivery, event, only_handler, dedupe_key, done), 0)
        except Exception as exc:
            return self._internal_error(delivery, event, exc)

    def _run(self, message: _MessageState, first: int) -> Awaitable[None] | None:
        """The plan from route ``first`` on, synchronously until a handler has to wait."""
        metrics, event, delivery = self.metrics, message.event, message.delivery
        only_handler, done = message.only_handler, message.done
        for index, (name, handler, matches) in enumerate(self._plan[first:], first):
            if only_handler is not None and name != only_handler:
                continue
            if matches is not None and not matches(event):
                metrics.handler_outcome(name, UNMATCHED)
                continue
            if name in done:
                metrics.handler_outcome(name, DUPLICATE)
                continue
            started = time.perf_counter()
            attempt = _attempt(handler, event, delivery)
            if attempt is not None:  # it has to wait, or it failed: the rest runs in a task
                return self._resume(message, index, attempt, started)
            metrics.handler_outcome(name, SUCCESS, time.perf_counter() - started)
        # Without a filter every route ran, was settled before, or did not match: the one shared
        # set of all names is exact, and no set is built per message.
        names = self._all_names if only_handler is None else done | {only_handler}
        self.recent.remember(message.dedupe_key, names)
        self._ack(delivery, message.dead_lettered)
        return None

    async def _resume(
        self,
        message: _MessageState,
        index: int,
        attempt: Awaitable[None] | Exception,
        started: float,
    ) -> None:
        """Wait for route ``index``'s attempt (retrying if it failed), then run the rest."""
        handler, event, delivery = self._plan[index][1], message.event, message.delivery
        error = await self._outcome(handler, attempt, started)
        if error is not None:
            failure = await self._retry(handler, event, delivery, error, started)
            if failure is not None:
                # Dead-lettered is settled too: a redelivery must not run it again.
                await self._dead_letter(delivery, failure, event)
                message.dead_lettered = True
        rest = self._run(message, index + 1)
        if rest is not None:
            await rest

    async def _retry(
        self,
        handler: Handler,
        event: Event,
        delivery: Delivery,
        error: HandlerError,
        started: float,
    ) -> Failure | None:
        """After a failed first attempt: retry until success or the policy gives up.

        Returns None on success, else the failure to dead-letter. ``started`` is when the failed
        attempt began, for its duration.
        """
        name = handler.name
        first_failure = time.time()
        attempt = 1
        while True:
            now = time.time()
            delay = self.policy.next_delay(error, attempt, now - first_failure)
            message = REDACTOR(error.message)
            if delay is None:
                self.metrics.handler_outcome(name, FAILURE, time.perf_counter() - started)
                return Failure(
                    HANDLER_STAGE, error.reason, message, name, attempt, first_failure, now
                )
            self.metrics.handler_outcome(name, RETRY, time.perf_counter() - started)
            self._retry_log.failed(name, error.reason, message, delivery, event, attempt, delay)
            await asyncio.sleep(delay)
            attempt += 1
            started = time.perf_counter()
            outcome = await self._outcome(handler, _attempt(handler, event, delivery), started)
            if outcome is None:
                return None
            error = outcome

    async def _outcome(
        self, handler: Handler, attempt: Awaitable[None] | Exception | None, started: float
    ) -> HandlerError | None:
        """How a started attempt ends: None on success (counted), else its failure."""
        try:
            if isinstance(attempt, Exception):
                raise attempt
            if attempt is not None:
                await attempt
        except Exception as exc:
            return _as_handler_error(exc, handler)
        self.metrics.handler_outcome(handler.name, SUCCESS, time.perf_counter() - started)
        return None

    async def _internal_error(self, delivery: Delivery, event: Event, error: Exception) -> None:
        """Not the message's fault, but it must not stall its device or stop the loop: keep it
        in the dead-letter store (replayable once fixed), log the traceback, acknowledge."""
        log.error(
            "internal error while handling a message; it is dead-lettered",
            message_id=delivery.message_id,
            device_id=event.device_id,
            exc_info=error,
        )
        message = REDACTOR(f"{type(error).__name__}: {error}")
        await self._dead_letter(delivery, Failure(PIPELINE_STAGE, INTERNAL_ERROR, message), event)
        self._ack(delivery, True)

    async def _decode_failed(self, delivery: Delivery, error: DecodeError) -> None:
        try:
            em = encryption_mode(delivery.properties)
        except DecodeError:
            em = UNKNOWN_EM
        self.metrics.decode_failures.labels(error.reason, em).inc()
        failure = Failure(DECODE_STAGE, error.reason, error.detail)
        try:
            await self._dead_letter(delivery, failure, None)
            self._ack(delivery, True)
        finally:
            self._finished()

    async def _dead_letter(self, delivery: Delivery, failure: Failure, event: Event | None) -> None:
        """Write durably, retrying for as long as it takes: only then may the message be acked."""
        log.warning(
            "message dead-lettered",
            stage=failure.stage,
            handler=failure.handler,
            reason=failure.reason,
            error=failure.message,
            attempts=failure.attempts,
            message_id=delivery.message_id,
            device_id=event.device_id if event else None,
            partition=delivery.partition,
        )
        device_id = event.device_id if event else None
        plaintext = (
            orjson.dumps(event.document) if event is not None and self.keep_plaintext else None
        )
        while True:
            try:
                await asyncio.to_thread(
                    self.dead_letters.put, delivery, failure, device_id, plaintext
                )
                records = await asyncio.to_thread(self.dead_letters.count)
                break
            except Exception as exc:
                self.metrics.dead_letter_write_failures.inc()
                log.error(
                    "cannot write to the dead-letter store; the message stays unacknowledged",
                    error=REDACTOR(f"{type(exc).__name__}: {exc}"),
                    message_id=delivery.message_id,
                    retry_in=DEAD_LETTER_RETRY_SECONDS,
                )
                await asyncio.sleep(DEAD_LETTER_RETRY_SECONDS)
        # A replayed record is updated once; a second failing handler gets a record of its own.
        delivery.dead_letter_id = None
        self.metrics.dead_letters.labels(failure.stage, failure.reason).inc()
        self.metrics.dead_letter_records.set(records)
