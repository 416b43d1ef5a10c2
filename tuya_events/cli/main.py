"""Entry point: parse arguments, run one subcommand, turn known failures into exit codes.

No traceback for a user's mistake: configuration problems exit 78, undecodable input 65, other
known failures with their own code. Only a bug shows a traceback (exit 70), with every known
secret masked: it is meant to be pasted into a bug report.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Sequence

from tuya_events import __version__
from tuya_events.cli import (
    api,
    check_config,
    decrypt,
    demo,
    devices,
    dlq,
    doctor,
    health,
    resync,
    run,
    tail,
    test_routes,
)
from tuya_events.cli.exits import CONFIG, DATA_ERROR, INTERRUPTED, SOFTWARE, CliError
from tuya_events.config import ConfigError
from tuya_events.observability.redact import REDACTOR
from tuya_events.tuya.errors import DecodeError

SUBCOMMANDS = (
    run,
    demo,
    check_config,
    doctor,
    decrypt,
    devices,
    resync,
    dlq,
    health,
    api,
    tail,
    test_routes,
)


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        help="configuration file (default: $TUYA_EVENTS_CONFIG, ./tuya-events.yaml, "
        "~/.config/tuya-events/config.yaml, /etc/tuya-events/config.yaml)",
    )
    parser = argparse.ArgumentParser(
        prog="tuya-events",
        description="Consume Tuya's cloud message service: decrypt device events and route them "
        "to handlers, with nothing lost and nothing silent.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in SUBCOMMANDS:
        module.add_parser(subparsers, [common])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.handler(args)  # the subcommand's exit code
        return code
    except ConfigError as error:
        print(error.render(), file=sys.stderr)
        return CONFIG
    except DecodeError as error:
        print(f"error: {error}", file=sys.stderr)
        return DATA_ERROR
    except CliError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.code
    except KeyboardInterrupt:
        return INTERRUPTED
    except BrokenPipeError:
        return 0
    except Exception as error:
        return _internal_error(error)


def _internal_error(error: Exception) -> int:
    """A bug of ours: the masked traceback (for the report), then one line saying so."""
    try:
        details = REDACTOR("".join(traceback.format_exception(error)))
        summary = REDACTOR(f"{type(error).__name__}: {error}")
    except Exception:  # masking failed too: show nothing that could hold a secret
        details, summary = "", type(error).__name__
    print(details, file=sys.stderr, end="")
    print(
        f"internal error: {summary}\nThis is a bug in tuya-events {__version__}; "
        "please report it with the traceback above.",
        file=sys.stderr,
    )
    return SOFTWARE


if __name__ == "__main__":
    sys.exit(main())
