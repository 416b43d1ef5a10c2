"""The per-message metrics, kept as plain numbers, expose what prometheus_client would."""

from __future__ import annotations

import random

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from tuya_events.observability.metrics import AGE_BUCKETS, HANDLER_BUCKETS, PREFIX, Metrics

PER_MESSAGE = (
    "messages_received",
    "messages_acked",
    "events",
    "handler_duration_seconds",
    "handler_outcomes",
    "event_age_seconds",
)


def exposition(registry: CollectorRegistry) -> list[str]:
    """The per-message families' lines, without ``_created`` (a wall-clock time)."""
    names = tuple(f"{PREFIX}_{name}" for name in PER_MESSAGE)
    lines = generate_latest(registry).decode().splitlines()
    kept = [
        line
        for line in lines
        if any(f" {name}" in line or line.startswith(name) for name in names)
        and "_created" not in line
    ]
    return sorted(kept)


def reference_registry() -> tuple[CollectorRegistry, dict[str, object]]:
    """prometheus_client's own objects with the daemon's names, labels and buckets."""
    r = CollectorRegistry()
    return r, {
        "received": Counter(
            f"{PREFIX}_messages_received",
            "Messages received from the broker.",
            ["partition"],
            registry=r,
        ),
        "acked": Counter(f"{PREFIX}_messages_acked", "Messages acknowledged.", registry=r),
        "events": Counter(f"{PREFIX}_events", "Events decoded, by kind.", ["kind"], registry=r),
        "duration": Histogram(
            f"{PREFIX}_handler_duration_seconds",
            "Time one handler call took.",
            ["handler"],
            buckets=HANDLER_BUCKETS,
            registry=r,
        ),
        "outcomes": Counter(
            f"{PREFIX}_handler_outcomes",
            "Handler results: success, retry, failure, duplicate (skipped), unmatched.",
            ["handler", "outcome"],
            registry=r,
        ),
        "age": Histogram(
            f"{PREFIX}_event_age_seconds",
            "Now minus the broker publish time, when a message is received.",
            buckets=AGE_BUCKETS,
            registry=r,
        ),
    }


def test_same_exposition_as_prometheus_client_for_the_same_observations() -> None:
    rng = random.Random(7)
    metrics = Metrics()
    registry, ref = reference_registry()
    for handler in ("hook", "db"):
        metrics.declare_handler(handler)
        for outcome in ("success", "retry", "failure", "duplicate", "unmatched"):
            ref["outcomes"].labels(handler, outcome)  # type: ignore[attr-defined]
        ref["duration"].labels(handler)  # type: ignore[attr-defined]
    # Values on the bucket bounds themselves, below the first, above the last, and negative ages.
    special_ages = [*AGE_BUCKETS, 0.0, -3.0, 1e6]
    special_durations = [*HANDLER_BUCKETS, 0.0, 1e-9, 99.0]
    for index in range(3000):
        partition = rng.randrange(11)
        age = special_ages[index] if index < len(special_ages) else rng.expovariate(0.5)
        metrics.received(partition, age)
        ref["received"].labels(str(partition)).inc()  # type: ignore[attr-defined]
        ref["age"].observe(max(age, 0.0))  # type: ignore[attr-defined]
        kind = rng.choice(("status", "device_event", "generic"))
        metrics.decoded(kind)
        ref["events"].labels(kind).inc()  # type: ignore[attr-defined]
        handler = rng.choice(("hook", "db"))
        outcome = rng.choice(("success", "retry", "failure", "duplicate"))
        seconds = None
        if outcome != "duplicate":
            seconds = (
                special_durations[index] if index < len(special_durations) else rng.expovariate(50)
            )
        metrics.handler_outcome(handler, outcome, seconds)
        ref["outcomes"].labels(handler, outcome).inc()  # type: ignore[attr-defined]
        if seconds is not None:
            ref["duration"].labels(handler).observe(seconds)  # type: ignore[attr-defined]
        metrics.acked()
        ref["acked"].inc()  # type: ignore[attr-defined]
    ours, theirs = exposition(metrics.registry), exposition(registry)
    assert len(theirs) > 80
    assert ours == theirs


def test_a_declared_handler_shows_zeros_before_its_first_message() -> None:
    metrics = Metrics()
    metrics.declare_handler("hook")
    sample = metrics.registry.get_sample_value
    for outcome in ("success", "retry", "failure", "duplicate", "unmatched"):
        labels = {"handler": "hook", "outcome": outcome}
        assert sample(f"{PREFIX}_handler_outcomes_total", labels) == 0
    assert sample(f"{PREFIX}_handler_duration_seconds_count", {"handler": "hook"}) == 0
    assert sample(f"{PREFIX}_messages_acked_total") == 0
