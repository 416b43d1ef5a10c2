"""``tuya-events check-config``: validate the file and show what the daemon would run with."""

from __future__ import annotations

import argparse
import sys

from tuya_events.config import load_settings
from tuya_events.config.render import render_effective_config
from tuya_events.config.transport_security import insecure_transports
from tuya_events.handlers import HandlerContext
from tuya_events.observability.metrics import Metrics
from tuya_events.pipeline.routes import build_routes


def add_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    parents: list[argparse.ArgumentParser],
) -> None:
    parser = subparsers.add_parser(
        "check-config",
        parents=parents,
        help="validate the configuration and print it with secrets masked",
        description="Validate the configuration; print the effective configuration (defaults "
        "filled in, secrets masked) on stdout, and on stderr a warning for every connection it "
        "leaves in plaintext or unverified. Exit 78 when it is not valid.",
    )
    parser.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="validate only: print no configuration (warnings still go to stderr)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    # Handler options and match rules are validated by building the handlers (nothing starts).
    build_routes(settings, HandlerContext(settings, Metrics()))
    if not args.quiet:
        sys.stdout.write(render_effective_config(settings))
    # On stderr, so stdout stays the YAML; a weakened connection is a warning, not an error.
    for finding in insecure_transports(settings):
        print(f"warning: {finding}", file=sys.stderr)
    if not args.quiet:
        print("configuration is valid", file=sys.stderr)
    return 0
