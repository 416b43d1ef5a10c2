"""Every metric the daemon exposes, on its own registry, named by Prometheus conventions.

Base units, ``_total`` counters, histograms for durations, and never a device id as a label.
The per-message series are plain numbers in :class:`MessageCounts`, turned into samples at scrape
time; gauges that mirror a number the pipeline already keeps read it at scrape time too.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from tuya_events import __version__
from tuya_events.observability.counting import MessageCounts

PREFIX = "tuya_events"
HANDLER_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
)
AGE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 7200)

# Outcomes of one handler for one event.
SUCCESS = "success"
RETRY = "retry"
FAILURE = "failure"
DUPLICATE = "duplicate"
UNMATCHED = "unmatched"


class Metrics:
    """The metric objects, plus small methods for the per-message calls."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        r = self.registry
        self.build_info = Gauge(
            f"{PREFIX}_build_info", "Version of the running daemon.", ["version"], registry=r
        )
        self.build_info.labels(__version__).set(1)
        # The per-message series: plain numbers, exposed by a collector at scrape time.
        self.counts = MessageCounts(PREFIX, AGE_BUCKETS, HANDLER_BUCKETS)
        r.register(self.counts)
        self.decode_failures = Counter(
            f"{PREFIX}_decode_failures",
            "Messages that could not be decoded.",
            ["reason", "em"],
            registry=r,
        )
        self.sign_mismatches = Counter(
            f"{PREFIX}_sign_mismatches",
            "Envelopes whose sign did not match (sign_check: log).",
            registry=r,
        )
        self.dead_letters = Counter(
            f"{PREFIX}_dead_letters",
            "Messages written to the dead-letter store (each once, however often delivered).",
            ["stage", "reason"],
            registry=r,
        )
        self.messages_seen_again = Counter(
            f"{PREFIX}_messages_seen_again",
            "Messages whose event was already handled here (a redelivery after a lost "
            "acknowledgement, a partition handed over, or Tuya sending it again): the handlers "
            "that had succeeded were skipped (outcome duplicate).",
            registry=r,
        )
        self.ledger_skipped = Counter(
            f"{PREFIX}_ledger_skipped",
            "Events a handler skipped because the shared dedupe ledger says another instance "
            "(or this one, before a restart) already handled them.",
            ["handler"],
            registry=r,
        )
        self.handler_outages = Counter(
            f"{PREFIX}_handler_outages",
            "Times a handler's target went down (an infrastructure failure: database down, "
            "HTTP 5xx, connection refused).",
            ["handler"],
            registry=r,
        )
        self.handler_down = Gauge(
            f"{PREFIX}_handler_down",
            "1 while a handler's target is down (its messages wait, one probe at a time).",
            ["handler"],
            registry=r,
        )
        self.handler_outage_seconds = Counter(
            f"{PREFIX}_handler_outage_seconds",
            "Time handlers' targets were down, counted when each outage ends.",
            ["handler"],
            registry=r,
        )
        self.handler_outage_waits = Counter(
            f"{PREFIX}_handler_outage_waits",
            "Messages that waited on a handler's outage (each time it waited).",
            ["handler"],
            registry=r,
        )
        self.dead_letters_seen_again = Counter(
            f"{PREFIX}_dead_letters_seen_again",
            "Messages that failed again after they were dead-lettered (delivered again: an "
            "acknowledgement lost in a broker restart); their record was updated, not repeated.",
            ["stage", "reason"],
            registry=r,
        )
        self.dead_letter_records = Gauge(
            f"{PREFIX}_dead_letter_records", "Records in the dead-letter store.", registry=r
        )
        self.dead_letter_write_failures = Counter(
            f"{PREFIX}_dead_letter_write_failures",
            "Failed writes to the dead-letter store (the message stays unacknowledged).",
            registry=r,
        )
        self.in_flight = Gauge(
            f"{PREFIX}_in_flight_messages", "Messages received, not yet finished.", registry=r
        )
        self.last_message = Gauge(
            f"{PREFIX}_last_message_timestamp_seconds",
            "When the last message was received.",
            registry=r,
        )
        self.broker_connected = Gauge(
            f"{PREFIX}_broker_connected", "1 while connected to the message service.", registry=r
        )
        # Dependencies: what the handlers talk to.
        self.webhook_requests = Counter(
            f"{PREFIX}_webhook_requests",
            "Webhook requests by status class: 2xx, 3xx, 4xx, 5xx, network_error, timeout.",
            ["handler", "status_class"],
            registry=r,
        )
        self.database_flush_duration = Histogram(
            f"{PREFIX}_database_flush_duration_seconds",
            "Time to write one batch to the database.",
            ["handler"],
            buckets=HANDLER_BUCKETS,
            registry=r,
        )
        self.database_batch_size = Histogram(
            f"{PREFIX}_database_batch_size",
            "Events per database batch.",
            ["handler"],
            buckets=(1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500),
            registry=r,
        )
        self.openapi_requests = Counter(
            f"{PREFIX}_openapi_requests",
            "Tuya OpenAPI calls by endpoint class (token, command, query) and outcome "
            "(success, or the Tuya error code, or network_error / http_5xx).",
            ["endpoint_class", "outcome"],
            registry=r,
        )
        self.openapi_request_duration = Histogram(
            f"{PREFIX}_openapi_request_duration_seconds",
            "Tuya OpenAPI call latency.",
            ["endpoint_class"],
            buckets=HANDLER_BUCKETS,
            registry=r,
        )
        self.openapi_rate_limit_wait = Histogram(
            f"{PREFIX}_openapi_rate_limit_wait_seconds",
            "Time a call waited for the rate limiter.",
            ["endpoint_class"],
            buckets=(0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.openapi_token_refreshes = Counter(
            f"{PREFIX}_openapi_token_refreshes",
            "Access token fetches and refreshes, by outcome (success, failure).",
            ["outcome"],
            registry=r,
        )
        for outcome in ("success", "failure"):  # so increase() sees the first failure
            self.openapi_token_refreshes.labels(outcome)
        self._http_listener_metrics(r)
        self._catalogue_metrics(r)
        self._notice_metrics(r)
        self._resync_metrics(r)
        self.config_reloads = Counter(
            f"{PREFIX}_config_reloads",
            "Configuration reloads (SIGHUP), by outcome: applied, invalid (the file does not "
            "validate), refused (a key that needs a restart changed), failed (a handler could "
            "not start).",
            ["outcome"],
            registry=r,
        )
        for outcome in ("applied", "invalid", "refused", "failed"):
            self.config_reloads.labels(outcome)
        self.config_reload_failed = Gauge(
            f"{PREFIX}_config_reload_failed",
            "1 while the last reload was not applied: the daemon runs on an older configuration "
            "than its file.",
            registry=r,
        )

    def _resync_metrics(self, r: CollectorRegistry) -> None:
        """Gaps in consumption and the resyncs that fill them (tuya_events/resync/)."""
        self.resync_gap = Gauge(
            f"{PREFIX}_consumption_gap_seconds",
            "The last gap in consumption, measured at start (since the last record of consuming) "
            "or on reconnecting to the message service.",
            registry=r,
        )
        self.resync_gap_at = Gauge(
            f"{PREFIX}_consumption_gap_timestamp_seconds",
            "When the last gap was measured.",
            registry=r,
        )
        self.resync_runs = Counter(
            f"{PREFIX}_resync_runs",
            "Resyncs started, by trigger: start (a gap at start), reconnect, command.",
            ["trigger"],
            registry=r,
        )
        self.resync_devices = Counter(
            f"{PREFIX}_resync_devices",
            "Devices resynced (a status event from the OpenAPI) or failed, per resync.",
            ["outcome"],
            registry=r,
        )
        self.resync_running = Gauge(f"{PREFIX}_resync_running", "Resyncs in progress.", registry=r)

    def _catalogue_metrics(self, r: CollectorRegistry) -> None:
        """The device catalogue (tuya_events/catalogue/): what it knows, what it asks."""
        self.catalogue_devices = Gauge(
            f"{PREFIX}_catalogue_devices", "Devices in the local catalogue.", registry=r
        )
        self.catalogue_calls = Counter(
            f"{PREFIX}_catalogue_calls",
            "OpenAPI calls the catalogue made, by call (list, details, specification, status) "
            "and outcome (success, or the Tuya code / network_error / timeout).",
            ["call", "outcome"],
            registry=r,
        )
        for call in ("list", "details", "specification", "status"):
            self.catalogue_calls.labels(call, "success")
        self.catalogue_refreshes = Counter(
            f"{PREFIX}_catalogue_device_refreshes",
            "Devices fetched, by trigger: first_seen, event (a rename, a binding), periodic, "
            "sync (tuya-events devices sync or the start-up sync).",
            ["trigger"],
            registry=r,
        )
        self.catalogue_lookup_failures = Counter(
            f"{PREFIX}_catalogue_lookup_failures",
            "Devices the catalogue could not fetch, by reason (not_found, the Tuya code, "
            "network_error, timeout, ...).",
            ["reason"],
            registry=r,
        )
        self.catalogue_paused = Gauge(
            f"{PREFIX}_catalogue_paused",
            "1 while the catalogue makes no OpenAPI call because Tuya answered a quota or "
            "subscription error (catalogue.quota_pause).",
            registry=r,
        )
        self.catalogue_pauses = Counter(
            f"{PREFIX}_catalogue_pauses",
            "Times the catalogue stopped calling the OpenAPI, by Tuya code (28841004 quota, "
            "28841002 expired, 28841105 not subscribed, ...).",
            ["code"],
            registry=r,
        )
        self.enrichment_wait = Histogram(
            f"{PREFIX}_enrichment_wait_seconds",
            "How long messages of a device seen for the first time waited for its lookup.",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10),
            registry=r,
        )

    def _notice_metrics(self, r: CollectorRegistry) -> None:
        """Tuya's high-priority notices (observability/notices.py): what the notice channel says."""
        self.notices = Counter(
            f"{PREFIX}_notices",
            "High-priority notices Tuya sent on the notice channel, by eventType "
            "(pulsar_backlog_notice: the subscription's backlog is above the console's threshold).",
            ["event_type"],
            registry=r,
        )
        self.notices.labels("pulsar_backlog_notice")  # so increase() sees the first one
        self.notice_backlog = Gauge(
            f"{PREFIX}_notice_backlog",
            "The backlog the last backlog notice reported (backLogNum). Tuya sends no notice "
            "when it falls below the threshold again: read it with "
            "tuya_events_notice_last_timestamp_seconds (notices repeat every 15 minutes while "
            "the backlog stays above).",
            registry=r,
        )
        self.notice_last_timestamp = Gauge(
            f"{PREFIX}_notice_last_timestamp_seconds",
            "When Tuya sent the newest notice received (its ts; the time it arrived when it "
            "has none).",
            registry=r,
        )

    def _http_listener_metrics(self, r: CollectorRegistry) -> None:
        """The /metrics listener itself (observability/http.py): its connection bounds at work."""
        self.http_connections = Gauge(
            f"{PREFIX}_http_connections", "Open connections on the HTTP listener.", registry=r
        )
        self.http_connections_dropped = Counter(
            f"{PREFIX}_http_connections_dropped",
            "Connections the HTTP listener closed itself: header_timeout (no complete request "
            "header in time), evicted (the oldest idle one, to make room at the connection "
            "limit), rejected (at the limit with every connection in a request).",
            ["reason"],
            registry=r,
        )
        for reason in ("header_timeout", "evicted", "rejected"):
            self.http_connections_dropped.labels(reason)
        self.http_accept_failures = Counter(
            f"{PREFIX}_http_accept_failures",
            "Failed accept() calls on the HTTP listener for lack of file descriptors or memory "
            "(EMFILE, ENFILE, ENOBUFS, ENOMEM); the kernel holds or drops those connections.",
            registry=r,
        )

    def bind_gauges(
        self, in_flight: Callable[[], float], last_message: Callable[[], float]
    ) -> None:
        """Read these at scrape time rather than updating them per message."""
        self.in_flight.set_function(in_flight)
        self.last_message.set_function(last_message)

    def received(self, partition: int, age_seconds: float | None) -> None:
        received = self.counts.received
        received[partition] = received.get(partition, 0) + 1
        if age_seconds is not None:
            self.counts.age.observe(age_seconds if age_seconds > 0.0 else 0.0)

    def decoded(self, kind: str) -> None:
        events = self.counts.events
        events[kind] = events.get(kind, 0) + 1

    def acked(self) -> None:
        self.counts.acked += 1

    def handler_outcome(self, handler: str, outcome: str, seconds: float | None = None) -> None:
        outcomes = self.counts.outcomes
        key = (handler, outcome)
        outcomes[key] = outcomes.get(key, 0) + 1
        if seconds is not None:
            self.counts.handler_buckets_for(handler).observe(seconds)

    def declare_handler(self, handler: str) -> None:
        """Create a handler's series at start so dashboards show zeros, not gaps."""
        outcomes = self.counts.outcomes
        for outcome in (SUCCESS, RETRY, FAILURE, DUPLICATE, UNMATCHED):
            outcomes.setdefault((handler, outcome), 0)
        self.counts.handler_buckets_for(handler)
        for series in (
            self.handler_outages,
            self.handler_down,
            self.handler_outage_seconds,
            self.handler_outage_waits,
        ):
            series.labels(handler)
