"""The daemon's lifecycle: start everything, receive until told to stop, drain, close.

SIGTERM or SIGINT: stop receiving, let in-flight messages finish within ``shutdown_timeout``,
close cleanly; what did not finish stays unacknowledged and the broker delivers it again.
A second signal exits at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import errno
import gc
import os
import signal
from collections.abc import Awaitable, Callable, Sequence

from tuya_events.assembly import (
    build_pipeline,
    enrichment,
    guarded_routes,
    start_handler,
    started_handlers,
    stop_handlers,
)
from tuya_events.catalogue.catalogue import Catalogue
from tuya_events.config.errors import ConfigError
from tuya_events.config.settings import Settings, state_directory
from tuya_events.config.transport_security import log_insecure_transports
from tuya_events.delivery import Delivery
from tuya_events.handlers.base import Handler, HandlerContext
from tuya_events.handlers.shared_client import project_client
from tuya_events.observability.health import Health
from tuya_events.observability.http import HttpServer
from tuya_events.observability.logging import get_logger, set_log_level
from tuya_events.observability.metrics import Metrics
from tuya_events.observability.notices import NoticeWatcher
from tuya_events.observability.status_page import StatusPage
from tuya_events.observability.status_state import LatestValues, SharedTap
from tuya_events.observability.systemd import SystemdNotifier
from tuya_events.observability.tail import LiveTail
from tuya_events.pipeline.pipeline import DeadLetterSink
from tuya_events.pipeline.policy import RetryPolicy
from tuya_events.pipeline.routes import Route, build_routes
from tuya_events.reload import Reload, diff_handlers, restart_needed
from tuya_events.resync.record import FILE_NAME as RECORD_FILE
from tuya_events.resync.record import ConsumptionRecord
from tuya_events.resync.resync import ResyncDelivery, Resyncer
from tuya_events.resync.watch import GapWatcher
from tuya_events.transport.base import Source
from tuya_events.tuya.codec import TuyaEncoder

log = get_logger("tuya_events.daemon")

CONNECTION_CHECK_SECONDS = 1.0
CAPACITY_WAIT_SECONDS = 1.0


def _tune_gc() -> None:
    """Start-up objects never die: freeze them, and collect the young generation less often.

    Per message the daemon allocates short-lived objects only; with the default threshold the
    collector ran 10 times per 1,000 messages, scanning everything start-up made (measured in
    benchmarks/README.md). Reference counting still frees almost everything at once.
    """
    gc.freeze()
    _, second, third = gc.get_threshold()
    gc.set_threshold(10_000, second, third)


class ListenerUnavailable(Exception):
    """The HTTP listener's address is taken (by an old instance, say): worth a restart later."""


class Stopped(enum.Enum):
    """How a run ended; the command maps it to an exit code."""

    DRAINED = "drained"  # every received message was finished
    TIMED_OUT = "timed_out"  # the shutdown timeout left some unacknowledged, for redelivery


