"""``tuya-events devices``: fill the device catalogue now, and look at what it holds.

``sync`` asks the OpenAPI (counted, batched, within the rate limits; refused while the catalogue
is paused after a quota error, unless ``--force``); ``list`` and ``show`` read the local file
only and make no call.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

import orjson

from tuya_events.cli.exits import FAILURE, NO_INPUT, TEMPFAIL, UNAVAILABLE, CliError
from tuya_events.config import load_settings
from tuya_events.config.secrets import secret_values
from tuya_events.config.settings import Settings, catalogue_path
from tuya_events.observability.logging import configure_logging
from tuya_events.observability.redact import REDACTOR
from tuya_events.tuya.devices import Device


def add_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    parents: list[argparse.ArgumentParser],
) -> None:
    parser = subparsers.add_parser(
        "devices",
        help="the device catalogue: names, categories, units and scales of the project's devices",
        description="Fill the local device catalogue from Tuya's OpenAPI (sync), or show it "
        "(list, show: no OpenAPI call).",
    )
    commands = parser.add_subparsers(dest="devices_command", metavar="ACTION", required=True)
    sync = commands.add_parser(
        "sync",
        parents=parents,
        help="fetch every device of the project (or --device ID) and its specification now",
        description="Exit codes: 0 all fetched, 1 some devices failed, 69 the OpenAPI refused "
        "or is unreachable, 75 paused after a quota error (see --force), 78 configuration.",
    )
    sync.add_argument("--device", action="append", metavar="ID", help="only this device (repeat)")
    sync.add_argument(
        "--force", action="store_true", help="call even while paused after a quota error"
    )
    sync.add_argument("--json", action="store_true", help="print the summary as JSON")
    sync.add_argument("--no-progress", action="store_true", help="no progress bar")
    sync.set_defaults(handler=run_sync)
    listing = commands.add_parser("list", parents=parents, help="the devices in the catalogue")
    listing.add_argument("--json", action="store_true", help="JSON lines, one per device")
    listing.set_defaults(handler=run_list)
    show = commands.add_parser(
        "show", parents=parents, help="one device: details and data-point specification"
    )
    show.add_argument("device_id", metavar="DEVICE_ID")
    show.add_argument("--json", action="store_true", help="as JSON")
    show.set_defaults(handler=run_show)


# -- sync ---------------------------------------------------------------------------------------


def run_sync(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    REDACTOR.add(secret_values(settings))
    configure_logging(settings.logging.level, settings.logging.format)  # stderr: stdout is ours
    progress = not args.no_progress and sys.stderr.isatty()
    report = asyncio.run(_sync(settings, args.device, progress, args.force))
    summary = {
        "devices": report.devices,
        "new": report.new,
        "removed": report.removed,
        "specifications_fetched": report.specifications_fetched,
        "specifications_shared": report.specifications_shared,
        "calls": report.calls,
        "failures": report.failures,
        "paused": report.paused,
        "catalogue": str(catalogue_path(settings)),
    }
    if args.json:
        print(orjson.dumps(summary).decode())
    else:
        print(
            f"devices sync: {report.devices} devices ({report.new} new, {report.removed} "
            f"removed), {report.specifications_fetched} specifications fetched, "
            f"{report.specifications_shared} shared within a product, {report.calls} OpenAPI "
            f"calls, {len(report.failures)} failed",
            file=sys.stderr,
        )
        for device_id, reason in sorted(report.failures.items()):
            print(f"  failed: {device_id}: {reason}", file=sys.stderr)
    if report.paused:
        print(
            "devices sync: stopped: Tuya answered a quota or subscription error; the catalogue "
            "makes no call until the pause ends (catalogue.quota_pause)",
            file=sys.stderr,
        )
        return TEMPFAIL
    return FAILURE if report.failures else 0


async def _sync(
    settings: Settings, device_ids: list[str] | None, progress: bool, force: bool
) -> Any:
    from tuya_events.assembly import opened_catalogue
    from tuya_events.catalogue.catalogue import Paused
    from tuya_events.handlers import HandlerContext
    from tuya_events.observability.metrics import Metrics
    from tuya_events.observability.progress import ProgressBar
    from tuya_events.openapi.errors import OpenApiError

    context = HandlerContext(settings, Metrics())
    bar = ProgressBar("devices", None, progress)
    async with opened_catalogue(settings, context, background=False) as catalogue:
        if force:
            catalogue.resume()
        try:
            report = await catalogue.sync(
                progress=lambda done, total: bar.show(done, total=total), device_ids=device_ids
            )
        except Paused as paused:
            until = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(paused.until))
            raise CliError(
                f"the catalogue is paused until {until} after Tuya answered a quota or "
                "subscription error; --force calls anyway",
                TEMPFAIL,
            ) from None
        except OpenApiError as error:
            raise CliError(REDACTOR(error.describe()), UNAVAILABLE) from None
        bar.show(report.devices, final=True, total=report.devices)
        return report


# -- list and show --------------------------------------------------------------------------


def _stored(settings: Settings) -> dict[str, Device]:
    """The catalogue's devices, read from its file (no OpenAPI call)."""
    from tuya_events.catalogue.store import CatalogueStore, CatalogueStoreError

    path = catalogue_path(settings)
    if not path.exists():
        raise CliError(
            f"no device catalogue at {path}: run `tuya-events devices sync` (or the daemon) first",
            NO_INPUT,
        )
    try:
        with CatalogueStore(path) as store:
            return {device.id: device for device in store.load()}
    except CatalogueStoreError as exc:
        raise CliError(str(exc), NO_INPUT) from None


