"""``tuya-events demo``: the daemon on an embedded, simulated Tuya message service."""

from __future__ import annotations

import argparse

from tuya_events.cli.exits import UNAVAILABLE, CliError


def add_parser(
    subparsers: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]
) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the pipeline against a simulated Tuya message service (no account needed)",
    )
    parser.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    raise CliError(
        "the demo arrives with the daemon (issue 4); until then try "
        "'tuya-events decrypt' and 'tuya-events check-config -c config.example.yaml'",
        UNAVAILABLE,
    )