class Daemon:
    def __init__(
        self,
        settings: Settings,
        source: Source,
        routes: Sequence[Route],
        dead_letters: DeadLetterSink,
        metrics: Metrics | None = None,
        http: bool | None = None,
        context: HandlerContext | None = None,
        load: Callable[[], Settings] | None = None,
    ) -> None:
        self.settings = settings
        self.source = source
        self.routes = list(routes)
        self.dead_letters = dead_letters
        self.metrics = metrics or Metrics()
        # What the handlers were built with (their shared OpenAPI client is the catalogue's).
        self.context = context or HandlerContext(settings, self.metrics)
        self.catalogue: Catalogue | None = None
        self.gaps: GapWatcher | None = None
        # SIGHUP reads the configuration again through ``load`` (None: reloading is off).
        self._load = load
        self._running: list[Handler] = []  # started handlers, as started_handlers stops them
        self._reloading = asyncio.Lock()
        self.pipeline = build_pipeline(
            settings, self.routes, dead_letters, self._acknowledge, self.metrics
        )
        self.health = Health(
            connected=source.connected,
            last_message_at=lambda: self.pipeline.last_message_at,
            ready_max_silence=settings.http.ready_max_silence,
        )
        self.http: HttpServer | None = None
        self.tail: LiveTail | None = None  # ``/tail``: taps the pipeline while someone watches
        self.latest: LatestValues | None = None  # the status page's latest values per device
        if settings.http.enabled if http is None else http:
            host, port = settings.http.listen
            self.http = HttpServer(host, port, self.metrics, self.health)
            self.latest = LatestValues()
            # One tap: the latest values always, the tail's beside them while someone watches.
            taps = SharedTap(self.pipeline, self.latest.observe)
            self.tail = LiveTail.from_settings(settings, taps)
            self.tail.serve_on(self.http)
            self.http.add_routes(StatusPage.of(self, self.latest).register)
        self.systemd = SystemdNotifier()
        self._stop = asyncio.Event()
        self._signals = 0

    # -- hooks --------------------------------------------------------------------------------

    def _acknowledge(self, delivery: Delivery, dead_lettered: bool) -> None:
        if type(delivery) is ResyncDelivery:  # made here from the OpenAPI: nothing to acknowledge
            return
        self.source.acknowledge(delivery)

    def request_stop(self, signum: int | None = None) -> None:
        self._signals += 1
        if self._signals > 1:
            log.warning("second signal: exiting at once; unfinished messages will be redelivered")
            os._exit(128 + (signum or signal.SIGTERM))
        log.info(
            "stopping: no new messages; finishing those in flight",
            in_flight=self.pipeline.in_flight,
        )
        self.health.stopping = True
        self.systemd.stopping(f"stopping: finishing {self.pipeline.in_flight} in-flight messages")
        self._stop.set()

    # -- lifecycle ----------------------------------------------------------------------------

    async def run(self, stop_after: float | None = None) -> Stopped:
        """Run until stopped (or for ``stop_after`` seconds); say how it ended.

        Raises :class:`~tuya_events.assembly.HandlerStartError` when a handler cannot start.
        """
        log_insecure_transports(self.settings)
        loop = asyncio.get_running_loop()
        if stop_after is not None:
            loop.call_later(stop_after, self.request_stop)
        for signum in (signal.SIGTERM, signal.SIGINT):
            # Outside the main thread (in-process tests) there are no signals: they call
            # request_stop directly.
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(signum, self.request_stop, signum)
        if self._load is not None:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(signal.SIGHUP, self.request_reload)
        if self.http is not None:
            await self._listen(self.http)
        try:
            async with started_handlers(self.routes) as running:
                self._running = running
                await self.source.start()
                # After the source: the catalogue's first calls may go to a service the source
                # brings up (the demo's cloud); before the first message is received.
                notices = NoticeWatcher(self.metrics) if self.settings.tuya.notices else None
                watch = notices.observe if notices is not None else None
                async with enrichment(
                    self.settings, self.context, self.pipeline, watch
                ) as catalogue:
                    self.catalogue = catalogue
                    self.gaps = self._gap_watcher(catalogue)
                    if self.gaps is not None:
                        self.gaps.started()
                    self.health.started = True
                    monitor = loop.create_task(self._watch_connection())
                    names = [route.name for route in self.routes]
                    log.info("consuming", handlers=names, enrichment=catalogue is not None)
                    self.systemd.ready(f"consuming; handlers: {', '.join(names)}")
                    _tune_gc()
                    try:
                        await self._receive_until_stopped()
                    finally:
                        monitor.cancel()
                        if self.gaps is not None:
                            await self.gaps.close(self.source.connected())
                    return await self._drain()
        finally:
            await self.source.close()
            if self.http is not None:
                await self.http.stop()
            self.systemd.close()

    # -- reload -------------------------------------------------------------------------------

    def request_reload(self) -> Awaitable[Reload]:
        """SIGHUP: read the configuration again and apply it between messages (a task)."""
        return asyncio.get_running_loop().create_task(self.reload())

    async def reload(self) -> Reload:
        async with self._reloading:
            result = await self._reload()
        self.metrics.config_reloads.labels(result.outcome).inc()
        self.metrics.config_reload_failed.set(0 if result.outcome == "applied" else 1)
        return result

    async def _reload(self) -> Reload:
        assert self._load is not None
        try:
            new = await asyncio.to_thread(self._load)
        except ConfigError as error:
            problems = [f"{key}: {problem}" for key, problem in error.problems]
            log.error(
                "configuration not reloaded: it does not validate; still running on the old one",
                problems=problems,
            )
            return Reload("invalid", problems)
        except Exception as error:  # an unreadable file, say
            log.error("configuration not reloaded; still running on the old one", error=str(error))
            return Reload("invalid", [str(error)])
        fixed = restart_needed(self.settings, new)
        if fixed:
            log.error(
                "configuration not reloaded: these keys need a restart; still running on the "
                "old configuration",
                keys=fixed,
            )
            return Reload("refused", fixed)
        added, removed, changed, kept = diff_handlers(self.settings, new)
        context = HandlerContext(new, self.metrics, shared=self.context.shared)
        try:
            built = build_routes(new, context)
        except ConfigError as error:
            problems = [f"{key}: {problem}" for key, problem in error.problems]
            log.error("configuration not reloaded: a handler is wrong", problems=problems)
            return Reload("invalid", problems)
        old = {route.name: route for route in self.routes}
        fresh = [route for route in built if route.name not in kept]
        ledger = next((getattr(r.handler, "ledger", None) for r in self.routes), None)
        fresh = guarded_routes(new, fresh, self.metrics, ledger)
        fresh_by_name = {route.name: route for route in fresh}
        started: list[Handler] = []
        try:
            for route in fresh:
                await start_handler(route)
                started.append(route.handler)
        except Exception as exc:
            await stop_handlers(started)
            log.error("configuration not reloaded: a handler could not start", error=str(exc))
            return Reload("failed", [str(exc)])
        routes = [
            Route(old[route.name].handler, route.matches)
            if route.name in kept
            else fresh_by_name[route.name]
            for route in built
        ]
        retired = [old[name].handler for name in (*removed, *changed)]
        # The messages on their way now are those the retired handlers may still see.
        in_progress = self.pipeline.unfinished() if retired else None
        self.pipeline.replace_routes(routes)
        self.routes = routes
        self._running.extend(started)
        self._apply_in_place(new)
        self.settings, self.context = new, context
        log.info(
            "configuration reloaded",
            added=added,
            removed=removed,
            changed=changed,
            kept=kept,
        )
        if in_progress is not None:
            asyncio.get_running_loop().create_task(self._retire(retired, in_progress))
        return Reload("applied", [], added, removed, changed, kept)

    def _apply_in_place(self, new: Settings) -> None:
        """The settings that change without touching a handler."""
        if new.logging.level != self.settings.logging.level:
            set_log_level(new.logging.level)  # logging.format needs a restart
        self.pipeline.policy = RetryPolicy(new.retry)
        if new.openapi != self.settings.openapi:
            entry = project_client(self.context)
            entry.options = new.openapi
            if entry.client is not None:
                entry.client.retune(new.openapi)
        if self.catalogue is not None:
            self.catalogue.settings = new.catalogue
            self.catalogue.max_wait = new.enrichment.max_wait
        if self.gaps is not None:
            self.gaps.settings = new.resync

    async def _retire(self, handlers: list[Handler], in_progress: Awaitable[None]) -> None:
        """Stop handlers no longer configured, once the messages that started with them are
        done."""
        await in_progress
        for handler in handlers:
            if handler in self._running:
                self._running.remove(handler)
        await stop_handlers(handlers)
        log.info("handlers retired after the reload", handlers=[h.name for h in handlers])

    def _gap_watcher(self, catalogue: Catalogue | None) -> GapWatcher:
        """Gaps are always measured (the metric, the alert); a resync needs the catalogue (the
        devices to ask about) and ``resync.enabled``."""
        settings = self.settings
        resyncer = None
        if catalogue is not None and settings.resync.enabled:
            tuya = settings.tuya
            resyncer = Resyncer(
                catalogue,
                TuyaEncoder(tuya.access_id, tuya.access_secret.get_secret_value()),
                self.pipeline.submit,
                self.pipeline.wait_for_capacity,
                self.metrics,
                retry_delays=settings.resync.retry_delays,
            )
        record = ConsumptionRecord(
            state_directory(settings) / RECORD_FILE, settings.resync.record_interval
        )
        return GapWatcher(settings.resync, record, resyncer, self.metrics)

    async def _listen(self, http: HttpServer) -> None:
        """Start the HTTP listener; an address it cannot take is the operator's to fix."""
        address = f"{http.host}:{http.port}"
        try:
            await http.start()
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:  # may clear once an old instance is gone
                raise ListenerUnavailable(
                    f"http.listen: {address} is in use (another instance, or another program)"
                ) from None
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            raise ConfigError([("http.listen", f"cannot listen on {address}: {reason}")]) from None
        log.info("http listening", address=f"{http.host}:{http.port}")

    async def _receive_until_stopped(self) -> None:
        pipeline, source, health, systemd = self.pipeline, self.source, self.health, self.systemd
        while not self._stop.is_set():
            health.beat()
            systemd.watchdog()
            if pipeline.in_flight >= pipeline.max_in_flight:
                try:
                    await asyncio.wait_for(pipeline.wait_for_capacity(), CAPACITY_WAIT_SECONDS)
                except asyncio.TimeoutError:
                    continue
            batch = await source.receive_batch()
            for delivery in batch:
                pipeline.submit(delivery)

    async def _drain(self) -> Stopped:
        timeout = self.settings.consumer.shutdown_timeout
        if await self.pipeline.join(timeout):
            log.info("stopped cleanly: every received message was finished")
            return Stopped.DRAINED
        left = self.pipeline.in_flight
        await self.pipeline.cancel()
        log.warning(
            "shutdown timeout: unfinished messages stay unacknowledged and will be redelivered",
            unfinished=left,
            shutdown_timeout=timeout,
        )
        return Stopped.TIMED_OUT

    async def _watch_connection(self) -> None:
        was_connected: bool | None = None
        while True:
            connected = self.source.connected()
            self.metrics.broker_connected.set(1 if connected else 0)
            if connected != was_connected:
                if connected:
                    log.info("connected to the message service")
                    self.systemd.status("consuming: connected to the message service")
                    if was_connected is False and self.gaps is not None:
                        self.gaps.reconnected()
                elif was_connected is not None:
                    log.warning("lost the connection to the message service; reconnecting")
                    self.systemd.status("reconnecting: lost the connection to the message service")
                was_connected = connected
            if connected and self.gaps is not None:
                await self.gaps.consuming()
            await asyncio.sleep(CONNECTION_CHECK_SECONDS)
