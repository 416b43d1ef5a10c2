"""Build the Grafana dashboard for tuya-events: ``tuya-events-dashboard.json`` next to this file.

Run it after changing a panel (``python deploy/grafana/build_dashboard.py``); ``--check`` exits 1
when the committed JSON is not what this script builds (tests/test_deploy_monitoring.py checks the
same). Grafana 10+ schema; the Prometheus data source is the ``datasource`` variable, and
``job``, ``instance`` and ``handler`` variables filter every query.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

OUTPUT = Path(__file__).resolve().with_name("tuya-events-dashboard.json")
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
# Every query selects the chosen job(s) and instance(s); handler panels also the handler(s).
SEL = 'job=~"$job", instance=~"$instance"'
HSEL = f'{SEL}, handler=~"$handler"'
RATE = "[$__rate_interval]"

Panel = dict[str, Any]


def target(expr: str, legend: str = "", ref: str = "A", instant: bool = False) -> dict[str, Any]:
    return {
        "datasource": DATASOURCE,
        "editorMode": "code",
        "expr": expr,
        "instant": instant,
        "legendFormat": legend or "__auto",
        "range": not instant,
        "refId": ref,
    }


def targets(*queries: tuple[str, str], instant: bool = False) -> list[dict[str, Any]]:
    return [
        target(expr, legend, chr(ord("A") + i), instant) for i, (expr, legend) in enumerate(queries)
    ]


def timeseries(
    title: str,
    description: str,
    queries: list[tuple[str, str]],
    unit: str = "short",
    width: int = 8,
    stack: bool = False,
    min_zero: bool = True,
) -> Panel:
    defaults: dict[str, Any] = {
        "unit": unit,
        "custom": {
            "drawStyle": "line",
            "lineWidth": 1,
            "fillOpacity": 10,
            "showPoints": "never",
            "spanNulls": False,
            "stacking": {"mode": "normal" if stack else "none", "group": "A"},
        },
    }
    if min_zero:
        defaults["min"] = 0
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": targets(*queries),
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
        "gridPos": {"w": width, "h": 8},
    }


def stat(
    title: str,
    description: str,
    queries: list[tuple[str, str]],
    unit: str = "short",
    width: int = 4,
    mappings: list[dict[str, Any]] | None = None,
    steps: list[tuple[str, float | None]] | None = None,
    text_mode: str = "value_and_name",
    height: int = 4,
) -> Panel:
    return {
        "type": "stat",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": targets(*queries, instant=True),
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                "mappings": mappings or [],
                "thresholds": {
                    "mode": "absolute",
                    "steps": [
                        {"color": color, "value": value}
                        for color, value in (steps or [("green", None)])
                    ],
                },
            },
            "overrides": [],
        },
        "options": {
            "colorMode": "background" if mappings else "value",
            "graphMode": "none",
            "justifyMode": "auto",
            "orientation": "auto",
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "textMode": text_mode,
        },
        "gridPos": {"w": width, "h": height},
    }


def value_map(*entries: tuple[str, str, str]) -> list[dict[str, Any]]:
    """Grafana value mappings: (value, text, color)."""
    return [
        {
            "type": "value",
            "options": {
                value: {"text": text, "color": color, "index": i}
                for i, (value, text, color) in enumerate(entries)
            },
        }
    ]


def quantiles(metric: str, by: str, selector: str, legend: str) -> list[tuple[str, str]]:
    """p50, p90 and p99 of a histogram, per ``by`` label (besides ``le``)."""
    group = f"le, {by}" if by else "le"
    return [
        (
            f"histogram_quantile({q}, sum by ({group}) "
            f"(rate({metric}_bucket{{{selector}}}{RATE})))",
            f"p{round(q * 100)}{legend}",
        )
        for q in (0.5, 0.9, 0.99)
    ]


def overview() -> list[Panel]:
    return [
        stat(
            "Up",
            "Prometheus' scrape of each instance (up).",
            [(f"up{{{SEL}}}", "{{instance}}")],
            mappings=value_map(("0", "DOWN", "red"), ("1", "UP", "green")),
        ),
        stat(
            "Version",
            "tuya_events_build_info: the running version of each instance.",
            [(f"tuya_events_build_info{{{SEL}}}", "{{instance}}: {{version}}")],
            text_mode="name",
        ),
        stat(
            "Broker connected",
            "Connected to Tuya's message service (the main condition of /readyz).",
            [(f"tuya_events_broker_connected{{{SEL}}}", "{{instance}}")],
            mappings=value_map(("0", "DISCONNECTED", "red"), ("1", "CONNECTED", "green")),
        ),
        stat(
            "In flight",
            "Messages received and not yet finished. At consumer.max_in_flight, receiving pauses:"
            " the handlers are the bottleneck.",
            [(f"tuya_events_in_flight_messages{{{SEL}}}", "{{instance}}")],
        ),
        stat(
            "Dead-letter records",
            "Records in the dead-letter store (tuya-events dlq list / replay / purge).",
            [(f"tuya_events_dead_letter_records{{{SEL}}}", "{{instance}}")],
            steps=[("green", None), ("orange", 1)],
        ),
        stat(
            "Uptime",
            "Time since the process started.",
            [(f"time() - process_start_time_seconds{{{SEL}}}", "{{instance}}")],
            unit="s",
        ),
    ]


def throughput() -> list[Panel]:
    return [
        timeseries(
            "Messages received vs acknowledged",
            "Per second. Acknowledged follows received once handled or dead-lettered; a lasting"
            " gap means messages are stuck in flight.",
            [
                (
                    f"sum by (instance) (rate(tuya_events_messages_received_total{{{SEL}}}{RATE}))",
                    "received {{instance}}",
                ),
                (
                    f"sum by (instance) (rate(tuya_events_messages_acked_total{{{SEL}}}{RATE}))",
                    "acknowledged {{instance}}",
                ),
            ],
            unit="ops",
        ),
        timeseries(
            "Received by partition",
            "Per second, per topic partition. With several instances on the Failover"
            " subscription, each partition is served by one of them.",
            [
                (
                    f"sum by (partition) "
                    f"(rate(tuya_events_messages_received_total{{{SEL}}}{RATE}))",
                    "partition {{partition}}",
                )
            ],
            unit="ops",
            stack=True,
        ),
        timeseries(
            "Events by kind",
            "Decoded events per second: status, device_event, generic.",
            [
                (
                    f"sum by (kind) (rate(tuya_events_events_total{{{SEL}}}{RATE}))",
                    "{{kind}}",
                )
            ],
            unit="ops",
            stack=True,
        ),
    ]


def errors() -> list[Panel]:
    return [
        timeseries(
            "Decode failures by reason and em",
            "Per second. gcm_auth_failed or bad_padding on every message: a wrong access secret,"
            " or the project switched its encryption.",
            [
                (
                    f"sum by (reason, em) (rate(tuya_events_decode_failures_total{{{SEL}}}{RATE}))",
                    "{{reason}} ({{em}})",
                )
            ],
            unit="ops",
        ),
        timeseries(
            "Handler outcomes",
            "Per second, by handler and outcome: success, retry, failure (gave up: dead letter),"
            " duplicate (skipped on a redelivery), unmatched (its match rules did not apply);"
            " and the messages seen again (an event already handled here came again), and the"
            " events the shared dedupe ledger skipped (handled by another instance).",
            [
                (
                    f"sum by (handler, outcome) "
                    f"(rate(tuya_events_handler_outcomes_total{{{HSEL}}}{RATE}))",
                    "{{handler}} {{outcome}}",
                ),
                (
                    f"sum by (instance) (rate(tuya_events_messages_seen_again_total{{{SEL}}}"
                    f"{RATE}))",
                    "seen again {{instance}}",
                ),
                (
                    f"sum by (handler) (rate(tuya_events_ledger_skipped_total{{{HSEL}}}{RATE}))",
                    "{{handler}} skipped (ledger)",
                ),
            ],
            unit="ops",
        ),
        timeseries(
            "Dead letters by stage and reason",
            "Messages written to the dead-letter store, per second, each once; 'again' are "
            "messages that failed again after they were dead-lettered (delivered again when a "
            "broker restart lost the acknowledgement): their record was updated, not repeated.",
            [
                (
                    f"sum by (stage, reason) (rate(tuya_events_dead_letters_total{{{SEL}}}{RATE}))",
                    "{{stage}} {{reason}}",
                ),
                (
                    f"sum by (stage, reason) "
                    f"(rate(tuya_events_dead_letters_seen_again_total{{{SEL}}}{RATE}))",
                    "again: {{stage}} {{reason}}",
                ),
            ],
            unit="ops",
        ),
        timeseries(
            "Dead-letter records",
            "Records in the dead-letter store: grows with dead letters, shrinks with successful"
            " replays and purges.",
            [(f"tuya_events_dead_letter_records{{{SEL}}}", "{{instance}}")],
        ),
        timeseries(
            "Dead-letter write failures",
            "Failed writes to the dead-letter store, per second. The message stays"
            " unacknowledged and the write is retried: check the store's disk.",
            [
                (
                    f"sum by (instance) "
                    f"(rate(tuya_events_dead_letter_write_failures_total{{{SEL}}}{RATE}))",
                    "{{instance}}",
                )
            ],
            unit="ops",
        ),
        timeseries(
            "Sign mismatches",
            "Envelopes whose sign did not match, per second (sign_check: log counts them and"
            " goes on).",
            [
                (
                    f"sum by (instance) (rate(tuya_events_sign_mismatches_total{{{SEL}}}{RATE}))",
                    "{{instance}}",
                )
            ],
            unit="ops",
        ),
    ]


def latency() -> list[Panel]:
    return [
        timeseries(
            "Handler duration",
            "One handler call (each attempt), p50 / p90 / p99 per handler.",
            quantiles("tuya_events_handler_duration_seconds", "handler", HSEL, " {{handler}}"),
            unit="s",
            width=16,
        ),
        timeseries(
            "Handler calls",
            "Handler calls (attempts) per second.",
            [
                (
                    f"sum by (handler) "
                    f"(rate(tuya_events_handler_duration_seconds_count{{{HSEL}}}{RATE}))",
                    "{{handler}}",
                )
            ],
            unit="ops",
        ),
    ]


def lag() -> list[Panel]:
    age = "tuya_events_event_age_seconds"
    return [
        timeseries(
            "Event age on receipt",
            "Now minus the broker's publish time when a message is received, p50 / p99. High"
            " after an outage while the backlog drains; lastingly high: the daemon cannot keep"
            " up (or the clock is off).",
            [
                (
                    f"histogram_quantile({q}, sum by (le) (rate({age}_bucket{{{SEL}}}{RATE})))",
                    f"p{round(q * 100)}",
                )
                for q in (0.5, 0.99)
            ],
            unit="s",
            width=12,
        ),
        timeseries(
            "Seconds since the last message",
            "time() - tuya_events_last_message_timestamp_seconds (no value before the first"
            " message). A quiet project may legitimately be silent for a long time.",
            [
                (
                    f"time() - (tuya_events_last_message_timestamp_seconds{{{SEL}}} > 0)",
                    "{{instance}}",
                )
            ],
            unit="s",
            width=12,
        ),
    ]


def dependencies() -> list[Panel]:
    panels = [
        timeseries(
            "Handler targets down",
            "1 while a handler's target (database, webhook receiver, OpenAPI) is down: its "
            "messages wait and one probe at a time tries the target (at most "
            "retry.outage_probe_max apart); with the messages that started waiting per second.",
            [
                (f"max by (handler) (tuya_events_handler_down{{{HSEL}}})", "down {{handler}}"),
                (
                    f"sum by (handler) (rate(tuya_events_handler_outage_waits_total{{{HSEL}}}"
                    f"{RATE}))",
                    "waiting {{handler}}",
                ),
            ],
        ),
        timeseries(
            "Handler outages",
            "Outages that began per hour, and the share of the time the target was down "
            "(counted when each outage ends), per handler.",
            [
                (
                    f"sum by (handler) (increase(tuya_events_handler_outages_total{{{HSEL}}}[1h]))",
                    "outages/h {{handler}}",
                ),
                (
                    f"sum by (handler) (rate(tuya_events_handler_outage_seconds_total{{{HSEL}}}"
                    f"{RATE}))",
                    "share down {{handler}}",
                ),
            ],
        ),
        timeseries(
            "Webhook requests by status class",
            "Per second: 2xx, 3xx, 4xx, 5xx, network_error, timeout.",
            [
                (
                    f"sum by (handler, status_class) "
                    f"(rate(tuya_events_webhook_requests_total{{{HSEL}}}{RATE}))",
                    "{{handler}} {{status_class}}",
                )
            ],
            unit="reqps",
        ),
        timeseries(
            "Database flush duration (p99)",
            "Time to write one batch to the database, 99th percentile per handler.",
            [
                (
                    "histogram_quantile(0.99, sum by (le, handler) "
                    f"(rate(tuya_events_database_flush_duration_seconds_bucket{{{HSEL}}}{RATE})))",
                    "p99 {{handler}}",
                )
            ],
            unit="s",
        ),
        timeseries(
            "Database batch size",
            "Events per database batch: average and p99 per handler.",
            [
                (
                    f"sum by (handler) (rate(tuya_events_database_batch_size_sum{{{HSEL}}}{RATE}))"
                    " / sum by (handler) "
                    f"(rate(tuya_events_database_batch_size_count{{{HSEL}}}{RATE}))",
                    "average {{handler}}",
                ),
                (
                    "histogram_quantile(0.99, sum by (le, handler) "
                    f"(rate(tuya_events_database_batch_size_bucket{{{HSEL}}}{RATE})))",
                    "p99 {{handler}}",
                ),
            ],
        ),
        timeseries(
            "OpenAPI calls by endpoint class and outcome",
            "Per second. outcome is success, a Tuya error code, network_error or http_5xx.",
            [
                (
                    f"sum by (endpoint_class, outcome) "
                    f"(rate(tuya_events_openapi_requests_total{{{SEL}}}{RATE}))",
                    "{{endpoint_class}} {{outcome}}",
                )
            ],
            unit="reqps",
        ),
        timeseries(
            "OpenAPI latency",
            "Tuya OpenAPI call latency, p50 / p90 / p99 per endpoint class.",
            quantiles(
                "tuya_events_openapi_request_duration_seconds",
                "endpoint_class",
                SEL,
                " {{endpoint_class}}",
            ),
            unit="s",
        ),
        timeseries(
            "OpenAPI rate-limit waits",
            "Time calls waited for the rate limiter: p99 of one wait, and the seconds waited per"
            " second (1 = one call always waiting).",
            [
                (
                    "histogram_quantile(0.99, sum by (le, endpoint_class) "
                    f"(rate(tuya_events_openapi_rate_limit_wait_seconds_bucket{{{SEL}}}{RATE})))",
                    "p99 wait {{endpoint_class}}",
                ),
                (
                    f"sum by (endpoint_class) "
                    f"(rate(tuya_events_openapi_rate_limit_wait_seconds_sum{{{SEL}}}{RATE}))",
                    "waiting {{endpoint_class}}",
                ),
            ],
            unit="s",
        ),
        stat(
            "Token refreshes (time range)",
            "Access token fetches and refreshes in the dashboard's time range, by outcome. Any"
            " failure: check the access secret, the region and the clock.",
            [
                (
                    f"sum by (outcome) "
                    f"(increase(tuya_events_openapi_token_refreshes_total{{{SEL}}}[$__range]))",
                    "{{outcome}}",
                )
            ],
            width=6,
            height=8,
        ),
    ]
    for panel in panels:  # seven panels: four on a line, then three
        panel["gridPos"]["w"] = 6
    return panels


def devices() -> list[Panel]:
    """The device catalogue and enrichment (docs/operating.md, "The device catalogue")."""
    enrichment = "tuya_events_enrichment_total"
    calls = "tuya_events_catalogue_calls_total"
    # Events of a device: every outcome but no_device (an event that names no device).
    of_devices = f'{enrichment}{{{SEL}, outcome=~"hit|waited|timed_out|unknown"}}'

    def share(outcomes: str) -> str:
        return (
            f'sum by (instance) (rate({enrichment}{{{SEL}, outcome=~"{outcomes}"}}{RATE}))'
            f" / sum by (instance) (rate({of_devices}{RATE}))"
        )

    return [
        stat(
            "Catalogue devices",
            "Devices in the local catalogue (catalogue.path): what enrichment can name without"
            " an OpenAPI call.",
            [(f"tuya_events_catalogue_devices{{{SEL}}}", "{{instance}}")],
            height=8,
        ),
        stat(
            "Catalogue paused",
            "PAUSED: Tuya refused the catalogue's calls (quota or subscription, 2884xxxx) and it"
            " makes none for catalogue.quota_pause; events go on without names meanwhile"
            " (alert TuyaEventsCatalogueQuotaPaused).",
            [(f"tuya_events_catalogue_paused{{{SEL}}}", "{{instance}}")],
            mappings=value_map(("0", "CALLING", "green"), ("1", "PAUSED", "red")),
            height=8,
        ),
        stat(
            "Catalogue calls (time range)",
            "OpenAPI calls the catalogue made in the dashboard's time range, by call. A trial"
            " project's quota is about 26,000 calls a month, for everything that uses its keys.",
            [(f"sum by (call) (increase({calls}{{{SEL}}}[$__range]))", "{{call}}")],
            height=8,
        ),
        timeseries(
            "Enrichment outcomes",
            "Events per second by outcome: hit (device known), waited (known after waiting for"
            " its lookup), timed_out (went on unenriched after enrichment.max_wait), unknown"
            " (went on unenriched at once: lookup failed, paused, or asked again later),"
            " no_device (the event names no device).",
            [
                (
                    f"sum by (outcome) (rate({enrichment}{{{SEL}}}{RATE}))",
                    "{{outcome}}",
                )
            ],
            unit="ops",
            width=12,
            stack=True,
        ),
        timeseries(
            "Enriched share",
            "Share of the events of a device that carried its names: hits alone, and hits plus"
            " the events that waited for a lookup. The rest went on without names (alert"
            " TuyaEventsEnrichmentMisses above 10% of them).",
            [
                (share("hit"), "hits {{instance}}"),
                (share("hit|waited"), "hits + waited {{instance}}"),
            ],
            unit="percentunit",
        ),
        timeseries(
            "Enrichment wait",
            "How long the messages of a device seen for the first time waited for its lookup,"
            " p50 / p99 (at most enrichment.max_wait), and such waits per second.",
            [
                *(
                    (
                        f"histogram_quantile({q}, sum by (le) "
                        f"(rate(tuya_events_enrichment_wait_seconds_bucket{{{SEL}}}{RATE})))",
                        f"p{round(q * 100)}",
                    )
                    for q in (0.5, 0.99)
                ),
                (
                    f"sum(rate(tuya_events_enrichment_wait_seconds_count{{{SEL}}}{RATE}))",
                    "waits/s",
                ),
            ],
            unit="s",
        ),
        timeseries(
            "Catalogue calls by call and outcome",
            "Calls per second: list, details (batched), specification (one per product), status;"
            " outcome success or the Tuya code (1106, 28841004, ...), network_error, timeout,"
            " http_5xx (alert TuyaEventsCatalogueCallsFailing when none succeeds for 30 minutes).",
            [
                (
                    f"sum by (call, outcome) (rate({calls}{{{SEL}}}{RATE}))",
                    "{{call}} {{outcome}}",
                )
            ],
            unit="reqps",
        ),
        timeseries(
            "Catalogue pauses",
            "1 while the catalogue is paused after a quota or subscription error, and the"
            " pauses that began per hour by Tuya code (28841004 quota spent, 28841002"
            " subscription expired, 28841101 / 28841105 not subscribed or not authorized).",
            [
                (
                    f"max by (instance) (tuya_events_catalogue_paused{{{SEL}}})",
                    "paused {{instance}}",
                ),
                (
                    f"sum by (code) (increase(tuya_events_catalogue_pauses_total{{{SEL}}}[1h]))",
                    "pauses/h {{code}}",
                ),
            ],
        ),
        timeseries(
            "Lookup failures",
            "Devices the catalogue could not fetch, per second, by reason: not_found (the"
            " OpenAPI does not know it), a Tuya code, network_error, timeout. Each is asked"
            " again after catalogue.retry_failed (an unreachable OpenAPI: with backoff).",
            [
                (
                    f"sum by (reason) "
                    f"(rate(tuya_events_catalogue_lookup_failures_total{{{SEL}}}{RATE}))",
                    "{{reason}}",
                )
            ],
            unit="ops",
        ),
        timeseries(
            "Device refreshes",
            "Devices fetched per second, by trigger: first_seen (an unknown device's first"
            " event), event (a rename or binding), periodic (older than"
            " catalogue.refresh_interval), sync (start-up or tuya-events devices sync).",
            [
                (
                    f"sum by (trigger) "
                    f"(rate(tuya_events_catalogue_device_refreshes_total{{{SEL}}}{RATE}))",
                    "{{trigger}}",
                )
            ],
            unit="ops",
            stack=True,
        ),
    ]


# The last gap's colours: orange past resync.after's default (a resync ran), red past Tuya's
# retention of unacknowledged messages (messages were lost). tests/test_deploy_monitoring.py
# holds them against tuya_events/config/settings.py and tuya_events/resync/watch.py.
RESYNC_AFTER_SECONDS = 6300
RETENTION_SECONDS = 7200
# Seconds after Tuya's last backlog notice that its backlog still counts as reported: notices
# repeat every 15 minutes while it stays above the threshold (as TuyaEventsBacklogNotice).
NOTICE_FRESH_SECONDS = 1200


def with_time_of(panel: Panel, ref: str) -> Panel:
    """Show query ``ref`` of a stat as a time ("3 minutes ago"), in the text colour."""
    panel["fieldConfig"]["overrides"].append(
        {
            "matcher": {"id": "byFrameRefID", "options": ref},
            "properties": [
                {"id": "unit", "value": "dateTimeFromNow"},
                {"id": "color", "value": {"mode": "fixed", "fixedColor": "text"}},
            ],
        }
    )
    return panel


def gaps_and_notices() -> list[Panel]:
    """Gaps in consumption, the resyncs that fill them, Tuya's notices (docs/operating.md,
    "Gaps, resync and notices")."""
    last_gap = with_time_of(
        stat(
            "Last gap",
            "The last gap in consumption each instance measured (at start, since its last"
            " record of consuming in the state directory; or on reconnecting), and when."
            " Orange: longer than resync.after (1h45m by default): a resync ran. Red: longer"
            " than the about 2 hours Tuya keeps messages: messages were lost for good (alert"
            " TuyaEventsGapLongerThanRetention). Nothing measures it with resync.enabled: false.",
            [
                (f"tuya_events_consumption_gap_seconds{{{SEL}}}", "{{instance}}"),
                (
                    f"tuya_events_consumption_gap_timestamp_seconds{{{SEL}}} * 1000 > 0",
                    "measured {{instance}}",
                ),
            ],
            unit="s",
            steps=[
                ("green", None),
                ("orange", RESYNC_AFTER_SECONDS),
                ("red", RETENTION_SECONDS),
            ],
            height=8,
        ),
        "B",
    )
    running = stat(
        "Resync running",
        "Resyncs in progress in the daemon: every catalogued device's status read from the"
        " OpenAPI and sent through the handlers as events (source: resync).",
        [(f"tuya_events_resync_running{{{SEL}}}", "{{instance}}")],
        mappings=[
            *value_map(("0", "IDLE", "green")),
            {
                "type": "range",
                "options": {"from": 1, "to": None, "result": {"text": "RUNNING", "color": "blue"}},
            },
        ],
        height=8,
    )
    backlog = with_time_of(
        stat(
            "Backlog Tuya reports",
            "The backlog (messages waiting on the subscription) in Tuya's last backlog notice,"
            " and when Tuya sent it. Tuya sends a notice every 15 minutes while the backlog is"
            " above the threshold set in its console and none when it falls back: a notice"
            " older than 20 minutes is old news (alert TuyaEventsBacklogNotice).",
            [
                (f"tuya_events_notice_backlog{{{SEL}}}", "backlog {{instance}}"),
                (
                    f"tuya_events_notice_last_timestamp_seconds{{{SEL}}} * 1000 > 0",
                    "last notice {{instance}}",
                ),
            ],
            height=8,
        ),
        "B",
    )
    backlog["fieldConfig"]["defaults"]["color"] = {"mode": "fixed", "fixedColor": "text"}
    return [
        last_gap,
        running,
        timeseries(
            "Resync runs by trigger",
            "Resyncs started in the past hour, by trigger: start (a gap at start), reconnect (a"
            " gap on reconnecting); and the resyncs running. A `tuya-events resync` command"
            " counts in its own process (trigger command), not here.",
            [
                (
                    f"sum by (trigger) (increase(tuya_events_resync_runs_total{{{SEL}}}[1h]))",
                    "runs/h {{trigger}}",
                ),
                (
                    f"max by (instance) (tuya_events_resync_running{{{SEL}}})",
                    "running {{instance}}",
                ),
            ],
        ),
        timeseries(
            "Devices resynced / failed",
            "Devices resynced (a status event from the OpenAPI) and failed (not read after the"
            " resync's retries, alert TuyaEventsResyncFailures) in the past hour. The log line"
            " 'resync finished with failures' names each device and reason.",
            [
                (
                    f"sum by (outcome) (increase(tuya_events_resync_devices_total{{{SEL}}}[1h]))",
                    "{{outcome}}/h",
                )
            ],
        ),
        timeseries(
            "Notices by type",
            "Tuya's high-priority notices per hour, by eventType. pulsar_backlog_notice comes"
            " every 15 minutes (about 4 an hour) while the subscription's backlog is above the"
            " console's threshold.",
            [
                (
                    f"sum by (event_type) (increase(tuya_events_notices_total{{{SEL}}}[1h]))",
                    "{{event_type}}",
                )
            ],
        ),
        backlog,
        timeseries(
            "Backlog while Tuya reports it",
            "The backlog of Tuya's last backlog notice, drawn only while the notice is less"
            " than 20 minutes old: the gauge keeps its last value after the backlog fell back,"
            " as no all-clear comes.",
            [
                (
                    f"tuya_events_notice_backlog{{{SEL}}} and on (job, instance)"
                    f" (time() - tuya_events_notice_last_timestamp_seconds{{{SEL}}})"
                    f" < {NOTICE_FRESH_SECONDS}",
                    "backlog {{instance}}",
                )
            ],
            width=12,
        ),
    ]


def runtime() -> list[Panel]:
    return [
        timeseries(
            "CPU",
            "Process CPU time per second (1 = one core busy).",
            [
                (
                    f"rate(process_cpu_seconds_total{{{SEL}}}{RATE})",
                    "{{instance}}",
                )
            ],
            unit="percentunit",
            width=6,
        ),
        timeseries(
            "Resident memory",
            "process_resident_memory_bytes.",
            [(f"process_resident_memory_bytes{{{SEL}}}", "{{instance}}")],
            unit="bytes",
            width=6,
        ),
        timeseries(
            "Open file descriptors",
            "Open file descriptors against the process limit.",
            [
                (f"process_open_fds{{{SEL}}}", "open {{instance}}"),
                (f"process_max_fds{{{SEL}}}", "max {{instance}}"),
            ],
            width=6,
        ),
        timeseries(
            "GC collections",
            "Python garbage collections per second, by generation.",
            [
                (
                    f"sum by (instance, generation) "
                    f"(rate(python_gc_collections_total{{{SEL}}}{RATE}))",
                    "{{instance}} gen {{generation}}",
                )
            ],
            unit="ops",
            width=6,
        ),
        timeseries(
            "HTTP listener",
            "The /metrics and probe listener: open connections, the ones it closed itself per "
            "second (header_timeout: no complete request header in time; evicted: to make room "
            "at the connection limit; rejected) and failed accept() calls per second (out of "
            "file descriptors). Normally a connection or two and zeros; more means clients "
            "holding connections open, or the process out of descriptors (docs/operating.md).",
            [
                (f"tuya_events_http_connections{{{SEL}}}", "open {{instance}}"),
                (
                    f"sum by (instance, reason) "
                    f"(rate(tuya_events_http_connections_dropped_total{{{SEL}}}{RATE}))",
                    "{{reason}} {{instance}}",
                ),
                (
                    f"rate(tuya_events_http_accept_failures_total{{{SEL}}}{RATE})",
                    "failed accepts {{instance}}",
                ),
            ],
            width=12,
        ),
        stat(
            "Configuration",
            "Whether each instance runs on its configuration file: RELOAD FAILED while the last"
            " reload (SIGHUP) was not applied (a file that does not validate, or a key that"
            " needs a restart): the old configuration runs on, and the log names every problem.",
            [(f"tuya_events_config_reload_failed{{{SEL}}}", "{{instance}}")],
            width=6,
            mappings=value_map(("0", "CURRENT", "green"), ("1", "RELOAD FAILED", "red")),
            height=8,
        ),
        stat(
            "Reloads (time range)",
            "Configuration reloads in the dashboard's time range, by outcome: applied, invalid"
            " (the file does not validate), refused (a key that needs a restart changed),"
            " failed (a handler could not start).",
            [
                (
                    f"sum by (outcome) "
                    f"(increase(tuya_events_config_reloads_total{{{SEL}}}[$__range]))",
                    "{{outcome}}",
                )
            ],
            width=6,
            height=8,
        ),
    ]


ROWS = (
    ("Overview", overview),
    ("Throughput", throughput),
    ("Errors", errors),
    ("Latency", latency),
    ("Lag", lag),
    ("Dependencies", dependencies),
    ("Devices", devices),
    ("Gaps and notices", gaps_and_notices),
    ("Runtime", runtime),
)


def layout() -> list[Panel]:
    """Rows with their panels, left to right and wrapping at Grafana's 24 columns."""
    panels: list[Panel] = []
    y = 0
    next_id = 1
    for title, build in ROWS:
        panels.append(
            {
                "type": "row",
                "id": next_id,
                "title": title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
                "panels": [],
            }
        )
        next_id += 1
        y += 1
        x = 0
        row_height = 0
        for panel in build():
            grid = panel["gridPos"]
            if x + grid["w"] > 24:
                x, y, row_height = 0, y + row_height, 0
            panel["gridPos"] = {"h": grid["h"], "w": grid["w"], "x": x, "y": y}
            panel["id"] = next_id
            next_id += 1
            x += grid["w"]
            row_height = max(row_height, grid["h"])
            panels.append(panel)
        y += row_height
    return panels


