"""``tuya-events demo``: the real pipeline on an embedded, simulated Tuya message service.

No account, no broker: virtual devices send encrypted messages (ECB and GCM) into an in-memory
source, and the same daemon that ``run`` starts handles them. Ctrl-C stops it (or --duration).
"""

from __future__ import annotations

import argparse
import secrets
import tempfile
from pathlib import Path

from tuya_events.cli import exits
from tuya_events.cli.exits import CliError
from tuya_events.config.loader import settings_from_mapping
from tuya_events.config.settings import Settings
from tuya_events.config.types import parse_listen_address
from tuya_events.observability.logging import configure_logging, get_logger

log = get_logger("tuya_events.demo")

DEMO_ACCESS_ID = "demo0access0id000000"


def add_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    parents: list[argparse.ArgumentParser],
) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the pipeline against a simulated Tuya message service (no account needed)",
        description="Run the daemon's real pipeline on virtual devices that send encrypted "
        "messages (ECB and GCM), with the log and SQLite database handlers, metrics on localhost.",
    )
    parser.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    parser.add_argument("--rate", type=float, default=5.0, help="messages per second (default 5)")
    parser.add_argument("--devices", type=int, default=6, help="virtual devices (default 6)")
    parser.add_argument(
        "--http", default="127.0.0.1:9464", help="metrics/health address (default 127.0.0.1:9464)"
    )
    parser.add_argument(
        "--state-dir", help="where the dead-letter store goes (default: a temp dir)"
    )
    parser.add_argument("--seed", type=int, default=None, help="random seed, for a repeatable run")
    parser.set_defaults(handler=run)


def demo_settings(
    state_dir: Path, http: str, access_secret: str | None = None, openapi_url: str | None = None
) -> Settings:
    """The demo's configuration; with ``openapi_url`` (its fake cloud), devices are enriched."""
    tree = {
        "tuya": {
            "access_id": DEMO_ACCESS_ID,
            "access_secret": access_secret or secrets.token_hex(16),
            "pulsar_url": "memory://simulated",
            "sign_check": "enforce",
            **({"openapi_url": openapi_url} if openapi_url else {}),
        },
        "enrichment": {"enabled": openapi_url is not None},
        "http": {"listen": http},
        "dead_letter": {"path": str(state_dir / "dead-letters.sqlite3")},
        "retry": {"initial_backoff": "100ms", "max_backoff": "2s"},
        "consumer": {"shutdown_timeout": "5s"},
        "handlers": [
            {"type": "log"},
            {"type": "database", "path": str(state_dir / "events.sqlite3")},
        ],
    }
    return settings_from_mapping(tree, {}, source="demo")


def status_page_line(host: str, port: int) -> str:
    """Where the status page is, as the first line the demo prints."""
    from tuya_events.observability.status_page import is_loopback

    shown = f"[{host}]" if ":" in host else host
    if port == 0:
        return f"status page: http://{shown}:<port>/ (the port is in the 'http listening' line)"
    if not is_loopback(host):
        return (
            f"status page: off on http://{shown}:{port}/: beyond loopback it needs http.token, "
            "which the demo does not set (run it with --http 127.0.0.1:PORT to see it)"
        )
    return f"status page: http://{shown}:{port}/"


def run(args: argparse.Namespace) -> int:
    from tuya_events.cli.demo_cloud import DemoCloud
    from tuya_events.cli.run import run_daemon
    from tuya_events.daemon import ListenerUnavailable
    from tuya_events.transport.simulator import SimulatedSource
    from tuya_events.tuya.codec import TuyaEncoder

    host, port = parse_listen_address(args.http)
    # First, before any log line: the page to open (the embedded default shows its value).
    print(status_page_line(host, port), flush=True)
    state_dir = Path(args.state_dir or tempfile.mkdtemp(prefix="tuya-events-demo-"))
    secret = secrets.token_hex(16)
    encoder = TuyaEncoder(DEMO_ACCESS_ID, secret)
    source = SimulatedSource(encoder, args.rate, devices=args.devices, seed=args.seed)
    # The virtual devices' cloud: names, categories, specifications, as Tuya's OpenAPI gives them.
    cloud = DemoCloud(source.simulator, DEMO_ACCESS_ID, secret)
    openapi_url = cloud.bind()
    source.services.append(cloud)
    settings = demo_settings(state_dir, args.http, secret, openapi_url)
    configure_logging(settings.logging.level, settings.logging.format)
    log.info(
        "demo: simulated Tuya message service",
        devices=len(source.simulator.devices),
        rate=args.rate,
        metrics=f"http://{host}:{port}/metrics",
        openapi=openapi_url,
        catalogue=str(state_dir / "catalogue.sqlite3"),
        dead_letters=settings.dead_letter.path,
        database=str(state_dir / "events.sqlite3"),
        stop="Ctrl-C" if args.duration is None else f"after {args.duration:g}s",
    )
    try:
        code = run_daemon(settings, source, stop_after=args.duration)
    except ListenerUnavailable as exc:
        raise CliError(f"{exc}; pick another with --http HOST:PORT", exits.UNAVAILABLE) from None
    log.info(
        "demo finished",
        messages_sent=source.simulator.sent,
        acknowledged=len(source.acknowledged),
        still_queued=source.queued,
        received_not_acknowledged=len(source.unacknowledged) - source.queued,
        dead_letters=settings.dead_letter.path,
        inspect=f"tuya-events dlq list --store {settings.dead_letter.path}",
    )
    return code
