"""``tuya-events dlq``: inspect, purge and replay the dead-letter store.

``list``, ``show`` and ``purge`` need only the store file (``--store PATH``, or the path in the
configuration); ``replay`` needs the whole configuration, since it runs the handlers again.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, is_dataclass
from itertools import islice
from pathlib import Path
from typing import Any

from tuya_events.cli.exits import FAILURE, NO_INPUT, SOFTWARE, USAGE, CliError
from tuya_events.config import Settings, load_settings
from tuya_events.deadletter import DeadLetterStore, DeadLetterStoreError, RecordFilter, parse_time
from tuya_events.deadletter.render import format_detail, format_table, table_row
from tuya_events.observability.logging import configure_logging

REPLAY_MODULE = "tuya_events.deadletter.replay"


# -- arguments -------------------------------------------------------------------------------


def _time(text: str) -> float:
    try:
        return parse_time(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return value


def _store_options() -> argparse.ArgumentParser:
    """``-c`` / ``--store`` again on each action, so they may come before or after it.

    Defaults are suppressed here: an option given before the action must not be reset to
    ``None`` by the action's own parser.
    """
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument(
        "-c", "--config", metavar="FILE", default=argparse.SUPPRESS, help="configuration file"
    )
    parser.add_argument(
        "--store",
        metavar="PATH",
        default=argparse.SUPPRESS,
        help="the dead-letter SQLite file (default: dead_letter.path from the configuration)",
    )
    return parser


def _filter_options() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(add_help=False)
    group = parser.add_argument_group("filters (all given must match)")
    group.add_argument(
        "--id", dest="ids", type=int, action="append", metavar="N", help="record id (repeatable)"
    )
    group.add_argument("--reason", metavar="R", help="failure reason, e.g. bad_padding, http_400")
    group.add_argument("--stage", metavar="S", help="decode, handler or pipeline")
    # Not dest "handler": main() dispatches on args.handler.
    group.add_argument("--handler", dest="handler_name", metavar="H", help="handler name")
    group.add_argument("--device", metavar="D", help="device id")
    times = "last failure {} TIME: ISO 8601 (local unless it has an offset) or 30m, 2h, 1d ago"
    group.add_argument("--since", type=_time, metavar="TIME", help=times.format("at or after"))
    group.add_argument("--until", type=_time, metavar="TIME", help=times.format("before"))
    return parser


def add_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    parents: list[argparse.ArgumentParser],
) -> None:
    parser = subparsers.add_parser(
        "dlq",
        parents=parents,
        help="inspect, purge and replay the dead-letter store",
        description="Inspect, purge and replay messages that could not be handled. The store "
        "is dead_letter.path from the configuration (-c), or --store PATH. Exit 66 when the "
        "store file does not exist.",
    )
    parser.add_argument("--store", metavar="PATH", help="the dead-letter SQLite file")
    actions = parser.add_subparsers(dest="dlq_action", metavar="ACTION", required=True)
    common = [_store_options(), _filter_options()]

    listing = actions.add_parser(
        "list", parents=common, help="list records, oldest first", description="List records."
    )
    listing.add_argument("--limit", type=_positive, metavar="N", help="at most N records")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    listing.set_defaults(handler=run_list)

    show = actions.add_parser(
        "show", parents=[common[0]], help="show one record in full", description="Show a record."
    )
    show.add_argument("record_id", type=int, metavar="ID")
    show.add_argument("--json", action="store_true", help="one JSON object, body in base64")
    show.set_defaults(handler=run_show)

    purge = actions.add_parser(
        "purge",
        parents=common,
        help="delete records",
        description="Delete matching records. Asks first on a terminal unless --yes; without "
        "a filter it refuses unless --all.",
    )
    purge.add_argument("--all", action="store_true", help="allow purging with no filter")
    purge.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    purge.set_defaults(handler=run_purge)

    replay = actions.add_parser(
        "replay",
        parents=common,
        help="run matching records through the handlers again",
        description="Replay matching records through the configured pipeline: a record that "
        "succeeds is deleted, one that fails again is updated. Needs the configuration.",
    )
    replay.add_argument(
        "--no-progress", action="store_true", help="no progress line (default: on a terminal)"
    )
    replay.set_defaults(handler=run_replay)


def record_filter(args: argparse.Namespace) -> RecordFilter:
    return RecordFilter(
        ids=args.ids,
        reason=args.reason,
        stage=args.stage,
        handler=args.handler_name,
        device_id=args.device,
        since=args.since,
        until=args.until,
    )


# -- the store -------------------------------------------------------------------------------


def _existing(path: str | Path) -> Path:
    store_path = Path(path).expanduser()
    if not store_path.is_file():
        raise CliError(
            f"no dead-letter store at {store_path} (nothing was dead-lettered yet, or another "
            "path: see dead_letter.path, or pass --store PATH)",
            NO_INPUT,
        )
    return store_path


@contextmanager
def _opened(path: Path, store_plaintext: bool = False) -> Iterator[DeadLetterStore]:
    """The store, with its failures as a message and an exit code instead of a traceback."""
    try:
        with DeadLetterStore(path, store_plaintext) as store:
            yield store
    except DeadLetterStoreError as error:
        raise CliError(str(error), FAILURE) from None


def _store_path(args: argparse.Namespace) -> Path:
    if args.store:
        return _existing(args.store)
    return _existing(load_settings(args.config).dead_letter.path)


def _write_json(document: Any) -> None:
    sys.stdout.write(json.dumps(document, ensure_ascii=False) + "\n")


# -- actions ---------------------------------------------------------------------------------


def run_list(args: argparse.Namespace) -> int:
    filters = record_filter(args)
    with _opened(_store_path(args)) as store:
        records = store.iter(filters)
        if args.limit is not None:
            records = islice(records, args.limit)
        if args.json:
            for record in records:
                _write_json(record.as_dict())
            return 0
        rows = [table_row(record) for record in records]
        total = store.count(filters) if args.limit is not None else len(rows)
    if not rows:
        print("no dead letters match", file=sys.stderr)
        return 0
    sys.stdout.write("\n".join(format_table(rows)) + "\n")
    if total > len(rows):
        print(f"showing {len(rows)} of {total} (raise --limit to see more)", file=sys.stderr)
    return 0


def run_show(args: argparse.Namespace) -> int:
    with _opened(_store_path(args)) as store:
        record = store.get(args.record_id)
    if record is None:
        raise CliError(f"no dead letter with id {args.record_id}", FAILURE)
    if args.json:
        _write_json(record.as_dict(include_body=True))
    else:
        sys.stdout.write("\n".join(format_detail(record)) + "\n")
    return 0


def _confirmed(question: str) -> bool:
    if not sys.stdin.isatty():
        raise CliError("not on a terminal: pass --yes to purge without confirmation", USAGE)
    sys.stderr.write(f"{question} [y/N] ")
    sys.stderr.flush()
    answer = sys.stdin.readline()
    return answer.strip().lower() in ("y", "yes")


def run_purge(args: argparse.Namespace) -> int:
    filters = record_filter(args)
    if filters.is_empty() and not args.all:
        raise CliError(
            "refusing to purge with no filter: give filters, or --all to delete every record",
            USAGE,
        )
    path = _store_path(args)
    with _opened(path) as store:
        matching = store.count(filters)
        if matching == 0:
            print("no dead letters match; nothing purged", file=sys.stderr)
            return 0
        if not args.yes and not _confirmed(f"Delete {matching} dead letter(s) from {path}?"):
            print("not purged", file=sys.stderr)
            return FAILURE
        purged = store.purge(filters)
    print(f"purged {purged} dead letter(s)")
    return 0


def _report(result: Any) -> int:
    """Print what the replay returned and derive the exit code: 1 when anything failed."""
    if is_dataclass(result) and not isinstance(result, type):
        summary = ", ".join(f"{name}: {value}" for name, value in asdict(result).items())
    else:
        summary = str(result)
    print(f"replay: {summary}", file=sys.stderr)
    code = getattr(result, "exit_code", None)
    if isinstance(code, int):
        return code
    return FAILURE if getattr(result, "failed", 0) else 0


def run_replay(args: argparse.Namespace) -> int:
    filters = record_filter(args)
    settings: Settings = load_settings(args.config)
    configure_logging(settings.logging.level, settings.logging.format)  # to stderr
    path = _existing(args.store or settings.dead_letter.path)
    try:
        from tuya_events.deadletter.replay import replay_records
    except ModuleNotFoundError as error:
        if error.name != REPLAY_MODULE:
            raise
        raise CliError("replay is not available in this version of tuya-events", SOFTWARE) from None
    progress = not args.no_progress and sys.stderr.isatty()
    from tuya_events.assembly import HandlerStartError

    with _opened(path, settings.dead_letter.store_plaintext) as store:
        try:
            result = replay_records(settings, store, filters, progress)
        except HandlerStartError as exc:
            raise CliError(str(exc), SOFTWARE) from None
    return _report(result)
