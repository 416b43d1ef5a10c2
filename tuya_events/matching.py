"""Match rules: which events a handler sees. No rule means every event.

A rule is a mapping whose keys all have to hold (AND); a list value means any of (OR); a list of
rules matches when any rule does. Value conditions test status data points (``value``) or a
device event's ``bizData`` fields (``biz_data``)::

    match:
      protocol: 4
      product_key: [pk1, pk2]
      status_code: [doorcontact_state]
      value:
        doorcontact_state: {equals: true}
        va_temperature: {gt: 300}

With enrichment on, rules can also name what the device catalogue knows: ``device_name`` and
``category`` (the device's), and ``scaled`` (conditions on a data point's value in its unit,
``value / 10**scale``)::

    match:
      category: wsdcg
      device_name: [Cellar, Attic]
      scaled:
        va_temperature: {gt: 30.0}

A device the catalogue does not know (or enrichment off) has no name or category, so these keys
never match it; a data point without a known specification has no scaled value (``exists:
false`` holds).

``event_name`` is a device event's normalized name (docs/events.md), the same for the legacy and
the IoT Core families, so one rule catches ``online`` and ``deviceOnline``; ``source`` tells the
daemon's resync events (``resync``) from Tuya's traffic (``live``)::

    match:
      event_name: [online, offline]
      source: live

Rules are compiled once into closures over frozensets: the per-message cost is a few lookups.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, model_validator

from tuya_events.tuya.events import (
    EVENT_NAME_VOCABULARY,
    SOURCES,
    DeviceEvent,
    Event,
    StatusReport,
)

Predicate = Callable[[Event], bool]
Scalar = str | int | float | bool | None


def always(event: Event) -> bool:
    return True


class ValueCondition(BaseModel):
    """Conditions on one value; all given ones must hold."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    equals: Scalar = None
    not_equals: Scalar = None
    in_: list[Scalar] | None = Field(default=None, alias="in")
    not_in: list[Scalar] | None = None
    gt: float | None = None
    gte: float | None = None
    lt: float | None = None
    lte: float | None = None
    exists: bool | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        """``code: true`` is short for ``code: {equals: true}``."""
        return data if isinstance(data, dict) else {"equals": data}


class MatchRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: list[str] | None = None
    protocol: list[int] | None = None
    biz_code: list[str] | None = None
    device_id: list[str] | None = None
    product_key: list[str] | None = None
    status_code: list[str] | None = None
    value: dict[str, ValueCondition] | None = None
    biz_data: dict[str, ValueCondition] | None = None
    device_name: list[str] | None = None
    category: list[str] | None = None
    scaled: dict[str, ValueCondition] | None = None
    event_name: list[str] | None = None
    source: list[str] | None = None

    @model_validator(mode="before")
    @classmethod
    def _scalars_to_lists(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        listy = (
            "kind",
            "protocol",
            "biz_code",
            "device_id",
            "product_key",
            "status_code",
            "device_name",
            "category",
            "event_name",
            "source",
        )
        return {k: [v] if k in listy and not isinstance(v, list) else v for k, v in data.items()}

    @model_validator(mode="after")
    def _known_names(self) -> MatchRule:
        """A misspelt name would never match: refuse it when the configuration is loaded."""
        for key, known in (("event_name", EVENT_NAME_VOCABULARY), ("source", SOURCES)):
            unknown = sorted(set(getattr(self, key) or ()) - known)
            if unknown:
                raise ValueError(
                    f"unknown {key} {', '.join(unknown)}; known: {', '.join(sorted(known))}"
                )
        return self


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def _same(actual: Any, expected: Any) -> bool:
    """Equal, or equal as numbers: Tuya sends ``"25"`` and ``25`` for the same thing."""
    if actual == expected and type(actual) is type(expected):
        return True
    if isinstance(expected, bool) or isinstance(actual, bool):
        return isinstance(actual, str) and actual.lower() == str(expected).lower()
    a, e = _number(actual), _number(expected)
    return a is not None and a == e


_MISSING = object()


def _value_test(condition: ValueCondition) -> Callable[[Any], bool]:
    given = condition.model_fields_set
    checks: list[Callable[[Any], bool]] = []
    if condition.exists is not None:
        want = condition.exists
        checks.append(lambda v: (v is not _MISSING) == want)
    if "equals" in given:

        def equals(v: Any, e: Scalar = condition.equals) -> bool:
            return v is not _MISSING and _same(v, e)

        checks.append(equals)
    if "not_equals" in given:

        def not_equals(v: Any, e: Scalar = condition.not_equals) -> bool:
            return v is _MISSING or not _same(v, e)

        checks.append(not_equals)
    if condition.in_ is not None:
        options = condition.in_
        checks.append(lambda v: v is not _MISSING and any(_same(v, o) for o in options))
    if condition.not_in is not None:
        excluded = condition.not_in
        checks.append(lambda v: v is _MISSING or not any(_same(v, o) for o in excluded))
    for bound, compare in (
        (condition.gt, float.__gt__),
        (condition.gte, float.__ge__),
        (condition.lt, float.__lt__),
        (condition.lte, float.__le__),
    ):
        if bound is not None:
            limit: float = bound  # narrowed here: older mypy does not narrow a default

            def within(
                v: Any, b: float = limit, c: Callable[[float, float], bool] = compare
            ) -> bool:
                return (n := _number(v)) is not None and c(n, b)

            checks.append(within)
    return lambda value: all(check(value) for check in checks)


def _status_values(event: Event) -> dict[str, Any]:
    if not isinstance(event, StatusReport):
        return {}
    return {item.code: item.value for item in event.statuses if item.code is not None}


def _scaled_values(event: Event) -> dict[str, Any]:
    """Scaled values of the data points whose specification is known; others are missing."""
    if not isinstance(event, StatusReport):
        return {}
    return {
        item.code: item.scaled
        for item in event.statuses
        if item.code is not None and item.point is not None
    }


def _device_attribute_in(attribute: str, allowed: frozenset[str]) -> Predicate:
    """The catalogue's ``name``/``category`` of the event's device is one of ``allowed``."""

    def device_attribute_in(e: Event) -> bool:
        device = e.device
        return device is not None and getattr(device, attribute) in allowed

    return device_attribute_in


def _rule_tests(rule: MatchRule) -> list[tuple[str, Predicate]]:
    """Each key of the rule with its test, in a fixed order: :func:`compile_match` ANDs them,
    :func:`explain` names the ones that fail."""
    tests: list[tuple[str, Predicate]] = []
    if rule.kind is not None:
        kinds = frozenset(rule.kind)
        tests.append(("kind", lambda e: e.kind in kinds))
    if rule.protocol is not None:
        protocols = frozenset(rule.protocol)
        tests.append(("protocol", lambda e: e.protocol in protocols))
    for attribute in ("biz_code", "device_id", "product_key"):
        wanted = getattr(rule, attribute)
        if wanted is not None:
            allowed = frozenset(wanted)

            def attribute_in(e: Event, a: str = attribute, s: frozenset[str] = allowed) -> bool:
                return getattr(e, a) in s

            tests.append((attribute, attribute_in))
    if rule.event_name is not None:
        names = frozenset(rule.event_name)
        tests.append(("event_name", lambda e: isinstance(e, DeviceEvent) and e.event_name in names))
    if rule.source is not None:
        sources = frozenset(rule.source)
        tests.append(("source", lambda e: e.source in sources))
    if rule.status_code is not None:
        codes = frozenset(rule.status_code)

        def has_code(e: Event) -> bool:
            return isinstance(e, StatusReport) and any(s.code in codes for s in e.statuses)

        tests.append(("status_code", has_code))
    if rule.value:
        value_tests = [(code, _value_test(cond)) for code, cond in rule.value.items()]

        def values_hold(e: Event) -> bool:
            values = _status_values(e)
            return all(test(values.get(code, _MISSING)) for code, test in value_tests)

        tests.append(("value", values_hold))
    if rule.biz_data:
        biz_tests = [(key, _value_test(cond)) for key, cond in rule.biz_data.items()]

        def biz_data_holds(e: Event) -> bool:
            data = e.biz_data if isinstance(e, DeviceEvent) else {}
            return all(test(data.get(key, _MISSING)) for key, test in biz_tests)

        tests.append(("biz_data", biz_data_holds))
    if rule.device_name is not None:
        tests.append(("device_name", _device_attribute_in("name", frozenset(rule.device_name))))
    if rule.category is not None:
        tests.append(("category", _device_attribute_in("category", frozenset(rule.category))))
    if rule.scaled:
        scaled_tests = [(code, _value_test(cond)) for code, cond in rule.scaled.items()]

        def scaled_hold(e: Event) -> bool:
            values = _scaled_values(e)
            return all(test(values.get(code, _MISSING)) for code, test in scaled_tests)

        tests.append(("scaled", scaled_hold))
    return tests


def _compile_rule(rule: MatchRule) -> Predicate:
    tests = [test for _, test in _rule_tests(rule)]
    if not tests:
        return always
    if len(tests) == 1:
        return tests[0]
    return lambda e: all(test(e) for test in tests)


def compile_match(rules: dict[str, Any] | list[dict[str, Any]] | None) -> Predicate:
    """Turn the ``match:`` section into a predicate; raises pydantic's ValidationError."""
    if not rules:
        return always
    if isinstance(rules, dict):
        return _compile_rule(MatchRule.model_validate(rules))
    compiled = [_compile_rule(MatchRule.model_validate(rule)) for rule in rules]
    return lambda e: any(predicate(e) for predicate in compiled)


# -- explaining a non-match (``tuya-events test-routes``) ---------------------------------------


def explain(rules: dict[str, Any] | list[dict[str, Any]] | None, event: Event) -> list[str]:
    """Why ``event`` does not match the ``match:`` section ``rules``: for each rule (``rule N:``
    when there are several), the keys that do not hold and what the event has instead. Empty
    when it matches. Built on the tests :func:`compile_match` uses, so the two cannot disagree;
    raises pydantic's ValidationError as it does."""
    if not rules:
        return []
    listed = [rules] if isinstance(rules, dict) else rules
    reasons: list[str] = []
    for number, raw in enumerate(listed, 1):
        rule = MatchRule.model_validate(raw)
        failing = [_why(rule, key, event) for key, test in _rule_tests(rule) if not test(event)]
        if not failing:
            return []
        prefix = f"rule {number}: " if len(listed) > 1 else ""
        reasons.append(prefix + "; ".join(failing))
    return reasons


def _shown(value: Any) -> str:
    if value is _MISSING:
        return "missing"
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return repr(value)


def _wanted(values: list[Any]) -> str:
    if len(values) == 1:
        return _shown(values[0])
    return "one of [" + ", ".join(_shown(v) for v in values) + "]"


def _condition_text(condition: ValueCondition) -> str:
    given = condition.model_dump(by_alias=True, exclude_unset=True)
    return "{" + ", ".join(f"{key}: {_shown(value)}" for key, value in given.items()) + "}"


def _conditions_failing(
    section: str, conditions: dict[str, ValueCondition], values: dict[str, Any]
) -> list[str]:
    failing = []
    for code, condition in conditions.items():
        actual = values.get(code, _MISSING)
        if not _value_test(condition)(actual):
            failing.append(
                f"{section}.{code} is {_shown(actual)}, wanted {_condition_text(condition)}"
            )
    return failing


def _why(rule: MatchRule, key: str, event: Event) -> str:
    """One failing key of ``rule``, said with the event's own value."""
    wanted = getattr(rule, key)
    if key in ("device_name", "category"):
        device = event.device
        if device is None:
            return f"{key}: the event is not enriched (enrichment is off)"
        if not device.known:
            return f"{key}: the device is not in the catalogue"
        actual = device.name if key == "device_name" else device.category
        return f"{key} is {_shown(actual)}, not {_wanted(wanted)}"
    if key == "event_name" and not isinstance(event, DeviceEvent):
        return f"event_name: not a device event (kind {event.kind})"
    if key in ("status_code", "value", "scaled") and not isinstance(event, StatusReport):
        return f"{key}: not a status report (kind {event.kind})"
    if key == "status_code":
        assert isinstance(event, StatusReport)  # narrowed above
        codes = [item.code for item in event.statuses]
        return f"status_code: the report has {_shown(codes)}, none of {_shown(wanted)}"
    if key == "value":
        return "; ".join(_conditions_failing(key, wanted, _status_values(event)))
    if key == "scaled":
        failing = _conditions_failing(key, wanted, _scaled_values(event))
        if event.device is None:
            failing.append("(no scaled values: enrichment is off)")
        return "; ".join(failing)
    if key == "biz_data":
        data = event.biz_data if isinstance(event, DeviceEvent) else {}
        return "; ".join(_conditions_failing(key, wanted, data))
    actual = event.kind if key == "kind" else getattr(event, key)
    return f"{key} is {_shown(actual)}, not {_wanted(wanted)}"
