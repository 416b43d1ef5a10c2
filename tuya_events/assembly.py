"""One way to put the daemon's parts together, for every command that runs messages through
handlers: ``run`` and ``demo`` (through :class:`~tuya_events.daemon.Daemon`), ``dlq replay``, and
the commands after them.

Each builds its codec and pipeline with :func:`build_pipeline` and starts and stops its handlers
with :func:`started_handlers`, so none can forget a piece: the sign-mismatch report, the dedupe
cache size, the plaintext setting, stopping what was started when a later handler fails.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from tuya_events.catalogue.catalogue import Catalogue
from tuya_events.catalogue.directory import Directory
from tuya_events.catalogue.store import CatalogueStore, CatalogueStoreError
from tuya_events.config.errors import ConfigError
from tuya_events.config.settings import Settings, catalogue_path, ledger_dsn
from tuya_events.delivery import Delivery
from tuya_events.handlers.base import Handler, HandlerContext, HandlerError
from tuya_events.handlers.shared_client import project_client
from tuya_events.observability.logging import get_logger
from tuya_events.observability.metrics import Metrics
from tuya_events.observability.redact import REDACTOR
from tuya_events.pipeline.pipeline import DeadLetterSink, Pipeline
from tuya_events.pipeline.policy import RetryPolicy
from tuya_events.pipeline.routes import Route
from tuya_events.tuya.codec import TuyaCodec, parse_protocol
from tuya_events.tuya.events import Event

log = get_logger("tuya_events.assembly")

SIGN_MISMATCHES_LOGGED = 10  # a wrong formula would otherwise flood the log


class HandlerStartError(Exception):
    """A handler could not start for a reason other than an outage; the command cannot run."""

    def __init__(self, handler: str, detail: str) -> None:
        super().__init__(f"handler {handler!r} could not start: {detail}")
        self.handler = handler


class SignMismatchReport:
    """``sign_check: log``: every mismatch counted, the first few logged."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._logged = 0

    def __call__(self, envelope: dict[str, Any]) -> None:
        self._metrics.sign_mismatches.inc()
        if self._logged < SIGN_MISMATCHES_LOGGED:
            self._logged += 1
            log.warning(
                "envelope sign does not match (sign_check: log)",
                protocol=parse_protocol(envelope.get("protocol")),  # never a nested value
            )


def build_codec(settings: Settings, metrics: Metrics) -> TuyaCodec:
    return TuyaCodec(
        settings.tuya.access_secret.get_secret_value(),
        sign_check=settings.tuya.sign_check,
        on_sign_mismatch=SignMismatchReport(metrics),
    )


def build_pipeline(
    settings: Settings,
    routes: Sequence[Route],
    dead_letters: DeadLetterSink,
    acknowledge: Callable[[Delivery, bool], None],
    metrics: Metrics,
) -> Pipeline:
    """The codec and the pipeline exactly as the configuration asks, whoever runs them."""
    return Pipeline(
        build_codec(settings, metrics),
        routes,
        dead_letters,
        acknowledge,
        RetryPolicy(settings.retry),
        metrics,
        max_in_flight=settings.consumer.max_in_flight,
        dedupe_capacity=settings.consumer.dedupe_cache_size,
        keep_plaintext=settings.dead_letter.store_plaintext,
    )


GUARDED_BY_DEFAULT = ("webhook", "pulsar", "action")  # side effects that must not repeat


def guarded_routes(
    settings: Settings, routes: Sequence[Route], metrics: Metrics, ledger: Any = None
) -> list[Route]:
    """With ``ledger:`` set, the routes whose handlers must run once across instances run
    through the shared dedupe ledger (one ledger, one pool, for all of them: ``ledger``, the
    running one, when a reload adds handlers)."""
    ledger_settings = settings.ledger
    dsn = ledger_dsn(settings)
    if dsn is None:
        return list(routes)
    from tuya_events.pipeline.ledger import Ledger, LedgerGuard

    if ledger is None:
        ledger = Ledger(dsn, ledger_settings, metrics)
    names = ledger_settings.handlers
    if names is None:
        types = dict(
            zip(settings.handler_names(), (h.type for h in settings.handlers), strict=True)
        )
        names = [name for name, kind in types.items() if kind in GUARDED_BY_DEFAULT]
    return [
        Route(LedgerGuard(route.handler, ledger, metrics), route.matches)
        if route.name in names
        else route
        for route in routes
    ]


