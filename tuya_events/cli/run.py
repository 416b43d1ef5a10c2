"""``tuya-events run``: the daemon."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable

from tuya_events.assembly import HandlerStartError, guarded_routes
from tuya_events.cli import exits
from tuya_events.config import ConfigError, load_settings
from tuya_events.config.secrets import secret_values
from tuya_events.config.settings import Settings
from tuya_events.daemon import Daemon, ListenerUnavailable, Stopped
from tuya_events.handlers import HandlerContext
from tuya_events.observability.logging import configure_logging, get_logger
from tuya_events.observability.metrics import Metrics
from tuya_events.observability.redact import REDACTOR
from tuya_events.pipeline.routes import build_routes
from tuya_events.transport.base import Source

log = get_logger("tuya_events.cli.run")

EXIT_CODES = {Stopped.DRAINED: exits.OK, Stopped.TIMED_OUT: exits.TEMPFAIL}


def exit_code(stopped: Stopped) -> int:
    """0 when every received message was finished, 75 when some are left for redelivery."""
    return EXIT_CODES[stopped]


def add_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    parents: list[argparse.ArgumentParser],
) -> None:
    parser = subparsers.add_parser(
        "run",
        parents=parents,
        help="consume the Tuya message service and run the handlers (the daemon)",
        description="Consume Tuya's message service until SIGTERM/SIGINT. Exit codes: 0 stopped "
        "cleanly, 69 the service refused or is unreachable, 75 stopped with unfinished messages "
        "(they will be redelivered), 78 configuration error.",
    )
    parser.add_argument("--consumer-name", help="Pulsar consumer name (default: generated)")
    parser.set_defaults(handler=run)


def run_daemon(
    settings: Settings,
    source: Source,
    stop_after: float | None = None,
    load: Callable[[], Settings] | None = None,
) -> int:
    """Shared by ``run`` and ``demo``: build handlers and the store, run until stopped.
    ``load`` reads the configuration again on SIGHUP (``run``: the same file)."""
    from tuya_events.deadletter.errors import DeadLetterStoreError
    from tuya_events.deadletter.store import DeadLetterStore

    REDACTOR.add(secret_values(settings))
    metrics = Metrics()
    context = HandlerContext(settings, metrics)
    routes = guarded_routes(settings, build_routes(settings, context), metrics)
    store = DeadLetterStore(settings.dead_letter.path, settings.dead_letter.store_plaintext)
    try:
        store.open()
    except DeadLetterStoreError as exc:
        raise ConfigError([("dead_letter.path", str(exc))]) from None
    with store:
        metrics.dead_letter_records.set(store.count())
        daemon = Daemon(settings, source, routes, store, metrics, context=context, load=load)
        return exit_code(asyncio.run(daemon.run(stop_after)))


def source_for(settings: Settings, consumer_name: str | None) -> tuple[Source, type[Exception]]:
    """The source ``tuya.transport`` names, and the exception it raises when the service
    refuses it or cannot be reached. Imported here: the WebSocket one needs no pulsar-client."""
    if settings.tuya.transport == "websocket":
        from tuya_events.transport import websocket

        return websocket.WebSocketSource(settings, consumer_name), websocket.SourceUnavailable
    try:
        from tuya_events.transport import pulsar
    except ImportError as exc:  # pulsar-client has no wheel for this machine (32-bit ARM, ...)
        raise ConfigError(
            [
                (
                    "tuya.transport",
                    f"native needs pulsar-client, which cannot be imported here ({exc}): "
                    "pip install 'tuya-events[native]' where it has a wheel, or set "
                    "tuya.transport: websocket (docs/transports.md)",
                )
            ]
        ) from None
    return pulsar.PulsarSource(settings, consumer_name=consumer_name), pulsar.SourceUnavailable


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    configure_logging(settings.logging.level, settings.logging.format)
    source, unavailable = source_for(settings, args.consumer_name)
    try:
        return run_daemon(settings, source, load=lambda: load_settings(args.config))
    except HandlerStartError as exc:
        log.error("cannot start", error=str(exc))
        return exits.SOFTWARE
    except (unavailable, ListenerUnavailable) as exc:
        message = REDACTOR(str(exc))
        log.error("cannot consume", error=message)
        if not sys.stderr.isatty():
            print(f"error: {message}", file=sys.stderr)
        return exits.UNAVAILABLE
