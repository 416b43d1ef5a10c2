"""Microseconds per message for enrichment on a cache hit, and what users pay to read it.

Run from the project root: ``.venv/bin/python benchmarks/enrichment.py`` (about 20 s).

Issue 16 asks that enrichment cost at most 1 us per message when the device is known. The pool
is decode.py's (about 70% status reports of 1-3 data points, 30% device events, each from a
device of its own), typed with ``build_event``; every device is in an in-memory ``Catalogue``
(no store, no OpenAPI) with a Tuya-shaped specification, so every call is a hit. Timing as in
decode.py: interleaved passes, median and fastest pass, gc off unless ``--gc``. Enriching an
event twice costs what enriching it once does, so the passes reuse the same events.
See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # for benchmarks.decode and benchmarks.machine

from benchmarks.decode import DATA_POINTS, Case, case, make_documents, run  # noqa: E402
from benchmarks.machine import cpu_model  # noqa: E402
from tuya_events.catalogue.catalogue import (  # noqa: E402
    DP_RENAMES,
    OFFLINE,
    ONLINE,
    RENAMES,
    WATCHED,
    Catalogue,
)
from tuya_events.catalogue.enrich import HIT, Enricher  # noqa: E402
from tuya_events.observability.metrics import Metrics  # noqa: E402
from tuya_events.tuya.devices import DataPoint, Device, make_device, parse_specification  # noqa: E402
from tuya_events.tuya.events import (  # noqa: E402
    DEVICE_EVENT_PROTOCOL,
    STATUS_PROTOCOL,
    DeviceEvent,
    Event,
    StatusItem,
    StatusReport,
    build_event,
)

GOAL_US = 1.0
DISTURBED_SPREAD = 1.15  # as decode.py: an idle machine's median is within a few percent of min

# Type and ``values`` of each of decode.py's data points, as a specification answer gives them.
SPECIFICATION: dict[str, tuple[str, dict[str, Any]]] = {
    "switch_1": ("Boolean", {}),
    "countdown_1": ("Integer", {"unit": "s", "min": 0, "max": 86400, "scale": 0, "step": 1}),
    "add_ele": ("Integer", {"unit": "kW·h", "min": 0, "max": 50000, "scale": 3, "step": 100}),
    "cur_current": ("Integer", {"unit": "mA", "min": 0, "max": 30000, "scale": 0, "step": 1}),
    "cur_power": ("Integer", {"unit": "W", "min": 0, "max": 50000, "scale": 1, "step": 1}),
    "cur_voltage": ("Integer", {"unit": "V", "min": 0, "max": 5000, "scale": 1, "step": 1}),
    "switch_led": ("Boolean", {}),
    "work_mode": ("Enum", {"range": ["white", "colour", "scene", "music"]}),
    "bright_value_v2": ("Integer", {"min": 10, "max": 1000, "scale": 0, "step": 1}),
    "temp_value_v2": ("Integer", {"min": 0, "max": 1000, "scale": 0, "step": 1}),
    "colour_data_v2": ("Json", {}),
    "scene_data_v2": ("Json", {}),
    "va_temperature": ("Integer", {"unit": "℃", "min": -200, "max": 600, "scale": 1, "step": 1}),
    "va_humidity": ("Integer", {"unit": "%", "min": 0, "max": 1000, "scale": 1, "step": 1}),
    "battery_percentage": ("Integer", {"unit": "%", "min": 0, "max": 100, "scale": 0, "step": 1}),
    "doorcontact_state": ("Boolean", {}),
    "pir": ("Enum", {"range": ["pir", "none"]}),
    "fault": ("Bitmap", {"label": ["sensor_fault", "low_battery", "tamper"]}),
}


def specification() -> dict[str, DataPoint]:
    """Every data point of the pool, parsed from the OpenAPI's shape (``values`` as JSON text)."""
    status = [
        {
            "code": point.code,
            "dp_id": point.dp_id,
            "type": SPECIFICATION[point.code][0],
            "values": orjson.dumps(SPECIFICATION[point.code][1]).decode(),
        }
        for point in DATA_POINTS
    ]
    return parse_specification({"category": "mixed", "status": status})


