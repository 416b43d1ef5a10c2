"""The Grafana dashboard and the Prometheus alert rules in deploy/ against the real daemon.

Every metric name (and label) their PromQL uses must be on a live ``tuya-events demo``'s
/metrics; ``promtool check rules`` must accept the rules (and reject broken copies);
``promtool test rules`` runs the alerts' unit tests; the dashboard JSON must be what
deploy/grafana/build_dashboard.py builds, well formed for Grafana. promtool comes from
scripts/ensure-promtool.sh (``make test-deps``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.metrics_core import Metric

from tests.support.cli import start_demo, wait_until_serving
from tests.support.http import http_get
from tests.support.paths import ROOT
from tests.support.ports import free_port
from tuya_events.config.settings import ResyncSettings
from tuya_events.observability.metrics import Metrics
from tuya_events.resync.watch import RETENTION_SECONDS

RULES = ROOT / "deploy" / "prometheus" / "tuya-events-alerts.yaml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "tuya-events-alerts.test.yaml"
DASHBOARD = ROOT / "deploy" / "grafana" / "tuya-events-dashboard.json"
GENERATOR = ROOT / "deploy" / "grafana" / "build_dashboard.py"

# Series Prometheus adds to every target itself, and the labels it attaches to every series.
SCRAPE_SERIES: dict[str, set[str]] = {"up": set()}
TARGET_LABELS = {"job", "instance"}

REQUIRED_ALERTS = {
    "TuyaEventsDown",
    "TuyaEventsStreamStalled",
    "TuyaEventsNotConnected",
    "TuyaEventsDeadLettersGrowing",
    "TuyaEventsDecodeFailures",
    "TuyaEventsHandlerErrorRatio",
    "TuyaEventsOpenAPITokenFailures",
    "TuyaEventsDeadLetterWriteFailures",
    "TuyaEventsEventAgeHigh",
    "TuyaEventsCatalogueQuotaPaused",
    "TuyaEventsEnrichmentMisses",
    "TuyaEventsCatalogueCallsFailing",
    "TuyaEventsGapLongerThanRetention",
    "TuyaEventsResyncFailures",
    "TuyaEventsBacklogNotice",
    "TuyaEventsConfigReloadFailed",
}


# -- PromQL: which metric names and labels an expression uses ---------------------------------

STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^()]*)\)")
RANGE = re.compile(r"\[[^\]]*\]")
# An identifier not preceded by a word character, ':', '.' or '$' (so not part of a number,
# a duration such as 15m, or a Grafana variable), with its label matchers, and whether a '('
# follows (a function or aggregation, not a metric).
IDENTIFIER = re.compile(r"(?<![\w:.$])([A-Za-z_:][\w:]*)\s*(?:\{([^}]*)\})?(\s*\()?", re.ASCII)
MATCHER = re.compile(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)")
KEYWORDS = {
    "and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left",
    "group_right", "inf", "nan",
}  # fmt: skip
LABEL_VALUES = re.compile(r"label_values\((.*),\s*([A-Za-z_]\w*)\s*\)", re.DOTALL)


@dataclass
class Query:
    """What one PromQL expression refers to."""

    metrics: dict[str, set[str]] = field(default_factory=dict)  # name -> labels it matches on
    grouping: set[str] = field(default_factory=set)  # labels in by/without/on/ignoring/group_*


def parse_promql(expr: str) -> Query:
    query = Query()
    text = STRING.sub('""', expr)
    for labels in GROUPING.findall(text):
        query.grouping.update(label.strip() for label in labels.split(",") if label.strip())
    text = RANGE.sub("", GROUPING.sub("", text))
    for match in IDENTIFIER.finditer(text):
        name, matchers, call = match.groups()
        if call or name.lower() in KEYWORDS:
            continue
        query.metrics.setdefault(name, set()).update(MATCHER.findall(matchers or ""))
    return query


def test_parse_promql_finds_metrics_and_labels_not_functions_keywords_or_variables() -> None:
    query = parse_promql(
        'histogram_quantile(0.99, sum by (le, handler) (rate(tuya_events_x_bucket{job=~"$job",'
        ' handler=~"a|b{c}"}[$__rate_interval]))) > 1e3 and on (instance) time() - '
        "(tuya_events_y > 0 or process_start_time_seconds offset 15m) > bool 600 unless "
        'absent(up{job="tuya-events"}) / ignoring(le) group_left(kind) sum(z_total) by (kind)'
    )
    assert query.metrics == {
        "tuya_events_x_bucket": {"job", "handler"},
        "tuya_events_y": set(),
        "process_start_time_seconds": set(),
        "up": {"job"},
        "z_total": set(),
    }
    assert query.grouping == {"le", "handler", "instance", "kind"}


# -- what the daemon exposes -----------------------------------------------------------------


SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
}


def daemon_metrics() -> list[MetricWrapperBase]:
    """The daemon's own metric objects (tuya_events_*), from a fresh Metrics."""
    return [metric for metric in vars(Metrics()).values() if isinstance(metric, MetricWrapperBase)]