def query_variable(name: str, label: str, query: str) -> dict[str, Any]:
    return {
        "type": "query",
        "name": name,
        "label": label,
        "datasource": DATASOURCE,
        "definition": query,
        "query": query,
        "refresh": 2,
        "sort": 1,
        "multi": True,
        "includeAll": True,
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "options": [],
        "hide": 0,
        "regex": "",
    }


def dashboard() -> dict[str, Any]:
    return {
        "__requires": [
            {"type": "grafana", "id": "grafana", "name": "Grafana", "version": "10.0.0"},
            {"type": "datasource", "id": "prometheus", "name": "Prometheus", "version": "1.0.0"},
            {"type": "panel", "id": "stat", "name": "Stat", "version": ""},
            {"type": "panel", "id": "timeseries", "name": "Time series", "version": ""},
        ],
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "description": "tuya-events: Tuya message service consumer (docs/monitoring.md).",
        "editable": True,
        "fiscalYearStartMonth": 0,
        "graphTooltip": 1,
        "links": [],
        "panels": layout(),
        "refresh": "30s",
        "schemaVersion": 38,
        "tags": ["tuya-events", "tuya", "pulsar"],
        "templating": {
            "list": [
                {
                    "type": "datasource",
                    "name": "datasource",
                    "label": "Data source",
                    "query": "prometheus",
                    "current": {},
                    "options": [],
                    "hide": 0,
                    "refresh": 1,
                    "regex": "",
                },
                query_variable("job", "Job", "label_values(tuya_events_build_info, job)"),
                query_variable(
                    "instance",
                    "Instance",
                    'label_values(tuya_events_build_info{job=~"$job"}, instance)',
                ),
                query_variable(
                    "handler",
                    "Handler",
                    f"label_values(tuya_events_handler_outcomes_total{{{SEL}}}, handler)",
                ),
            ]
        },
        "time": {"from": "now-6h", "to": "now"},
        "timepicker": {},
        "timezone": "",
        "title": "tuya-events",
        "uid": "tuya-events",
        "version": 1,
        "weekStart": "",
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if the committed JSON is out of date"
    )
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = OUTPUT.read_text(encoding="utf-8") if OUTPUT.exists() else ""
        if current != text:
            print(f"{OUTPUT} is out of date: run {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