def typed_events(documents: Sequence[dict[str, Any]]) -> list[Event]:
    """The events the pipeline enriches: decode.py's documents through ``build_event``."""
    events = []
    for document in documents:
        protocol = STATUS_PROTOCOL if "status" in document else DEVICE_EVENT_PROTOCOL
        events.append(build_event(document, protocol))
    return events


def fill_catalogue(events: Sequence[Event], points: dict[str, DataPoint]) -> Catalogue:
    """An in-memory catalogue knowing every device of the pool; devices share the specification's
    data points, as the devices of one product do."""
    catalogue = Catalogue(None, None)
    spec = list(points.values())
    for index, event in enumerate(events):
        assert event.device_id is not None
        details = {
            "id": event.device_id,
            "name": f"Device {index}",
            "product_id": event.product_key,
            "product_name": "Benchmark product",
            "category": "cz",
            "time_zone": "+01:00",
            "online": True,
        }
        catalogue.devices[event.device_id] = make_device(details, spec, 1, 1)
    return catalogue


def check_hits(enricher: Enricher, events: Sequence[Event]) -> None:
    """Before timing: every event is a hit and every status item found its data point."""
    counts = enricher._counts
    before = dict(counts)
    for event in events:
        if enricher(event) is not None:
            raise SystemExit(f"{event.device_id}: enrichment wanted to wait: not a hit")
    hits = counts[HIT] - before.get(HIT, 0)
    if hits != len(events) or sum(counts.values()) - sum(before.values()) != hits:
        raise SystemExit(f"{hits} hits for {len(events)} events: {counts}")
    for event in events:
        if not isinstance(event.device, Device):
            raise SystemExit(f"{event.device_id}: not enriched")
        if isinstance(event, StatusReport) and any(i.point is None for i in event.statuses):
            raise SystemExit(f"{event.device_id}: a status item without its data point")


def code_in(event: Event, codes: frozenset[str]) -> bool:
    return event.biz_code is not None and event.biz_code in codes


def flipping(events: Sequence[Event]) -> list[Event]:
    """Each online/offline event followed by its twin of the other state, for the same device:
    enriched in turn, every call changes the device (a new snapshot), as in real traffic, where
    the state an event reports is news. The pool's own ones report a state the device has
    after the first pass."""
    out = []
    for event in events:
        if code_in(event, ONLINE | OFFLINE):
            other = "offline" if code_in(event, ONLINE) else "online"
            twin = build_event({**event.document, "bizCode": other}, DEVICE_EVENT_PROTOCOL)
            out += [event, twin]
    return out


# --- reporting ------------------------------------------------------------------------------

Row = tuple[str, Case, str]


def print_setup(args: argparse.Namespace, events: Sequence[Event], items: int) -> None:
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"machine:  {os.cpu_count()} CPUs, {cpu_model()}, load average {load}")
    print(f"software: Python {platform.python_version()}")
    reports = sum(isinstance(event, StatusReport) for event in events)
    print(
        f"pool:     {len(events)} events from as many catalogued devices ({reports} status "
        f"reports with {items} items, {len(events) - reports} device events); {args.repeat} "
        f"passes, gc {'enabled' if args.gc else 'disabled'} while timing"
    )


def print_table(title: str, rows: Sequence[Row]) -> None:
    print(f"\n{title}")
    print(f"  {'what':58} {'median us':>9} {'min us':>7}  note")
    for name, item, note in rows:
        print(f"  {name:58} {item.median:9.3f} {item.best:7.3f}  {note}")


def print_goals(hits: Sequence[tuple[str, Case]]) -> None:
    print(f"\nGoal (issue 16): enrichment on a cache hit <= {GOAL_US:.0f} us/message (medians):")
    for name, item in hits:
        verdict = "met" if item.median <= GOAL_US else "NOT met"
        print(f"  {name}: {item.median:.3f} us -> {verdict}")
    spread = max(item.median / item.best for _, item in hits)
    if spread > DISTURBED_SPREAD:
        load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
        print(
            f"  note: medians are {spread - 1:.0%} above the fastest pass: other work competed for"
            f" the CPU (load average {load}). Rerun on an idle machine; min is closer to it."
        )


