"""``tuya-events test-routes``: routing rules under test, as ``vector test`` puts a pipeline.

Each case is a decrypted Tuya document and the handlers it should reach. The command prints,
per case, the handlers whose ``match`` rules take the event and, for each other handler, the
rule that failed; exit 0 when every expectation holds, 1 when one does not, 78 when the
configuration or the cases file is wrong. Nothing is started or called: no handler, broker or
OpenAPI, so it runs in CI with the production configuration.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tuya_events.cli.exits import FAILURE, OK
from tuya_events.config import ConfigError, load_settings
from tuya_events.config.errors import Problems, validation_problems
from tuya_events.config.loader import parse_document
from tuya_events.pipeline.explain import Outcome, outcomes, route_rules
from tuya_events.tuya.devices import (
    UNKNOWN_DEVICE,
    DataPoint,
    Device,
    make_device,
    parse_specification,
)
from tuya_events.tuya.events import STATUS_PROTOCOL, Event, build_event

MAX_CASES_BYTES = 16 << 20  # a cases file of many documents is still text a human wrote


class Case(BaseModel):
    """One case: a decrypted document, its protocol, optional catalogue data, the handlers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    message: dict[str, Any]
    protocol: int = STATUS_PROTOCOL
    expect: list[str]
    device: dict[str, Any] | None = None


def add_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    parents: list[argparse.ArgumentParser],
) -> None:
    parser = subparsers.add_parser(
        "test-routes",
        parents=parents,
        help="check which handlers test messages reach (routing rules in CI)",
        description="For each case of CASES (a YAML list of {name, message: <a decrypted Tuya "
        "document>, protocol (default 4), expect: [handler names], device: <catalogue data, "
        "optional>}), print the handlers the event would reach and, for the others, the rule "
        "that failed. Exit 0 when every case holds, 1 when one does not, 78 for a bad "
        "configuration or cases file. See docs/tail-and-test-routes.md.",
    )
    parser.add_argument("cases", metavar="CASES.yaml", help="the cases file")
    parser.set_defaults(handler=run)


def device_from_data(data: Mapping[str, Any], device_id: str | None) -> Device:
    """Catalogue data as ``tuya-events devices show --json`` prints it (details plus
    ``points``), or with Tuya's specification answer as ``specification`` (``{"status":
    [{"code", "type", "values"}]}``); ``id`` defaults to the message's device.

    Raises ValueError when there is no id to give it.
    """
    details = {"id": device_id, **data}
    points: dict[str, DataPoint] = {}
    raw_points = data.get("points")
    if isinstance(raw_points, list):
        for item in raw_points:
            point = DataPoint.from_dict(item) if isinstance(item, Mapping) else None
            if point is not None:
                points[point.code] = point
    for code, point in parse_specification(data.get("specification")).items():
        points.setdefault(code, point)
    return make_device(details, list(points.values()))


def event_for(case: Case, enrichment: bool) -> Event:
    """The event the daemon would route: with enrichment on, enriched from the case's device
    data, or of a device the catalogue does not know when it has none; with enrichment off,
    not enriched at all (device data is then ignored, as the daemon would ignore the catalogue).

    Raises ValueError for device data without an id.
    """
    from tuya_events.catalogue.enrich import apply  # the catalogue's import cost, only here

    event = build_event(dict(case.message), case.protocol)
    if not enrichment:
        return event
    if case.device is None:
        event.device = UNKNOWN_DEVICE
    else:
        apply(event, device_from_data(case.device, event.device_id))
    return event


def _read_cases(path: Path) -> Any:
    source = str(path)
    try:
        with path.open("rb") as stream:
            raw = stream.read(MAX_CASES_BYTES + 1)
    except OSError as exc:
        raise ConfigError([("", f"cannot read {path}: {exc.strerror or exc}")]) from None
    if len(raw) > MAX_CASES_BYTES:
        raise ConfigError([("", f"larger than {MAX_CASES_BYTES >> 20} MiB")], source)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError([("", "not UTF-8 text")], source) from None
    return parse_document(text, source)


def load_cases(path: Path, handlers: list[str]) -> list[Case]:
    """The cases of ``path``, validated: every problem at once, with its key path; an expected
    handler that the configuration does not have is a problem (a typo would never match)."""
    tree = _read_cases(path)
    if isinstance(tree, dict) and set(tree) == {"cases"}:
        tree = tree["cases"]
    if not isinstance(tree, list) or not tree:
        raise ConfigError([("", "must be a non-empty list of cases")], str(path))
    problems: Problems = []
    cases: list[Case] = []
    known = set(handlers)
    for index, raw in enumerate(tree):
        try:
            case = Case.model_validate(raw)
        except ValidationError as error:
            problems.extend(validation_problems(error, ("cases", index)))
            continue
        for position, name in enumerate(case.expect):
            if name not in known:
                problems.append(
                    (
                        f"cases[{index}].expect[{position}]",
                        f"no handler is named {name!r} (handlers: {', '.join(handlers)})",
                    )
                )
        cases.append(case)
    if problems:
        raise ConfigError(problems, str(path))
    return cases


def _report(case: Case, verdicts: list[Outcome], notes: list[str]) -> bool:
    """Print one case; whether it holds."""
    got = [v.handler for v in verdicts if v.matched]
    expected = set(case.expect)
    passed = set(got) == expected
    head = "PASS" if passed else "FAIL"
    print(f"{head} {case.name}")
    if not passed:
        print(f"  expected: {', '.join(case.expect) or '(none)'}")
    shown = [name if name in expected else f"{name} (not expected)" for name in got]
    print(f"  handlers: {', '.join(shown) or '(none)'}")
    for verdict in verdicts:
        if verdict.matched:
            continue
        mark = " (expected)" if verdict.handler in expected else ""
        if len(verdict.reasons) == 1:
            print(f"  not {verdict.handler}{mark}: {verdict.reasons[0]}")
            continue
        print(f"  not {verdict.handler}{mark}: no rule matched")
        for reason in verdict.reasons:
            print(f"    {reason}")
    for note in notes:
        print(f"  note: {note}")
    return passed


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    routes = route_rules(settings)
    cases = load_cases(Path(args.cases), [route.name for route in routes])
    enrichment = settings.enrichment.enabled
    problems: Problems = []
    events: list[Event] = []
    for index, case in enumerate(cases):
        try:
            events.append(event_for(case, enrichment))
        except ValueError as exc:
            problems.append((f"cases[{index}].device", f"{exc} (and the message has no devId)"))
    if problems:
        raise ConfigError(problems, args.cases)
    failed = 0
    for case, event in zip(cases, events, strict=True):
        notes = []
        if case.device is not None and not enrichment:
            notes.append("enrichment is off in this configuration: the device data is not used")
        if not _report(case, outcomes(routes, event), notes):
            failed += 1
    count = len(cases)
    print(f"\n{count} case{'s' if count != 1 else ''}: {count - failed} passed, {failed} failed")
    sys.stdout.flush()
    return FAILURE if failed else OK