def message_count_families() -> list[Metric]:
    """The per-message families (observability/counting.py: received, events, handler
    outcomes, enrichment, ...), which a collector yields at scrape time, not metric objects."""
    return list(Metrics().counts.collect())


def family_names() -> set[str]:
    """Every tuya_events_* family the daemon has, by base name (no _total, _bucket, ...)."""
    return {metric._name for metric in daemon_metrics()} | {
        family.name for family in message_count_families()
    }


@dataclass
class Exposition:
    """Series names a scrape of the daemon yields, with the label names each can carry."""

    series: dict[str, set[str]]

    @classmethod
    def parse(cls, text: str) -> Exposition:
        series: dict[str, set[str]] = {}
        for line in text.splitlines():
            if line.startswith("# TYPE "):
                name, kind = line.split()[2:4]
                # A family with no sample yet (labelled, no child created) still has its TYPE
                # line: derive the series names it will have. prometheus_client writes a
                # counter's TYPE as name_total, older formats as the base name.
                if kind == "counter":
                    base = name.removesuffix("_total")
                    names = [f"{base}_total", f"{base}_created"]
                elif kind == "histogram":
                    names = [f"{name}_bucket", f"{name}_sum", f"{name}_count", f"{name}_created"]
                elif kind == "summary":
                    names = [name, f"{name}_sum", f"{name}_count", f"{name}_created"]
                else:
                    names = [name]
                for series_name in names:
                    series.setdefault(series_name, set())
                if kind == "histogram":
                    series[f"{name}_bucket"].add("le")
            elif line and not line.startswith("#"):
                match = re.match(r"([A-Za-z_:][\w:]*)(?:\{(.*)\})? ", line)
                assert match, line
                name, labels = match.groups()
                series.setdefault(name, set()).update(re.findall(r'(\w+)="', labels or ""))
        # Label names of families without samples: from the metric objects themselves.
        for metric in daemon_metrics():
            suffixes = SUFFIXES.get(metric._type, ("",))
            for suffix in suffixes:
                if metric._name + suffix in series:
                    series[metric._name + suffix].update(metric._labelnames)
        # And of the per-message families (enrichment outcomes before the first event, ...).
        for family in message_count_families():
            for suffix in SUFFIXES.get(family.type, ("",)):
                if family.name + suffix in series:
                    series[family.name + suffix].update(family._labelnames)
        return cls(series)

    def problems(self, where: str, expr: str, legend: str = "") -> list[str]:
        """What in ``expr`` (and its legend) names a series or label the daemon does not have."""
        query = parse_promql(expr)
        if not query.metrics:
            return [f"{where}: no metric in {expr!r}"]
        known = {**self.series, **SCRAPE_SERIES}
        found: list[str] = []
        labels = set(TARGET_LABELS)
        for name, matched in query.metrics.items():
            if name not in known:
                found.append(f"{where}: {name} is not exposed by the daemon")
                continue
            labels |= known[name]
            if extra := matched - known[name] - TARGET_LABELS:
                found.append(f"{where}: {name} has no label {sorted(extra)}")
        if extra := query.grouping - labels:
            found.append(f"{where}: no metric in {expr!r} has the labels {sorted(extra)}")
        if extra := set(re.findall(r"\{\{\s*(\w+)\s*\}\}", legend)) - labels:
            found.append(f"{where}: legend {legend!r} uses unknown labels {sorted(extra)}")
        return found