# --- the benchmark --------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--messages", type=int, default=5000, help="events in the pool")
    parser.add_argument("-r", "--repeat", type=int, default=25, help="timed passes per case")
    parser.add_argument("--seed", type=int, default=4, help="seed of the pool (as decode.py)")
    parser.add_argument("--gc", action="store_true", help="keep the garbage collector enabled")
    args = parser.parse_args(argv)
    if args.messages < 1 or args.repeat < 1:
        parser.error("--messages and --repeat must be at least 1")

    documents = make_documents(args.messages, args.seed)
    enriched = typed_events(documents)
    plain = typed_events(documents)  # never enriched: ``device`` and every ``point`` stay None
    catalogue = fill_catalogue(enriched, specification())
    enricher = Enricher(catalogue, Metrics())
    flips = flipping(enriched)
    check_hits(enricher, [*enriched, *flips])

    reports = [e for e in enriched if isinstance(e, StatusReport)]
    renames = [e for e in enriched if code_in(e, RENAMES | DP_RENAMES)]
    renamed = {id(e) for e in renames}
    steady = [e for e in enriched if code_in(e, WATCHED) and id(e) not in renamed]
    lookups = [e for e in enriched if isinstance(e, DeviceEvent) and not code_in(e, WATCHED)]
    reading = [e for e in enriched if id(e) not in renamed]
    items: list[StatusItem] = [item for report in reports for item in report.statuses]
    plain_items = [
        item for event in plain if isinstance(event, StatusReport) for item in event.statuses
    ]
    print_setup(args, enriched, len(items))

    def scaled(item: StatusItem) -> Any:
        return item.scaled

    def value(item: StatusItem) -> Any:
        return item.value

    def as_dict(event: Event) -> dict[str, Any]:
        return event.as_dict()

    def build(document: dict[str, Any], protocol: int) -> Event:
        return build_event(document, protocol)

    built = [(d, STATUS_PROTOCOL if "status" in d else DEVICE_EVENT_PROTOCOL) for d in documents]
    status, unchanged = case(enricher, reports), case(enricher, reading)
    dict_plain, dict_enriched = case(as_dict, plain), case(as_dict, enriched)
    slot, scaled_enriched = case(value, items), case(scaled, items)
    named: list[Row] = [
        ("Enricher(event): status reports", status, "a dict look-up, a point per item"),
        ("  device events, not watched (upgradeStatus)", case(enricher, lookups), ""),
        ("  online/offline (state unchanged), bindUser", case(enricher, steady), "observe"),
        ("  every event that changes nothing", unchanged, "the pool minus renames"),
        ("  online/offline, the state flips every time", case(enricher, flips), "new snapshot"),
        ("  nameUpdate, dpNameUpdate", case(enricher, renames), "new snapshot"),
        ("  the whole pool (decode.py's mix: 10% renames)", case(enricher, enriched), ""),
        ("event.as_dict(), not enriched", dict_plain, ""),
        ("event.as_dict(), enriched", dict_enriched, "+ device, name/unit/scaled"),
        ("item.value (a slot read: the call's own cost)", slot, "reference"),
        ("item.scaled, not enriched (None)", case(scaled, plain_items), ""),
        ("item.scaled, enriched", scaled_enriched, "value / 10**scale"),
        ("build_event (for scale: making the typed event)", case(build, built), "in decode"),
    ]
    named = [row for row in named if row[1].inputs]  # a tiny pool may lack a kind
    run([item for _, item, _ in named], args.repeat, args.gc)
    print_table("Enrichment and reading it, us per message (per status item for item.*):", named)

    as_dict_cost = dict_enriched.median - dict_plain.median
    scaled_cost = scaled_enriched.median - slot.median
    print(
        f"\n  as_dict() enriched costs {as_dict_cost:+.3f} us/message more than not enriched; "
        f"item.scaled costs {scaled_cost:+.3f} us/item more than a slot read (medians)"
    )
    print_goals([("status reports", status), ("every event that changes nothing", unchanged)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
