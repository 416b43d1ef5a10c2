"""The ``log`` handler on enriched events, read back from the daemon's real JSON log lines: the
device's name, values scaled with their unit under their codes, the optional ``names``; an
unknown device or enrichment off gives the line of before, field for field."""

from __future__ import annotations

import io
import json
from typing import Any

from tests.support.enriched_events import HUMIDITY, TEMPERATURE, enrich, thermometer
from tests.support.events import T0, device_doc, sample, status_doc
from tuya_events.handlers.log import DEFAULT_FIELDS, LogHandler, LogOptions
from tuya_events.tuya.devices import UNKNOWN_DEVICE, DataPoint, DeviceView
from tuya_events.tuya.events import Event

REPORT = status_doc(
    "dev-a",
    "data-1",
    ("va_temperature", 235, T0),
    ("va_humidity", 61, T0),
    ("battery_state", "low", T0),
    ("mystery", 7, T0),  # not in the specification
)


def log_lines(buffer: io.StringIO, events: list[Event], **options: Any) -> list[dict[str, Any]]:
    handler = LogHandler("log", LogOptions.model_validate(options))
    for event in events:
        handler.handle(event, sample(REPORT)[1])
    lines = [json.loads(line) for line in buffer.getvalue().splitlines()]
    return [line for line in lines if line.get("event") == "event"]


def without_time(line: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in line.items() if key != "timestamp"}


def report(device: DeviceView | None = None, document: dict[str, Any] = REPORT) -> Event:
    event = sample(document)[0]
    return event if device is None else enrich(event, device)


def test_a_known_device_gets_its_name_and_values_scaled_with_units(
    captured_logs: io.StringIO,
) -> None:
    (line,) = log_lines(captured_logs, [report(thermometer())])
    assert line["device"] == "Cellar"
    assert line["device_id"] == "dev-a"
    assert line["statuses"] == {
        "va_temperature": "23.5 ℃",  # 235 with scale 1
        "va_humidity": "61 %",  # scale 0: the value, with its unit
        "battery_state": "low",  # no unit: the (scaled) value alone
        "mystery": 7,  # no specification: as sent
    }
    assert "names" not in line  # not a default field
    assert "never-stored" not in captured_logs.getvalue()  # the device's local_key


def test_names_is_an_optional_field_keyed_by_code(captured_logs: io.StringIO) -> None:
    fields = [*DEFAULT_FIELDS, "names"]
    named = thermometer(points=(TEMPERATURE.named("Cellar air"), HUMIDITY))
    first, unnamed = log_lines(
        captured_logs,
        [report(named), report(thermometer(points=(TEMPERATURE,)))],
        fields=fields,
    )
    assert first["names"] == {"va_temperature": "Cellar air", "va_humidity": "Cellar humidity"}
    assert set(first["statuses"]) == {"va_temperature", "va_humidity", "battery_state", "mystery"}
    assert "names" not in unnamed  # no data point has a name: left out


def test_a_device_without_a_name_and_odd_values(captured_logs: io.StringIO) -> None:
    points = (
        TEMPERATURE,
        DataPoint("va_humidity", "Integer", unit="%", scale=2),
        DataPoint("switch", "Boolean", unit="x"),
    )
    document = status_doc(
        "dev-a",
        "data-2",
        ("va_temperature", "235", T0),  # a string where a number belongs: not scaled
        ("va_humidity", 6150, T0),
        ("switch", True, T0),
    )
    (line,) = log_lines(captured_logs, [report(thermometer(name=None, points=points), document)])
    assert "device" not in line
    assert line["statuses"] == {
        "va_temperature": "235 ℃",
        "va_humidity": "61.5 %",
        "switch": True,  # a unit on a Boolean says nothing: the value alone
    }


def test_unknown_device_and_enrichment_off_log_the_line_of_before(
    captured_logs: io.StringIO,
) -> None:
    off, unknown = log_lines(captured_logs, [report(), report(UNKNOWN_DEVICE)])
    assert without_time(off) == {
        "event": "event",
        "level": "info",
        "kind": "status",
        "device_id": "dev-a",
        "product_key": "pk-1",
        "statuses": {
            "va_temperature": 235,
            "va_humidity": 61,
            "battery_state": "low",
            "mystery": 7,
        },
        "data_id": "data-1",
        "partition": 3,
    }
    assert without_time(unknown) == without_time(off)


def test_the_enriched_fields_asked_for_without_enrichment_are_left_out(
    captured_logs: io.StringIO,
) -> None:
    fields = [*DEFAULT_FIELDS, "names", "protocol"]
    off, unknown = log_lines(captured_logs, [report(), report(UNKNOWN_DEVICE)], fields=fields)
    assert "names" not in off and "device" not in off
    assert off["protocol"] == 4
    assert without_time(unknown) == without_time(off)


def test_a_device_event_of_a_known_device_names_it(captured_logs: io.StringIO) -> None:
    event = enrich(sample(device_doc("dev-a", "d-1", "online", T0), 20)[0], thermometer())
    (line,) = log_lines(captured_logs, [event])
    assert line["device"] == "Cellar"
    assert line["biz_code"] == "online"
    assert "statuses" not in line
