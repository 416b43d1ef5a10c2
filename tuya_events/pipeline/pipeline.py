"""decode -> route -> handle -> settle, and the ack policy, in one place.

Rules this module keeps:
- A message is acknowledged only when every handler it was routed to succeeded, or its failure was
  written durably to the dead-letter store. :meth:`Pipeline._settle` is the one place that
  acknowledges, remembers, counts and releases a message's in-flight slot.
- Whatever a message contains, it is settled: a decode failure and a bug of ours alike become a
  dead letter with a reason, and the receive loop and the device's later messages go on.
- Messages of one device are handled one after another, in arrival order; different devices run
  concurrently, up to ``max_in_flight`` messages in all.
- A message whose handlers all finish without waiting is settled inside ``submit``: no task, no
  coroutine. The first handler that has to wait (or fails) moves the rest of that message, and
  the later messages of its device, into a task of their own.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Generator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, final

import orjson

from tuya_events.deadletter.errors import DeadLetterStoreError
from tuya_events.deadletter.store import Kept
from tuya_events.delivery import Delivery, Failure
from tuya_events.handlers.base import Handler, HandlerError
from tuya_events.matching import always
from tuya_events.observability.logging import get_logger
from tuya_events.observability.metrics import DUPLICATE, FAILURE, RETRY, SUCCESS, UNMATCHED, Metrics
from tuya_events.observability.redact import REDACTOR
from tuya_events.pipeline.dedupe import RecentlyHandled
from tuya_events.pipeline.outage import Outage, Turn
from tuya_events.pipeline.policy import RetryPolicy
from tuya_events.pipeline.routes import Route
from tuya_events.tuya.codec import TuyaCodec, encryption_mode
from tuya_events.tuya.errors import UNKNOWN_EM, DecodeError
from tuya_events.tuya.events import Event

log = get_logger("tuya_events.pipeline")

DECODE_STAGE = "decode"
HANDLER_STAGE = "handler"
PIPELINE_STAGE = "pipeline"  # a bug of ours, not the message's: kept, logged with its traceback
INTERNAL_ERROR = "internal_error"
DEAD_LETTER_RETRY_SECONDS = 5.0


@final
class _WaitForOutage:
    """Stands for an attempt not made yet: the message came while its handler was down, so it
    waits on the outage first. Never awaited."""

    def __await__(self) -> Generator[Any, None, None]:
        raise RuntimeError("not an attempt")
        yield  # a generator, as __await__ must be


_WAIT_FOR_OUTAGE = _WaitForOutage()


async def _all_done(tasks: list[asyncio.Task[None]]) -> None:
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)


def _start(handler: Handler, event: Event, delivery: Delivery) -> Awaitable[None] | None:
    """Start one attempt: None when the handler finished without waiting, else what to await
    (bounded by the handler's timeout when it has one). A failure at once is an awaitable too,
    one that raises: every attempt that did not simply succeed ends the same way."""
    try:
        pending = handler.handle(event, delivery)
    except Exception as exc:
        failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        failed.set_exception(exc)
        return failed
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


def _describe(error: BaseException) -> str:
    """An exception as one masked line, whatever its text (it may quote the message)."""
    try:
        text = f"{type(error).__name__}: {error}"
    except Exception:  # a __str__ that fails on its own content
        text = type(error).__name__
    return REDACTOR(text[:2000])


def _plaintext_json(event: Event) -> tuple[bytes | None, str | None]:
    """The decrypted document for the dead-letter record, or None and why it could not be kept.

    The store must take every message: a document that cannot be encoded again (nested deeper
    than the encoder allows, say) is recorded without it, and the record says so.
    """
    try:
        return orjson.dumps(event.document), None
    except (TypeError, ValueError) as exc:
        return None, f"plaintext not stored: {exc}"


Step = tuple[str, Handler, Callable[[Event], bool] | None, Outage]


@dataclass(frozen=True, slots=True)
class _Plan:
    """The routes as the per-message loop reads them; each message keeps the plan it started
    with, so a reload between messages never changes the handlers of one on its way."""

    steps: tuple[Step, ...]
    names: frozenset[str]


@dataclass(slots=True)
class _InFlight:
    """One message on its way through the routes: what it carries across a handler's wait."""

    delivery: Delivery
    event: Event | None  # None: it could not be decoded
    plan: _Plan
    only_handler: str | None = None  # a replay for one handler
    dedupe_key: str = ""
    done: frozenset[str] = frozenset()  # handlers that already succeeded for it (redelivered)
    dead_lettered: bool = False
    settled: bool = False


Tap = Callable[[Event | None, Delivery, bool], None]
"""Told of each settled message: its event (None: undecodable), delivery, dead-lettered."""


class DeadLetterSink(Protocol):
    """What the pipeline needs from the dead-letter store (sync; run in a thread).

    ``keep`` writes one record per message (a message delivered again updates its record) and
    raises :class:`DeadLetterStoreError` (or an ``OSError``) when the store cannot be written,
    retried until it can; anything else is taken as a problem with the record's content.
    """

    def keep(
        self,
        delivery: Delivery,
        failure: Failure,
        device_id: str | None = None,
        plaintext: bytes | None = None,
    ) -> Kept: ...

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
        error: HandlerError,
        detail: str,
        message: _InFlight,
        attempt: int,
        delay: float,
    ) -> None:
        key = (handler, error.reason)
        now = time.monotonic()
        if now - self._last.get(key, -self.INTERVAL) < self.INTERVAL:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return
        self._last[key] = now
        log.warning(
            "handler failed, will retry",
            handler=handler,
            reason=error.reason,
            error=detail,
            attempt=attempt,
            retry_in=round(delay, 3),
            message_id=message.delivery.message_id,
            device_id=message.event.device_id if message.event else None,
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
        enrich: Callable[[Event], Awaitable[None] | None] | None = None,
    ) -> None:
        self.codec = codec
        self._routes = tuple(routes)
        self.dead_letters = dead_letters
        self.acknowledge = acknowledge
        self.policy = policy
        self.metrics = metrics
        self.max_in_flight = max_in_flight
        self.keep_plaintext = keep_plaintext
        self._enrich = enrich
        self._tap: Tap | None = None
        self.recent = RecentlyHandled(dedupe_capacity)
        self._plan = self._make_plan(self._routes, {})
        self._retry_log = RetryLog()
        self.in_flight = 0
        self.last_message_at = 0.0
        self._queues: dict[str, deque[_InFlight]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._capacity = asyncio.Event()
        self._capacity.set()
        self._idle = asyncio.Event()
        self._idle.set()
        metrics.bind_gauges(lambda: self.in_flight, lambda: self.last_message_at)
        for route in self._routes:
            metrics.declare_handler(route.name)

    def set_enrichment(self, enrich: Callable[[Event], Awaitable[None] | None] | None) -> None:
        """Enrichment (tuya_events.catalogue.enrich), before the first message: it returns
        None, or an awaitable for a device whose lookup its messages wait for, in the device's
        queue like a handler that waits."""
        self._enrich = enrich

    def set_tap(self, tap: Tap | None) -> None:
        """``tap(event, delivery, dead_lettered)`` for every settled message, while set (the
        live tail sets it while someone watches; unset, it costs one check per message). It is
        told after the acknowledgement and must not raise or block."""
        self._tap = tap

    @property
    def routes(self) -> tuple[Route, ...]:
        """The routes later messages take (:meth:`replace_routes` changes them)."""
        return self._routes

    def _make_plan(self, routes: Sequence[Route], outages: dict[int, Outage]) -> _Plan:
        """Per message: no property call for the name, no call at all for a route without
        rules. ``outages`` by id of the handler: a handler kept across a reload keeps its
        outage state (its target is as down as it was)."""
        policy, metrics = self.policy, self.metrics
        steps = tuple(
            (
                route.name,
                route.handler,
                None if route.matches is always else route.matches,
                outages.get(id(route.handler))
                or Outage(route.name, metrics, policy.initial_backoff, policy.outage_probe_max),
            )
            for route in routes
        )
        return _Plan(steps, frozenset(route.name for route in routes))

    def replace_routes(self, routes: Sequence[Route]) -> None:
        """A reload: messages submitted from now on take ``routes``; those on their way finish
        on the routes they started with."""
        outages = {id(handler): outage for _, handler, _, outage in self._plan.steps}
        self._routes = tuple(routes)
        self._plan = self._make_plan(self._routes, outages)
        for route in self._routes:
            self.metrics.declare_handler(route.name)

    # -- intake ---------------------------------------------------------------------------

    def submit(self, delivery: Delivery, only_handler: str | None = None) -> None:
        """Take one message; never blocks and never raises for anything the message contains.

        Callers wait on :meth:`wait_for_capacity` first.
        """
        now = time.time()
        self.last_message_at = now
        age = now - delivery.publish_time_ms / 1000 if delivery.publish_time_ms else None
        self.metrics.received(delivery.partition, age)
        self.in_flight += 1
        if self.in_flight == 1:
            self._idle.clear()
        try:
            event = self.codec.decode(delivery.body, delivery.properties)
        except Exception as error:  # anything but a DecodeError is a bug of ours in the codec
            message = _InFlight(delivery, None, self._plan)
            failure = (
                self._decode_failure(delivery, error)
                if isinstance(error, DecodeError)
                else self._internal_failure(message, error)
            )
            self._spawn(self._fail(message, failure))
            return
        self.metrics.decoded(event.kind)
        # Tuya's dataId names the report whichever Pulsar message brings it (a redelivery or a
        # resend); the Pulsar message id stands in for events without one.
        dedupe_key = f"data:{event.data_id}" if event.data_id else delivery.message_id
        message = _InFlight(delivery, event, self._plan, only_handler, dedupe_key)
        key = event.device_id or delivery.key or f"partition-{delivery.partition}"
        queue = self._queues.get(key)
        if queue is not None:  # an earlier message of this device is still being handled
            queue.append(message)
            return
        pending = self._route(message)
        if pending is not None:
            # A handler has to wait: this device's later messages queue behind it, in a task.
            self._queues[key] = deque()
            self._spawn(self._drain(key, pending))

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

    def unfinished(self) -> Awaitable[None]:
        """Done when every message taken so far is settled (the tasks running now finish; a
        message that did not wait is settled already). New messages do not hold it up."""
        return _all_done(list(self._tasks))

    async def cancel(self) -> None:
        """Abandon unfinished work: those messages stay unacknowledged and will be redelivered."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- settling ---------------------------------------------------------------------------

    def _settle(self, message: _InFlight, acknowledge: bool = True) -> None:
        """The one place a message is done: remembered, acknowledged, counted, its slot freed.

        Called once per message, when every route ran or was dead-lettered (``acknowledge``
        False: it could not even be dead-lettered, and is left for the broker to deliver again).
        An acknowledgement the transport cannot make is logged; the broker then delivers the
        message again, and the dedupe cache keeps its handlers from running twice.
        """
        message.settled = True
        if acknowledge:
            if message.event is not None:
                # Without a filter every route ran, was dead-lettered, or did not match: the one
                # shared set of all names is exact, and no set is built per message.
                only = message.only_handler
                names = message.plan.names if only is None else message.done | {only}
                self.recent.remember(message.dedupe_key, names)
            try:
                self.acknowledge(message.delivery, message.dead_lettered)
            except Exception as exc:
                log.error(
                    "cannot acknowledge a settled message; the broker will deliver it again",
                    message_id=message.delivery.message_id,
                    error=_describe(exc),
                )
            else:
                self.metrics.acked()
        tap = self._tap
        if tap is not None:
            try:
                tap(message.event, message.delivery, message.dead_lettered)
            except Exception:  # a viewer's problem never becomes the message's
                log.exception("the live tail failed on a message; it goes on")
        # In flight goes down one at a time, so it passes max - 1 on its way below the limit:
        # only then can a receiver be waiting for capacity (and only at 0 for idle).
        self.in_flight -= 1
        if self.in_flight == self.max_in_flight - 1:
            self._capacity.set()
        if self.in_flight == 0:
            self._idle.set()

    async def _fail(self, message: _InFlight, failure: Failure) -> None:
        """A message that cannot go on: keep it in the dead-letter store, then settle it.

        Should even the write fail for a reason other than the store being down (a bug of
        ours), the message is left unacknowledged, to come again after a restart, and its slot
        is freed: its device goes on either way.
        """
        try:
            await self._dead_letter(message, failure)
        except Exception as error:
            log.error(
                "cannot dead-letter a message; it stays unacknowledged",
                message_id=message.delivery.message_id,
                exc_info=error,
            )
            self._settle(message, acknowledge=False)
            return
        message.dead_lettered = True
        self._settle(message)

    def _internal_error(self, message: _InFlight, error: Exception) -> Awaitable[None] | None:
        """A bug of ours while routing (not a handler's failure, which the retry policy owns)
        dead-letters the message instead of stopping the caller or stalling the device."""
        if message.settled:  # it came after settling: nothing is left to do but say so
            log.error("internal error after a message was settled", exc_info=error)
            return None
        return self._fail(message, self._internal_failure(message, error))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- per message --------------------------------------------------------------------------

    def _route(self, message: _InFlight, first: int = 0) -> Awaitable[None] | None:
        """Run a message's routes from ``first`` on, as far as they go without waiting; None
        once it is settled, else what finishes it (in the device's task)."""
        try:
            if first == 0:
                enrich = self._enrich
                if enrich is not None:
                    assert message.event is not None
                    waiting = enrich(message.event)
                    if waiting is not None:
                        return self._enriched_later(message, waiting)
                done = message.done = self.recent.succeeded(message.dedupe_key)
                if done:
                    self.metrics.messages_seen_again.inc()
            return self._run(message, first)
        except Exception as error:
            return self._internal_error(message, error)

    async def _enriched_later(self, message: _InFlight, waiting: Awaitable[None]) -> None:
        """The first messages of a device the catalogue is looking up: route them once it has
        answered or ``max_wait`` ran out. Enrichment never fails a message: should the wait
        raise, the message goes on as it is."""
        try:
            await waiting
        except Exception as error:
            log.error("enrichment failed; the message goes on without it", exc_info=error)
        try:
            done = message.done = self.recent.succeeded(message.dedupe_key)
            if done:
                self.metrics.messages_seen_again.inc()
            rest = self._run(message, 0)
        except Exception as error:
            rest = self._internal_error(message, error)
        if rest is not None:
            await rest

    async def _drain(self, key: str, pending: Awaitable[None]) -> None:
        """Finish a device's message that had to wait, then the ones queued behind it.

        What it awaits never raises (failures settle their message), so the queue always moves.
        """
        queue = self._queues[key]
        try:
            while True:
                await pending
                next_pending: Awaitable[None] | None = None
                while queue and next_pending is None:
                    next_pending = self._route(queue.popleft())
                if next_pending is None:
                    break
                pending = next_pending
        finally:
            if self._queues.get(key) is queue and not queue:
                del self._queues[key]

    def _run(self, message: _InFlight, first: int) -> Awaitable[None] | None:
        """The plan from route ``first`` on, synchronously until a handler has to wait."""
        metrics, event, delivery = self.metrics, message.event, message.delivery
        assert event is not None
        only_handler, done = message.only_handler, message.done
        steps = message.plan.steps
        for index, (name, handler, matches, outage) in enumerate(steps[first:], first):
            if only_handler is not None and name != only_handler:
                continue
            if matches is not None and not matches(event):
                metrics.handler_outcome(name, UNMATCHED)
                continue
            if name in done:
                metrics.handler_outcome(name, DUPLICATE)
                continue
            started = time.perf_counter()
            if outage.down:  # wait with the others rather than add to the load on the target
                return self._resume(message, index, _WAIT_FOR_OUTAGE, started)
            pending = _start(handler, event, delivery)
            if pending is not None:  # it has to wait, or it failed: the rest runs in a task
                return self._resume(message, index, pending, started)
            self._succeeded(name, started)
        self._settle(message)
        return None

    def _succeeded(self, handler: str, started: float) -> None:
        self.metrics.handler_outcome(handler, SUCCESS, time.perf_counter() - started)

    async def _resume(
        self, message: _InFlight, index: int, pending: Awaitable[None], started: float
    ) -> None:
        """Wait for route ``index``'s attempt (retrying while it fails), then run the rest."""
        try:
            failure = await self._attempts(index, message, pending, started)
            if failure is not None:
                # Dead-lettered is settled for this handler: a redelivery must not run it again.
                await self._dead_letter(message, failure)
                message.dead_lettered = True
        except Exception as error:
            rest = self._internal_error(message, error)
        else:
            rest = self._route(message, index + 1)
        if rest is not None:
            await rest

    async def _attempts(
        self,
        index: int,
        message: _InFlight,
        pending: Awaitable[None] | None,
        started: float,
    ) -> Failure | None:
        """Await a started attempt of route ``index``, and retry until it succeeds or the policy
        gives up. Returns None on success, else the failure to dead-letter.

        ``pending`` is the started attempt (``started`` is when it began, for its duration), or
        :data:`_WAIT_FOR_OUTAGE` for a message that came while its handler was down. While the
        handler is down the message waits on the outage, which lets one message at a time
        probe the target; ordinary failures back off per message, as the policy says.
        """
        name, handler, _, outage = message.plan.steps[index]
        event, delivery = message.event, message.delivery
        assert event is not None
        first_failure = time.time() if pending is _WAIT_FOR_OUTAGE else 0.0
        attempt = 0
        probing = False
        while True:
            if pending is _WAIT_FOR_OUTAGE:
                budget = self.policy.outage_budget(time.time() - first_failure)
                turn = Turn.EXPIRED if budget is None else await outage.wait(budget)
                if turn is Turn.EXPIRED:
                    return self._gave_up(name, outage.reason, outage.detail, attempt, first_failure)
                probing = turn is Turn.PROBE
                started = time.perf_counter()
                pending = _start(handler, event, delivery)
            attempt += 1
            try:
                if pending is not None:
                    await pending
            except asyncio.CancelledError:
                if probing:
                    outage.released()
                raise
            except Exception as exc:
                error = _as_handler_error(exc, handler)
            else:
                if probing:
                    outage.reached()
                self._succeeded(name, started)
                return None
            now = time.time()
            first_failure = first_failure or now
            detail = REDACTOR(error.message)
            if error.infrastructure:
                if probing:
                    outage.probe_failed(error, detail)
                else:
                    outage.failed(error, detail)
                if self.policy.outage_budget(now - first_failure) is None:
                    self.metrics.handler_outcome(name, FAILURE, time.perf_counter() - started)
                    return Failure(
                        HANDLER_STAGE, error.reason, detail, name, attempt, first_failure, now
                    )
                self.metrics.handler_outcome(name, RETRY, time.perf_counter() - started)
                pending = _WAIT_FOR_OUTAGE
                continue
            if probing:
                outage.reached()  # it answered: the failure is this message's own
                probing = False
            delay = self.policy.next_delay(error, attempt, now - first_failure)
            if delay is None:
                self.metrics.handler_outcome(name, FAILURE, time.perf_counter() - started)
                return Failure(
                    HANDLER_STAGE, error.reason, detail, name, attempt, first_failure, now
                )
            self.metrics.handler_outcome(name, RETRY, time.perf_counter() - started)
            self._retry_log.failed(name, error, detail, message, attempt, delay)
            await asyncio.sleep(delay)
            started = time.perf_counter()
            pending = _start(handler, event, delivery)

    def _gave_up(
        self, name: str, reason: str, detail: str, attempts: int, first_failure: float
    ) -> Failure:
        """A message that waited on an outage past ``retry.infrastructure_max_time``."""
        self.metrics.handler_outcome(name, FAILURE)
        return Failure(HANDLER_STAGE, reason, detail, name, attempts, first_failure, time.time())

    # -- failures -------------------------------------------------------------------------------

    def _decode_failure(self, delivery: Delivery, error: DecodeError) -> Failure:
        try:
            em = encryption_mode(delivery.properties)
        except Exception:  # a label only: properties the codec refused may be of any shape
            em = UNKNOWN_EM
        self.metrics.decode_failures.labels(error.reason, em).inc()
        return Failure(DECODE_STAGE, error.reason, error.detail)

    def _internal_failure(self, message: _InFlight, error: Exception) -> Failure:
        """Not the message's fault, but it must not stall its device or stop the loop: kept in
        the dead-letter store (replayable once fixed), with the traceback in the log."""
        log.error(
            "internal error while handling a message; it is dead-lettered",
            message_id=message.delivery.message_id,
            device_id=message.event.device_id if message.event else None,
            exc_info=error,
        )
        return Failure(PIPELINE_STAGE, INTERNAL_ERROR, _describe(error))

    async def _dead_letter(self, message: _InFlight, failure: Failure) -> None:
        """Write durably, retrying for as long as the store is down: only then may the message
        be acknowledged. A record the store refuses for its content is written again without
        the plaintext, and says so: no message's content can keep it from the store."""
        delivery, event = message.delivery, message.event
        device_id = event.device_id if event else None
        log.warning(
            "message dead-lettered",
            stage=failure.stage,
            handler=failure.handler,
            reason=failure.reason,
            error=failure.detail,
            attempts=failure.attempts,
            message_id=delivery.message_id,
            device_id=device_id,
            partition=delivery.partition,
        )
        plaintext = None
        if event is not None and self.keep_plaintext:
            plaintext, problem = _plaintext_json(event)
            if problem is not None:
                failure.detail = f"{failure.detail}; {problem}"
        while True:
            try:
                kept = await asyncio.to_thread(
                    self.dead_letters.keep, delivery, failure, device_id, plaintext
                )
                records = await asyncio.to_thread(self.dead_letters.count)
                break
            except (DeadLetterStoreError, OSError) as exc:
                self.metrics.dead_letter_write_failures.inc()
                log.error(
                    "cannot write to the dead-letter store; the message stays unacknowledged",
                    error=_describe(exc),
                    message_id=delivery.message_id,
                    retry_in=DEAD_LETTER_RETRY_SECONDS,
                )
                await asyncio.sleep(DEAD_LETTER_RETRY_SECONDS)
            except Exception as exc:
                if plaintext is None and failure.detail.isascii():
                    raise  # nothing of the message's left to drop: a bug of ours
                log.error(
                    "the dead-letter store refused a record's content; it is kept without it",
                    error=_describe(exc),
                    message_id=delivery.message_id,
                )
                plaintext = None
                ascii_text = failure.detail.encode("ascii", "backslashreplace").decode("ascii")
                failure.detail = f"{ascii_text}; record content refused: {type(exc).__name__}"
        # A replayed record is updated once; a second failing handler gets a record of its own.
        delivery.dead_letter_id = None
        counter = self.metrics.dead_letters_seen_again if kept.again else self.metrics.dead_letters
        counter.labels(failure.stage, failure.reason).inc()
        self.metrics.dead_letter_records.set(records)