@pytest.fixture(scope="module")
def exposition(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exposition]:
    """The /metrics page of a real ``tuya-events demo`` process."""
    port = free_port()
    state = tmp_path_factory.mktemp("demo")
    demo = start_demo(port, state, "--duration", "60", "--rate", "40", "--seed", "5")
    try:
        wait_until_serving(port, demo, "/readyz", timeout=20)
        time.sleep(2)  # some traffic, decode failures and dead letters
        status, text = http_get(port, "/metrics")
        assert status == 200, text
        demo.send_signal(signal.SIGTERM)
        output, _ = demo.communicate(timeout=30)
        assert demo.returncode == 0, output
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait(10)
    yield Exposition.parse(text)


# -- the files under test --------------------------------------------------------------------


def load_rules(path: Path = RULES) -> list[dict[str, Any]]:
    document = yaml.safe_load(path.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def load_dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def load_generator() -> Any:
    spec = importlib.util.spec_from_file_location("build_dashboard", GENERATOR)
    assert spec and spec.loader
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    return generator


def dashboard_queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(where, PromQL, legend) for every panel target and every query variable."""
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            where = f"panel {panel['id']} {panel['title']!r} {target['refId']}"
            yield where, target["expr"], target.get("legendFormat", "")
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            match = LABEL_VALUES.fullmatch(variable["query"])
            assert match, variable["query"]
            selector, label = match.groups()
            # label_values(selector, label): the label must be one the selector's series carry.
            yield f"variable {variable['name']}", selector, "{{" + label + "}}"


def grafana_to_promql(expr: str) -> str:
    """A dashboard query as Prometheus would receive it (variables interpolated)."""
    for variable, value in (("$__rate_interval", "5m"), ("$__range", "6h")):
        expr = expr.replace(variable, value)
    return re.sub(r"\$(job|instance|handler)\b", ".*", expr)


def find_promtool() -> str:
    """$PROMTOOL, the project cache scripts/ensure-promtool.sh fills, or PATH."""
    for candidate in (os.environ.get("PROMTOOL"), str(ROOT / ".cache" / "bin" / "promtool")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool not found: run `make test-deps` (scripts/ensure-promtool.sh)")
    return found


def promtool(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [find_promtool(), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


# -- (a) every metric and label used exists on the live daemon ------------------------------


def test_every_metric_the_dashboard_and_alerts_use_is_on_the_live_metrics_page(
    exposition: Exposition,
) -> None:
    problems: list[str] = []
    used: set[str] = set()
    for where, expr, legend in dashboard_queries(load_dashboard()):
        problems += exposition.problems(where, expr, legend)
        used |= parse_promql(expr).metrics.keys()
    for rule in load_rules():
        problems += exposition.problems(f"rule {rule['alert']}", rule["expr"])
        used |= parse_promql(rule["expr"]).metrics.keys()
    assert not problems, "\n".join(problems)
    # The demo exposes what the daemon does: every tuya_events family is on the page, and the
    # dashboard shows every one of them.
    families = family_names()
    shown = {
        family
        for family in families
        if any(n == family or n.startswith(family + "_") for n in used)
    }
    assert shown == families, f"not on the dashboard or in an alert: {sorted(families - shown)}"


def test_the_check_reports_a_misspelt_metric_or_label(exposition: Exposition) -> None:
    good = 'sum by (stage, reason) (rate(tuya_events_dead_letters_total{job=~"$job"}[5m]))'
    assert exposition.problems("ok", good, "{{stage}} {{reason}}") == []
    assert exposition.problems("x", good.replace("dead_letters_total", "dead_letter_total"))
    assert exposition.problems("x", good.replace("dead_letters_total", "dead_letters"))
    assert exposition.problems("x", good.replace("by (stage,", "by (stages,"))
    assert exposition.problems("x", good.replace('{job=~"$job"}', '{handler="a"}'))
    assert exposition.problems("x", good, "{{handler}}")
    histogram = "rate(tuya_events_handler_duration_seconds_bucket[5m])"
    assert exposition.problems("ok", histogram) == []
    assert exposition.problems("x", histogram.replace("_bucket", ""))  # not a series name
    assert exposition.problems("x", "time() - vector(1)")  # no metric at all


# -- (b) promtool check rules ----------------------------------------------------------------


def test_alert_rules_pass_promtool_check_and_are_documented() -> None:
    result = promtool("check", "rules", RULES)
    assert result.returncode == 0, result.stdout + result.stderr
    rules = load_rules()
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout
    assert {rule["alert"] for rule in rules} >= REQUIRED_ALERTS
    for rule in rules:
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        assert set(rule["annotations"]) >= {"summary", "description", "runbook"}, rule["alert"]
    documented = (ROOT / "docs" / "monitoring.md").read_text()
    missing = [rule["alert"] for rule in rules if f"### {rule['alert']}" not in documented]
    assert not missing, f"alerts without a section in docs/monitoring.md: {missing}"


@pytest.mark.parametrize(
    ("broken", "needle", "error"),
    [
        # A PromQL syntax error.
        (
            "expr: tuya_events_broker_connected == (0",
            "expr: tuya_events_broker_connected == 0",
            "parse error",
        ),
        # A template that does not compile.
        (
            'summary: "tuya-events on {{ $labels.instance is down"',
            'summary: "tuya-events on {{ $labels.instance }} is down"',
            "template",
        ),
        # A metric given where a range vector is needed.
        (
            "increase(tuya_events_dead_letter_write_failures_total)",
            "increase(tuya_events_dead_letter_write_failures_total[10m])",
            "expected type range vector",
        ),
    ],
)
def test_promtool_check_rejects_a_broken_copy(
    tmp_path: Path, broken: str, needle: str, error: str
) -> None:
    text = RULES.read_text()
    assert text.count(needle) == 1
    copy = tmp_path / "broken.yaml"
    copy.write_text(text.replace(needle, broken))
    result = promtool("check", "rules", copy)
    assert result.returncode != 0, result.stdout
    assert error in result.stdout + result.stderr


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """promtool parses every dashboard query: as recording rules in a scratch rule file."""
    queries = list(dashboard_queries(load_dashboard()))
    rules = [
        {"record": f"dashboard:query_{i}", "expr": grafana_to_promql(expr)}
        for i, (_, expr, _) in enumerate(queries)
    ]
    scratch = tmp_path / "dashboard-queries.yaml"
    scratch.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = promtool("check", "rules", scratch)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout
    # And the same check fails on a query Prometheus would reject.
    rules[0]["expr"] = rules[0]["expr"] + " +"
    scratch.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    assert promtool("check", "rules", scratch).returncode != 0


# -- (c) promtool test rules -----------------------------------------------------------------


def test_alert_unit_tests_pass() -> None:
    result = promtool("test", "rules", RULE_TESTS.name, cwd=RULE_TESTS.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_alert_unit_tests_fail_when_an_alert_changes(tmp_path: Path) -> None:
    """The unit tests notice a changed rule: NotConnected waiting 10m instead of 2m."""
    rules = RULES.read_text()
    needle = "expr: tuya_events_broker_connected == 0\n        for: 2m"
    assert rules.count(needle) == 1
    (tmp_path / RULES.name).write_text(rules.replace(needle, needle.replace("2m", "10m")))
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    result = promtool("test", "rules", RULE_TESTS.name, cwd=tmp_path)
    assert result.returncode != 0, result.stdout
    assert "alertname: TuyaEventsNotConnected, time: 4m" in result.stdout + result.stderr


# -- (d) the dashboard -----------------------------------------------------------------------


def test_dashboard_json_is_what_the_generator_builds() -> None:
    generator = load_generator()
    assert DASHBOARD.read_text(encoding="utf-8") == generator.render(), (
        f"{DASHBOARD.name} is out of date: run python {GENERATOR.relative_to(ROOT)}"
    )


def test_dashboard_is_well_formed_for_grafana() -> None:
    dashboard = load_dashboard()
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 36
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("job", "instance", "handler"):
        assert variables[name]["type"] == "query", name
        assert variables[name]["datasource"]["uid"] == "${datasource}", name
        assert variables[name]["query"].startswith("label_values("), name

    panels = dashboard["panels"]
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), "panel ids are not unique"
    rows = [panel["title"] for panel in panels if panel["type"] == "row"]
    assert rows == [
        "Overview", "Throughput", "Errors", "Latency", "Lag", "Dependencies", "Devices",
        "Gaps and notices", "Runtime",
    ]  # fmt: skip
    occupied: set[tuple[int, int]] = set()
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        cells = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & occupied, f"panel {panel['title']!r} overlaps another"
        occupied |= cells
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel
        assert panel["targets"], panel["title"]
        refs = [target["refId"] for target in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"], panel["title"]
            # Every selector follows the job and instance variables.
            for name, matched in parse_promql(target["expr"]).metrics.items():
                assert {"job", "instance"} <= matched, (panel["title"], name)


def row_panels(dashboard: dict[str, Any], title: str) -> list[dict[str, Any]]:
    """The panels of one row: those after its row panel, up to the next row."""
    panels = dashboard["panels"]
    start = next(
        i for i, panel in enumerate(panels) if panel["type"] == "row" and panel["title"] == title
    )
    found = []
    for panel in panels[start + 1 :]:
        if panel["type"] == "row":
            break
        found.append(panel)
    return found


def test_devices_row_shows_every_catalogue_and_enrichment_metric() -> None:
    """The catalogue's families, each on the Devices row (not only somewhere), and the share
    of enriched events computed over the events of a device (no_device left out)."""
    panels = row_panels(load_dashboard(), "Devices")
    used: set[str] = set()
    for panel in panels:
        for target in panel["targets"]:
            used |= parse_promql(target["expr"]).metrics.keys()
    wanted = {name for name in family_names() if "catalogue" in name or "enrichment" in name}
    assert len(wanted) >= 8, sorted(wanted)
    missing = {
        name for name in wanted if not any(n == name or n.startswith(name + "_") for n in used)
    }
    assert not missing, f"not on the Devices row: {sorted(missing)}"
    (share,) = [panel for panel in panels if panel["title"] == "Enriched share"]
    assert share["fieldConfig"]["defaults"]["unit"] == "percentunit"
    for target in share["targets"]:
        numerator, denominator = target["expr"].split(" / ")
        assert "no_device" not in target["expr"]
        assert "hit" in numerator and 'outcome=~"hit|waited|timed_out|unknown"' in denominator
    (paused,) = [panel for panel in panels if panel["title"] == "Catalogue paused"]
    mapping = paused["fieldConfig"]["defaults"]["mappings"][0]["options"]
    assert mapping["1"]["text"] == "PAUSED" and mapping["1"]["color"] == "red"


@pytest.mark.parametrize(
    ("needle", "change", "failure"),
    [
        # The pause alert waiting 10 minutes instead of 5.
        (
            "max by (job, instance) (tuya_events_catalogue_paused) == 1\n        for: 5m",
            ("for: 5m", "for: 10m"),
            "alertname: TuyaEventsCatalogueQuotaPaused, time: 7m",
        ),
        # The misses alert at 20% (instance a misses 19%).
        (
            "            > 0.1\n",
            ("0.1", "0.2"),
            "alertname: TuyaEventsEnrichmentMisses, time: 16m",
        ),
        # The misses alert without "while hits exist": c (no hit at all) fires too.
        (
            "sum by (job, instance) "
            '(rate(tuya_events_enrichment_total{outcome=~"hit|waited"}[15m])) > 0',
            ("> 0", ">= 0"),
            "alertname: TuyaEventsEnrichmentMisses, time: 16m",
        ),
        # Calls failing counted with their successes: b (failing, succeeding too) fires.
        (
            'increase(tuya_events_catalogue_calls_total{outcome="success"}[15m])\n',
            ('outcome="success"', 'outcome="none"'),
            "alertname: TuyaEventsCatalogueCallsFailing, time: 31m",
        ),
        # Calls failing while paused: c fires too.
        (
            "          unless on (job, instance)\n          max by (job, instance) "
            "(tuya_events_catalogue_paused) == 1\n        for: 30m",
            ("== 1", "== 2"),
            "alertname: TuyaEventsCatalogueCallsFailing, time: 31m",
        ),
    ],
)
def test_catalogue_alert_unit_tests_fail_when_a_catalogue_alert_changes(
    tmp_path: Path, needle: str, change: tuple[str, str], failure: str
) -> None:
    rules = RULES.read_text()
    assert rules.count(needle) == 1, needle
    (tmp_path / RULES.name).write_text(rules.replace(needle, needle.replace(*change)))
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    result = promtool("test", "rules", RULE_TESTS.name, cwd=tmp_path)
    assert result.returncode != 0, result.stdout
    assert failure in result.stdout + result.stderr


# -- gaps, resyncs and Tuya's notices ---------------------------------------------------------


def test_gaps_row_shows_every_gap_resync_and_notice_metric() -> None:
    """Each family of resync/ and observability/notices.py on the Gaps and notices row, the last
    gap coloured at the daemon's own resync.after and Tuya's retention, and the backlog drawn
    only while the alert would count the notice as fresh."""
    panels = row_panels(load_dashboard(), "Gaps and notices")
    used: set[str] = set()
    for panel in panels:
        for target in panel["targets"]:
            used |= parse_promql(target["expr"]).metrics.keys()
    wanted = {
        name
        for name in family_names()
        if any(word in name for word in ("resync", "notice", "consumption_gap"))
    }
    assert len(wanted) >= 8, sorted(wanted)
    missing = {
        name for name in wanted if not any(n == name or n.startswith(name + "_") for n in used)
    }
    assert not missing, f"not on the Gaps and notices row: {sorted(missing)}"

    (gap,) = [panel for panel in panels if panel["title"] == "Last gap"]
    steps = gap["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert [(step["color"], step["value"]) for step in steps] == [
        ("green", None),
        ("orange", ResyncSettings().after),
        ("red", RETENTION_SECONDS),
    ]
    assert gap["fieldConfig"]["defaults"]["unit"] == "s"
    measured = {target["refId"] for target in gap["targets"] if "timestamp" in target["expr"]}
    (override,) = gap["fieldConfig"]["overrides"]
    assert override["matcher"] == {"id": "byFrameRefID", "options": measured.pop()}
    assert {"id": "unit", "value": "dateTimeFromNow"} in override["properties"]

    (backlog,) = [panel for panel in panels if panel["title"] == "Backlog while Tuya reports it"]
    (target,) = backlog["targets"]
    assert target["expr"].endswith(f"< {notice_fresh_seconds()}"), target["expr"]


def notice_fresh_seconds() -> int:
    """The seconds TuyaEventsBacklogNotice counts a notice as fresh, read from the rule."""
    (rule,) = [rule for rule in load_rules() if rule["alert"] == "TuyaEventsBacklogNotice"]
    match = re.search(r"notice_last_timestamp_seconds\)\s*<\s*(\d+)", rule["expr"])
    assert match, rule["expr"]
    return int(match.group(1))


def test_gap_and_notice_thresholds_follow_the_daemon_and_tuya() -> None:
    """The numbers the rules hold: Tuya's retention as the daemon knows it; a window longer than
    the 15 minutes between Tuya's repeated notices; the dashboard's constants the same."""
    rules = {rule["alert"]: rule["expr"] for rule in load_rules()}
    gap = rules["TuyaEventsGapLongerThanRetention"]
    assert re.findall(r"consumption_gap_seconds > (\d+)", gap) == [str(RETENTION_SECONDS)] * 2
    assert ResyncSettings().after < RETENTION_SECONDS  # a resync runs before messages are lost
    assert 15 * 60 < notice_fresh_seconds() <= 30 * 60
    generator = load_generator()
    assert generator.RETENTION_SECONDS == RETENTION_SECONDS
    assert ResyncSettings().after == generator.RESYNC_AFTER_SECONDS
    assert notice_fresh_seconds() == generator.NOTICE_FRESH_SECONDS


NAIVE_GAP_RULE = """expr: >-
          tuya_events_consumption_gap_seconds > 7200
          and on (job, instance)
          (time() - tuya_events_consumption_gap_timestamp_seconds) < 3600
        labels:"""


@pytest.mark.parametrize(
    ("needle", "replacement", "count", "failure"),
    [
        # The gap alert staying 10 minutes instead of an hour: a is missing at 30m.
        ("          ) < 3600\n", "          ) < 600\n", 1, "GapLongerThanRetention, time: 30m"),
        # At 6000 s instead of Tuya's retention: c (away 1h50m) fires.
        ("gap_seconds > 7200", "gap_seconds > 6000", 2, "GapLongerThanRetention, time: 5m"),
        # Reading the gauge alone: b's long gap, overwritten by a reconnect, stops firing.
        (
            "expr: >-\n          last_over_time((tuya_events_consumption_gap_seconds",
            None,
            1,
            "GapLongerThanRetention, time: 30m",
        ),
        # Resync failures without the fresh-process branch: c is missing at 25m.
        (
            "(time() - process_start_time_seconds) < 3600",
            "(time() - process_start_time_seconds) < 0",
            1,
            "alertname: TuyaEventsResyncFailures, time: 25m",
        ),
        # Counting resynced devices as failures: b fires.
        (
            'outcome="failed"',
            'outcome=~"failed|resynced"',
            2,
            "alertname: TuyaEventsResyncFailures, time: 11m",
        ),
        # Notices fresh for 10 minutes only: a is missing 19 minutes after the last one.
        (
            "notice_last_timestamp_seconds) < 1200",
            "notice_last_timestamp_seconds) < 600",
            1,
            "alertname: TuyaEventsBacklogNotice, time: 59m",
        ),
        # Any notice type: c (another type) fires.
        (
            'tuya_events_notices_total{event_type="pulsar_backlog_notice"} > 0',
            "tuya_events_notices_total > 0",
            1,
            "alertname: TuyaEventsBacklogNotice, time: 10m",
        ),
    ],
)
def test_gap_resync_and_notice_alert_tests_fail_when_the_alert_changes(
    tmp_path: Path, needle: str, replacement: str | None, count: int, failure: str
) -> None:
    rules = RULES.read_text()
    assert rules.count(needle) == count, needle
    if replacement is None:  # the whole expression replaced by the naive one
        start = rules.index(needle)
        end = rules.index("        labels:", start) + len("        labels:")
        changed = rules[:start] + NAIVE_GAP_RULE + rules[end:]
    else:
        changed = rules.replace(needle, replacement)
    (tmp_path / RULES.name).write_text(changed)
    assert promtool("check", "rules", tmp_path / RULES.name).returncode == 0  # still valid
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    result = promtool("test", "rules", RULE_TESTS.name, cwd=tmp_path)
    assert result.returncode != 0, result.stdout
    assert failure in result.stdout + result.stderr
