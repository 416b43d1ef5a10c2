"""``tuya-events doctor``: say exactly why no messages arrive.

Exit 0 when no check failed, 1 otherwise (an invalid configuration is a failed check too, so a
script needs to read only one code). ``--json`` prints the same results as one JSON document.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from tuya_events.config.types import parse_duration
from tuya_events.doctor import GROUPS
from tuya_events.observability.logging import configure_logging


def _duration(text: str) -> float:
    try:
        seconds: float = parse_duration(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return seconds


def _region_table(text: str) -> dict[str, str]:
    """``--openapi-urls FILE``: a JSON object of region name -> OpenAPI URL (for tests)."""
    try:
        table = json.loads(Path(text).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise argparse.ArgumentTypeError(f"{text}: {error}") from None
    if not isinstance(table, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in table.items()
    ):
        raise argparse.ArgumentTypeError(f"{text}: must hold a JSON object of name -> URL")
    return table


def add_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    parents: list[argparse.ArgumentParser],
) -> None:
    parser = subparsers.add_parser(
        "doctor",
        parents=parents,
        help="check everything that makes messages arrive, and say what to fix",
        description="Check, in order: the configuration, the clock, the OpenAPI key pair and "
        "its data center, the cloud project and its services, the message service (login, a "
        "standby subscription that takes nothing from a running daemon, one message within "
        "--wait, never acknowledged), every handler's target (nothing is sent), and the "
        "dead-letter and state directories. One line per check, the fix under each failure. "
        "Exit 0 when nothing failed, 1 otherwise.",
        epilog="docs/troubleshooting.md explains every check and Tuya's error codes.",
    )
    parser.add_argument(
        "--wait",
        type=_duration,
        default=60.0,
        metavar="DURATION",
        help="how long to wait for a message (default 60s; 0: do not wait)",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument(
        "--skip",
        action="append",
        choices=GROUPS,
        default=[],
        help="skip a group of checks (repeatable)",
    )
    parser.add_argument(
        "--websocket-url",
        metavar="URL",
        help="the message service's WebSocket API, for the standby subscription (default: the "
        "region's, wss://mqe.tuya<cn|us|eu|in>.com:8285/)",
    )
    # Tests only: point the data centers at fake OpenAPI servers.
    parser.add_argument("--openapi-urls", type=_region_table, help=argparse.SUPPRESS)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    # Imported here: the checks pull in every client (Pulsar, PostgreSQL, HTTP), which the
    # other commands need not load.
    from tuya_events.doctor.runner import DoctorOptions, diagnose

    configure_logging("error", "console")  # the report is the output; logs only for errors
    options = DoctorOptions(
        config=args.config,
        wait=args.wait,
        skip=frozenset(args.skip),
        websocket_url=args.websocket_url,
        openapi_urls=args.openapi_urls,
    )
    report = asyncio.run(diagnose(options))
    sys.stdout.write(report.to_json() if args.json else report.to_text())
    return report.exit_code