async def start_handler(route: Route) -> None:
    """Start one route's handler. An outage (:class:`HandlerError`) is like one later: it counts
    as started and its events wait and are retried; anything else raises
    :class:`HandlerStartError` naming the handler."""
    try:
        await route.handler.start()
    except (ConfigError, asyncio.CancelledError):
        raise
    except HandlerError as exc:
        log.warning(
            "handler could not start; its events will be retried",
            handler=route.name,
            reason=exc.reason,
            error=REDACTOR(exc.message),
        )
    except Exception as exc:
        raise HandlerStartError(route.name, REDACTOR(f"{type(exc).__name__}: {exc}")) from exc


async def stop_handlers(handlers: Sequence[Handler]) -> None:
    """Stop these, in reverse; a failure is logged and the others still stop."""
    for handler in reversed(handlers):
        try:
            await handler.stop()
        except Exception as exc:
            log.error(
                "handler failed to stop cleanly",
                handler=handler.name,
                error=REDACTOR(f"{type(exc).__name__}: {exc}"),
            )


@contextlib.asynccontextmanager
async def started_handlers(routes: Sequence[Route]) -> AsyncIterator[list[Handler]]:
    """Start every route's handler in order (:func:`start_handler`); on leaving, stop those in
    the yielded list (those that started, and whatever the caller added), in reverse."""
    started: list[Handler] = []
    try:
        for route in routes:
            await start_handler(route)
            started.append(route.handler)
        yield started
    finally:
        await stop_handlers(started)


@contextlib.asynccontextmanager
async def opened_catalogue(
    settings: Settings, context: HandlerContext | None, *, background: bool = True
) -> AsyncIterator[Catalogue]:
    """The device catalogue from its file; with a ``context``, able to ask the OpenAPI through
    the project's shared client (and, with ``background``, refreshing itself as it runs).
    Without one (``devices list``, ``decrypt``) it only reads what is stored: no call."""
    path = catalogue_path(settings)
    catalogue = Catalogue(
        CatalogueStore(path),
        None,
        settings.catalogue,
        context.metrics if context is not None else None,
        max_wait=settings.enrichment.max_wait,
    )
    entry = project_client(context) if context is not None else None
    client = None
    try:
        if entry is not None and context is not None:
            client = await entry.acquire(settings, context.metrics)
            catalogue.directory = Directory(
                client,
                batch_size=settings.catalogue.batch_size,
                family=settings.catalogue.api_family,
                on_call=catalogue.count_call,
            )
        try:
            await catalogue.open()
        except CatalogueStoreError as exc:
            key = "catalogue.path" if settings.catalogue.path else "state.directory"
            raise ConfigError([(key, str(exc))]) from None
        if background and entry is not None:
            catalogue.start(sync_first=settings.catalogue.sync_on_start)
        try:
            yield catalogue
        finally:
            await catalogue.close()
    finally:
        if entry is not None and client is not None:
            await entry.release()


def before_routing(
    enrich: Callable[[Event], Awaitable[None] | None] | None,
    notices: Callable[[Event], None] | None,
) -> Callable[[Event], Awaitable[None] | None] | None:
    """The pipeline's step before routing: notices watched (they return at once for other
    kinds), then enrichment; None when neither is on, so the pipeline skips the step."""
    if notices is None:
        return enrich
    if enrich is None:

        def watch_only(event: Event) -> None:
            notices(event)

        return watch_only
    enriching = enrich  # narrowed for the closure

    def watch_then_enrich(event: Event) -> Awaitable[None] | None:
        notices(event)
        return enriching(event)

    return watch_then_enrich


@contextlib.asynccontextmanager
async def enrichment(
    settings: Settings,
    context: HandlerContext,
    pipeline: Pipeline,
    notices: Callable[[Event], None] | None = None,
) -> AsyncIterator[Catalogue | None]:
    """The running catalogue feeding ``pipeline``'s enrichment, as ``enrichment:`` says;
    None when it is off (events then carry no ``device``, exactly as before it existed).
    ``notices`` (the notice watcher's ``observe``) sees every event first."""
    if not settings.enrichment.enabled:
        pipeline.set_enrichment(before_routing(None, notices))
        try:
            yield None
        finally:
            pipeline.set_enrichment(None)
        return
    from tuya_events.catalogue.enrich import Enricher

    async with opened_catalogue(settings, context) as catalogue:
        pipeline.set_enrichment(before_routing(Enricher(catalogue, context.metrics), notices))
        try:
            yield catalogue
        finally:
            pipeline.set_enrichment(None)
