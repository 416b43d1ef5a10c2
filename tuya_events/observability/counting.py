"""The per-message metrics as plain numbers, turned into Prometheus samples only when scraped.

prometheus_client's ``inc`` and ``observe`` take a lock and make several Python calls each; four
of them per message cost 3-5 us, a tenth of the daemon's per-message budget. The event loop is
the only writer of these numbers (and ``/metrics`` is served on the same loop), so a dict of
ints and a list of bucket counts are exact and need no lock. Names, labels and buckets are the
ones prometheus_client would produce.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString


class Buckets:
    """One histogram series: a count per bucket (``le`` semantics) and the running sum."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def cumulative(self) -> list[tuple[str, float]]:
        """``(le, count)`` pairs as the exposition format wants them: cumulative, +Inf last."""
        pairs: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += count
            pairs.append((floatToGoString(bound), running))
        return pairs


class MessageCounts(Collector):
    """Received per partition, acknowledged, events per kind, handler outcomes and durations,
    event age: everything the pipeline counts once per message or per handler call."""

    def __init__(
        self, prefix: str, age_buckets: Sequence[float], handler_buckets: Sequence[float]
    ) -> None:
        self.prefix = prefix
        self.handler_buckets = tuple(handler_buckets)
        self.received: dict[int, int] = {}
        self.acked = 0
        self.events: dict[str, int] = {}
        self.outcomes: dict[tuple[str, str], int] = {}
        self.durations: dict[str, Buckets] = {}
        self.age = Buckets(age_buckets)
        # Enrichment outcomes (tuya_events/catalogue/enrich.py), seeded so rate() sees the first.
        self.enrichment: dict[str, int] = {}

    def handler_buckets_for(self, handler: str) -> Buckets:
        buckets = self.durations.get(handler)
        if buckets is None:
            buckets = self.durations[handler] = Buckets(self.handler_buckets)
        return buckets

    def describe(self) -> Iterator[Metric]:
        return self._families()

    def collect(self) -> Iterator[Metric]:
        return self._families()

    def _families(self) -> Iterator[Metric]:
        p = self.prefix
        received = CounterMetricFamily(
            f"{p}_messages_received", "Messages received from the broker.", labels=["partition"]
        )
        for partition, count in sorted(self.received.items()):
            received.add_metric([str(partition)], count)
        yield received
        yield CounterMetricFamily(f"{p}_messages_acked", "Messages acknowledged.", value=self.acked)
        events = CounterMetricFamily(f"{p}_events", "Events decoded, by kind.", labels=["kind"])
        for kind, count in sorted(self.events.items()):
            events.add_metric([kind], count)
        yield events
        duration = HistogramMetricFamily(
            f"{p}_handler_duration_seconds", "Time one handler call took.", labels=["handler"]
        )
        for handler, buckets in sorted(self.durations.items()):
            duration.add_metric([handler], buckets.cumulative(), buckets.sum)
        yield duration
        outcomes = CounterMetricFamily(
            f"{p}_handler_outcomes",
            "Handler results: success, retry, failure, duplicate (skipped), unmatched.",
            labels=["handler", "outcome"],
        )
        for (handler, outcome), count in sorted(self.outcomes.items()):
            outcomes.add_metric([handler, outcome], count)
        yield outcomes
        age = HistogramMetricFamily(
            f"{p}_event_age_seconds",
            "Now minus the broker publish time, when a message is received.",
        )
        age.add_metric([], self.age.cumulative(), self.age.sum)
        yield age
        enrichment = CounterMetricFamily(
            f"{p}_enrichment",
            "Events by enrichment outcome: hit (device known), waited (known after waiting for "
            "its lookup), timed_out (went on unenriched after enrichment.max_wait), unknown "
            "(went on unenriched at once: lookup failed, paused or not due), no_device.",
            labels=["outcome"],
        )
        for outcome, count in sorted(self.enrichment.items()):
            enrichment.add_metric([outcome], count)
        yield enrichment
