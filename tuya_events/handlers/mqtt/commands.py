"""Commands back to devices: ``{prefix}/{id}/{code}/set`` (a plain value) or ``{prefix}/{id}/set``
(a JSON object of several codes), checked against the device's specification, sent through the
project's shared OpenAPI client, answered on ``.../result``.

Only codes of the specification's ``functions`` (the writable ones) are accepted, each value
checked for its type: Boolean (``true``/``false``, ``on``/``off``, ``1``/``0``), Integer in
the unit users see (``21.5`` with scale 1 is sent as 215) within min/max and on a step, Enum
within its range, String, Json (an object or array) and Raw (base64 text) as given. Nothing is
sent unless every code of a request passes; a request that fails says why, never crashes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from tuya_events.openapi.client import OpenApiClient
from tuya_events.openapi.errors import OpenApiError
from tuya_events.tuya.devices import INTEGER, DataPoint, parse_data_point

SPECIFICATION_PATHS = {
    "iot-03": "/v1.0/iot-03/devices/{device_id}/specification",
    "devices": "/v1.0/devices/{device_id}/specifications",
}
MAX_PAYLOAD_BYTES = 16_384
_TRUE = frozenset({"true", "on", "1"})
_FALSE = frozenset({"false", "off", "0"})


class CommandRefused(Exception):
    """A command that will not be sent, with the reason (a stable word) and a sentence."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def _refused(reason: str, message: str) -> CommandRefused:
    return CommandRefused(reason, message)


def coerce(point: DataPoint, value: Any, plain: bool) -> Any:
    """The raw value Tuya expects for ``value`` (plain text from a one-code topic, or a JSON
    value from the several-codes form); raises :class:`CommandRefused` saying why not."""
    kind = point.type
    code = point.code
    if kind == "Boolean":
        if isinstance(value, bool):
            return value
        text = value.strip().lower() if isinstance(value, str) else None
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise _refused("bad_value", f"{code} is Boolean: send true or false")
    if kind == INTEGER:
        return _integer(point, value)
    if kind == "Enum":
        text = _text(value, plain)
        if point.range is not None and text not in point.range:
            allowed = ", ".join(point.range)
            raise _refused("bad_value", f"{code} must be one of: {allowed}")
        return text
    if kind == "String":
        return _text(value, plain)
    if kind == "Json":
        document = value
        if isinstance(value, str):
            try:
                document = orjson.loads(value)
            except orjson.JSONDecodeError:
                raise _refused("bad_value", f"{code} is Json: send a JSON document") from None
        if not isinstance(document, (dict, list)):
            raise _refused("bad_value", f"{code} is Json: send a JSON object or array")
        return document
    if kind == "Raw":
        return _text(value, plain)
    raise _refused("unsupported", f"{code} is of type {kind}, which commands do not support")


def _text(value: Any, plain: bool) -> str:
    if isinstance(value, str):
        text = value.strip() if plain else value
        if plain and len(text) >= 2 and text[0] == text[-1] == '"':
            try:
                decoded = orjson.loads(text)
            except orjson.JSONDecodeError:
                return text
            return decoded if isinstance(decoded, str) else text
        return text
    raise _refused("bad_value", "send text")


def _integer(point: DataPoint, value: Any) -> int:
    """A scaled number back to Tuya's whole number: ``raw = scaled * 10**scale``."""
    code = point.code
    number: float | int
    if isinstance(value, bool):
        raise _refused("bad_value", f"{code} is a number")
    if isinstance(value, (int, float)):
        number = value
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise _refused("bad_value", f"{code} is a number") from None
    else:
        raise _refused("bad_value", f"{code} is a number")
    if not math.isfinite(number):
        raise _refused("bad_value", f"{code} is a number")
    exact = number * 10**point.scale
    raw = round(exact)
    if abs(exact - raw) > 1e-6 * max(1.0, abs(exact)):
        places = f"{point.scale} decimal place(s)" if point.scale else "no decimals"
        raise _refused("bad_value", f"{code} takes {places}")
    low, high = point.min, point.max
    if (low is not None and raw < low) or (high is not None and raw > high):
        raise _refused(
            "out_of_range",
            f"{code} must be between {point.scaled(low)} and {point.scaled(high)}",
        )
    step = point.step
    if step and step > 1 and (raw - (low or 0)) % step:
        raise _refused("bad_step", f"{code} goes in steps of {point.scaled(step)}")
    return int(raw)


def parse_request(payload: bytes, code: str | None) -> dict[str, tuple[Any, bool]]:
    """code -> (value, plain) from a message: one code's plain payload, or a JSON object."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise _refused("too_large", f"a command payload is at most {MAX_PAYLOAD_BYTES} bytes")
    try:
        text = payload.decode()
    except UnicodeDecodeError:
        raise _refused("bad_payload", "the payload is not UTF-8 text") from None
    if code is not None:
        return {code: (text, True)}
    try:
        document = orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise _refused("bad_payload", "send a JSON object of code: value") from None
    if not isinstance(document, dict) or not document:
        raise _refused("bad_payload", "send a JSON object of code: value")
    return {str(key): (value, False) for key, value in document.items()}


@dataclass
class _Specification:
    functions: dict[str, DataPoint]
    fetched_at: float


class WritableCodes:
    """A device's writable data points (``functions`` of its specification), fetched through
    the OpenAPI when first needed and kept ``ttl`` seconds."""

    def __init__(self, family: str, ttl: float, clock: Any = time.monotonic) -> None:
        self.family = family
        self.ttl = ttl
        self.clock = clock
        self._known: dict[str, _Specification] = {}

    async def functions(self, client: OpenApiClient, device_id: str) -> dict[str, DataPoint]:
        kept = self._known.get(device_id)
        if kept is not None and self.clock() - kept.fetched_at < self.ttl:
            return kept.functions
        path = SPECIFICATION_PATHS[self.family].format(device_id=device_id)
        answer = await client.request("GET", path)
        functions: dict[str, DataPoint] = {}
        entries = answer.get("functions") if isinstance(answer, Mapping) else None
        for entry in entries if isinstance(entries, list) else []:
            point = parse_data_point(entry)
            if point is not None:
                functions[point.code] = point
        self._known[device_id] = _Specification(functions, self.clock())
        return functions


def build_commands(
    functions: Mapping[str, DataPoint], request: Mapping[str, tuple[Any, bool]]
) -> list[dict[str, Any]]:
    """Tuya's ``commands`` list, every code checked; :class:`CommandRefused` for the first
    that is not writable or whose value does not fit."""
    commands = []
    for code, (value, plain) in request.items():
        point = functions.get(code)
        if point is None:
            writable = ", ".join(sorted(functions)) or "none"
            raise _refused("not_writable", f"{code} is not writable on this device ({writable})")
        commands.append({"code": code, "value": coerce(point, value, plain)})
    return commands


def outcome_of_error(error: OpenApiError) -> dict[str, Any]:
    """A failed OpenAPI call as a result document: Tuya's code and text when it gave them."""
    out: dict[str, Any] = {"ok": False, "reason": f"openapi_{error.reason}"}
    if error.code is not None:
        out["tuya_code"] = error.code
    out["message"] = error.msg
    if error.hint:
        out["hint"] = error.hint
    return out
