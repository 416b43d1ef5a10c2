"""Reading the daemon's metrics as /metrics shows them, from its registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry


def metric_value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    """One sample's value; 0 when the series is absent (as a rate over it would read)."""
    return registry.get_sample_value(name, labels) or 0.0


def handler_outcomes(registry: CollectorRegistry, handler: str, outcome: str) -> float:
    """``tuya_events_handler_outcomes_total{handler, outcome}`` (0 when the series is absent)."""
    return metric_value(
        registry, "tuya_events_handler_outcomes_total", handler=handler, outcome=outcome
    )
