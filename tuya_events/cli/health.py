"""``tuya-events health``: ask a running daemon whether it is alive (or ready), for probes.

Exit 0 when the endpoint answers 200, 1 otherwise, with the daemon's own reason. The address
comes from ``--url``, else from the configuration's ``http.listen``, else the default.
"""

from __future__ import annotations

import argparse
import sys
import urllib.error
import urllib.request

from tuya_events.cli.exits import FAILURE, OK
from tuya_events.config import load_settings

DEFAULT_URL = "http://127.0.0.1:9464"


def add_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    parents: list[argparse.ArgumentParser],
) -> None:
    parser = subparsers.add_parser(
        "health",
        parents=parents,
        help="probe a running daemon's /healthz (or /readyz with --ready)",
        description="Exit 0 when the running daemon answers /healthz (or /readyz) with 200.",
    )
    parser.add_argument("--ready", action="store_true", help="probe /readyz instead of /healthz")
    parser.add_argument("--url", help=f"the daemon's HTTP address (default {DEFAULT_URL})")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds (default 5)")
    parser.set_defaults(handler=run)


def _base_url(args: argparse.Namespace) -> str:
    if args.url:
        url: str = args.url
        return url.rstrip("/")
    if args.config:
        host, port = load_settings(args.config).http.listen
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        return f"http://{host}:{port}"
    return DEFAULT_URL


def run(args: argparse.Namespace) -> int:
    url = _base_url(args) + ("/readyz" if args.ready else "/healthz")
    try:
        with urllib.request.urlopen(url, timeout=args.timeout) as answer:
            print(f"{url}: {answer.read().decode().strip()}")
            return OK
    except urllib.error.HTTPError as error:
        print(f"{url}: {error.code} {error.read().decode().strip()}", file=sys.stderr)
    except OSError as error:
        print(f"{url}: unreachable ({error})", file=sys.stderr)
    return FAILURE
