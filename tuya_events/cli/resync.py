"""``tuya-events resync``: the devices' current status, now, through the configured handlers.

What the daemon does by itself after a gap longer than ``resync.after``, on demand: after
restoring a database, after a long outage of a handler's target, or to fill a new database.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import dataclass
from typing import Any

import orjson

from tuya_events.cli.exits import FAILURE, SOFTWARE, TEMPFAIL, UNAVAILABLE, CliError
from tuya_events.config import ConfigError, load_settings
from tuya_events.config.secrets import secret_values
from tuya_events.config.settings import Settings
from tuya_events.observability.logging import configure_logging
from tuya_events.observability.redact import REDACTOR

# A command should not sit for minutes: two quick retries, then the failures are reported.
RETRY_DELAYS = (2.0, 5.0)


def add_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    parents: list[argparse.ArgumentParser],
) -> None:
    parser = subparsers.add_parser(
        "resync",
        parents=parents,
        help="read every device's current status from the OpenAPI and run it through the handlers",
        description="One status event per device (marked source: resync) through the configured "
        "handlers, as the daemon does after a gap longer than Tuya keeps messages. Exit codes: 0 "
        "every device resynced and handled, 1 some failed (each is named), 69 the OpenAPI "
        "refused, 75 the catalogue is paused after a quota error, 78 configuration.",
    )
    parser.add_argument("--device", action="append", metavar="ID", help="only this device (repeat)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(handler=run)


@dataclass
class _Outcome:
    report: Any
    handled: int = 0
    dead_lettered: int = 0


def run(args: argparse.Namespace) -> int:
    from tuya_events.assembly import HandlerStartError

    settings = load_settings(args.config)
    REDACTOR.add(secret_values(settings))
    configure_logging(settings.logging.level, settings.logging.format)  # stderr: stdout is ours
    progress = not args.no_progress and sys.stderr.isatty()
    try:
        outcome = asyncio.run(_resync(settings, args.device, progress))
    except HandlerStartError as exc:
        raise CliError(str(exc), SOFTWARE) from None
    report = outcome.report
    summary = {
        "devices": report.devices,
        "resynced": report.resynced,
        "online_changes": report.online_changes,
        "handled": outcome.handled,
        "dead_lettered": outcome.dead_lettered,
        "calls": report.calls,
        "failures": report.failures,
        "paused": report.paused,
    }
    if args.json:
        print(orjson.dumps(summary).decode())
    else:
        print(
            f"resync: {report.resynced} of {report.devices} devices resynced "
            f"({report.online_changes} online changes), {outcome.handled} events handled, "
            f"{outcome.dead_lettered} dead-lettered, {report.calls} OpenAPI calls",
            file=sys.stderr,
        )
        for device_id, reason in sorted(report.failures.items()):
            print(f"  failed: {device_id}: {reason}", file=sys.stderr)
    if report.paused:
        print("resync: stopped: the catalogue is paused after a quota error", file=sys.stderr)
        return TEMPFAIL
    return FAILURE if report.failures or outcome.dead_lettered else 0


async def _resync(settings: Settings, device_ids: list[str] | None, progress: bool) -> _Outcome:
    from tuya_events.assembly import (
        build_pipeline,
        guarded_routes,
        opened_catalogue,
        started_handlers,
    )
    from tuya_events.catalogue.enrich import Enricher
    from tuya_events.deadletter.errors import DeadLetterStoreError
    from tuya_events.deadletter.store import DeadLetterStore
    from tuya_events.delivery import Delivery
    from tuya_events.handlers import HandlerContext
    from tuya_events.observability.metrics import Metrics
    from tuya_events.observability.progress import ProgressBar
    from tuya_events.openapi.errors import OpenApiError
    from tuya_events.pipeline.routes import build_routes
    from tuya_events.resync.resync import COMMAND, Resyncer
    from tuya_events.tuya.codec import TuyaEncoder

    metrics = Metrics()
    context = HandlerContext(settings, metrics)
    routes = guarded_routes(settings, build_routes(settings, context), metrics)
    store = DeadLetterStore(settings.dead_letter.path, settings.dead_letter.store_plaintext)
    try:
        store.open()
    except DeadLetterStoreError as exc:
        raise ConfigError([("dead_letter.path", str(exc))]) from None
    outcome = _Outcome(report=None)

    def acknowledge(delivery: Delivery, dead_lettered: bool) -> None:
        outcome.handled += 1
        outcome.dead_lettered += dead_lettered

    pipeline = build_pipeline(settings, routes, store, acknowledge, metrics)
    tuya = settings.tuya
    encoder = TuyaEncoder(tuya.access_id, tuya.access_secret.get_secret_value())
    bar = ProgressBar("resync", None, progress)
    with store:
        async with (
            opened_catalogue(settings, context, background=False) as catalogue,
            started_handlers(routes),
        ):
            if settings.enrichment.enabled:
                pipeline.set_enrichment(Enricher(catalogue, metrics))
            try:
                if not catalogue.devices and not device_ids:
                    await catalogue.sync()  # an empty catalogue: learn the project first
                resyncer = Resyncer(
                    catalogue,
                    encoder,
                    pipeline.submit,
                    pipeline.wait_for_capacity,
                    metrics,
                    retry_delays=RETRY_DELAYS,
                )
                outcome.report = await resyncer.run(
                    COMMAND,
                    device_ids=device_ids,
                    progress=lambda done, total: bar.show(done, total=total),
                )
            except OpenApiError as error:
                raise CliError(REDACTOR(error.describe()), UNAVAILABLE) from None
            await pipeline.join()
            bar.show(outcome.report.resynced, final=True)
    return outcome