def _age(ms: int) -> str:
    if not ms:
        return "never"
    seconds = max(0, int(time.time() - ms / 1000))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def run_list(args: argparse.Namespace) -> int:
    devices = _stored(load_settings(args.config))
    if args.json:
        for device in devices.values():
            print(orjson.dumps(device.as_dict()).decode())
        return 0
    rows = [["ID", "NAME", "CATEGORY", "PRODUCT", "ONLINE", "POINTS", "FETCHED"]]
    for device in sorted(devices.values(), key=lambda d: (d.name or "", d.id)):
        online = "-" if device.online is None else ("yes" if device.online else "no")
        rows.append(
            [
                device.id,
                device.name or "-",
                device.category or "-",
                device.product_name or device.product_id or "-",
                online,
                str(len(device.points)),
                _age(device.fetched_at_ms),
            ]
        )
    print(_table(rows))
    print(f"{len(devices)} devices", file=sys.stderr)
    return 0


def run_show(args: argparse.Namespace) -> int:
    devices = _stored(load_settings(args.config))
    device = devices.get(args.device_id)
    if device is None:
        raise CliError(
            f"device {args.device_id} is not in the catalogue: `tuya-events devices sync "
            f"--device {args.device_id}` fetches it",
            FAILURE,
        )
    if args.json:
        print(orjson.dumps(device.as_dict(), option=orjson.OPT_INDENT_2).decode())
        return 0
    for key, value in device.details().items():
        if value is not None:
            print(f"{key + ':':<15} {value}")
    print(f"{'fetched:':<15} {_age(device.fetched_at_ms)}")
    print(f"{'specification:':<15} {_age(device.specification_fetched_at_ms)}")
    if not device.points:
        print("no data-point specification")
        return 0
    rows = [["CODE", "DP", "TYPE", "UNIT", "SCALE", "RANGE", "NAME"]]
    for point in device.points.values():
        if point.range is not None:
            span = ", ".join(point.range)
        elif point.min is not None or point.max is not None:
            span = f"{point.min}..{point.max}" + (f" step {point.step}" if point.step else "")
        else:
            span = "-"
        rows.append(
            [
                point.code,
                point.dp_id or "-",
                point.type or "-",
                point.unit or "-",
                str(point.scale),
                span,
                point.name or "-",
            ]
        )
    print()
    print(_table(rows))
    return 0
