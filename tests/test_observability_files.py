"""The operator files for metrics stay true to the server: the Grafana dashboard
(deploy/grafana/ressonance.json), the alert rules and the example Prometheus configuration
(deploy/prometheus/) and docs/observability.md name only metric families the server exposes,
and promtool accepts the rules, the configuration and every dashboard query."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from ressonance.metrics import prometheus
from tests.support.services import require

REPO = Path(__file__).resolve().parent.parent
DASHBOARD = REPO / "deploy" / "grafana" / "ressonance.json"
ALERTS = REPO / "deploy" / "prometheus" / "alerts.yml"
ALERTS_TEST = REPO / "deploy" / "prometheus" / "alerts_test.yml"
PROMETHEUS_YML = REPO / "deploy" / "prometheus" / "prometheus.yml"
DOC = REPO / "docs" / "observability.md"

# The server's families come from the module that exposes them (one place); the others are
# named here: prometheus-client's process collector, and Soketi's families.
# TODO(metrics): take the Soketi names from ressonance.metrics too once metrics_compat = "soketi"
# is implemented there (SOKETI_FAMILIES or similar); until then they are listed here.
OTHER_FAMILIES: dict[str, str] = {
    # prometheus-client's ProcessCollector
    "process_resident_memory_bytes": "gauge",
    "process_virtual_memory_bytes": "gauge",
    "process_cpu_seconds": "counter",
    "process_open_fds": "gauge",
    "process_max_fds": "gauge",
    "process_start_time_seconds": "gauge",
    # metrics_compat = "soketi": Soketi's names, some counters without "_total" (untyped)
    "soketi_connected": "gauge",
    "soketi_new_connections": "counter",
    "soketi_new_disconnections": "counter",
    "soketi_socket_received_bytes": "untyped",
    "soketi_socket_transmitted_bytes": "untyped",
    "soketi_ws_messages_received": "counter",
    "soketi_ws_messages_sent": "counter",
    "soketi_http_received_bytes": "untyped",
    "soketi_http_transmitted_bytes": "untyped",
    "soketi_http_calls_received": "counter",
}


def server_families() -> dict[str, str]:
    """``ressonance.metrics.prometheus.FAMILIES`` as name -> type: a mapping as it is, a list
    of names with an unknown type ("any": every suffix prometheus-client writes)."""
    families = prometheus.FAMILIES
    if isinstance(families, Mapping):
        return dict(families)
    return dict.fromkeys(families, "any")


FAMILIES: dict[str, str] = {**server_families(), **OTHER_FAMILIES}

# Series the server does not expose, written by Prometheus itself (up) or by the blackbox
# exporter probing GET /ready (probe_success).
EXTERNAL = {"up": "Prometheus", "probe_success": "blackbox exporter"}

# The sample names of each type, as prometheus-client writes them (text format 0.0.4).
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "untyped": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "any": ("", "_total", "_created", "_bucket", "_sum", "_count"),
}


def base_name(name: str, kind: str) -> str:
    """A family's name as prometheus-client keeps it: a counter given with its "_total" is the
    same family."""
    return name.removesuffix("_total") if kind in ("counter", "any") else name


def family_of(sample: str) -> str | None:
    """The family a sample name belongs to, or None."""
    for name, kind in FAMILIES.items():
        base = base_name(name, kind)
        if any(sample == base + suffix for suffix in SUFFIXES[kind]):
            return base
    return None


# PromQL words that look like metric names but are not.
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset"}
KEYWORDS |= {"and", "or", "unless", "inf", "nan"}


def metric_names(expr: str) -> list[str]:
    """The metric names a PromQL expression selects: every identifier that is not a function,
    keyword, label (matchers, by/without/on/ignoring/group lists), string or duration."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    text = re.sub(r"#.*", "", text)  # comments
    text = re.sub(r"\{[^{}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\[\]]*\]", "", text)  # ranges and subqueries
    grouping = r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)"
    text = re.sub(grouping, "", text)
    names = []
    for match in re.finditer(r"(?<![\w:.$])([A-Za-z_:][\w:]*)\s*(\()?", text):
        name, call = match.group(1), match.group(2)
        if not call and name.lower() not in KEYWORDS:
            names.append(name)
    return names


def grafana_vars(expr: str) -> str:
    """A dashboard query as Prometheus sees it: Grafana's variables replaced."""
    expr = expr.replace("$__rate_interval", "5m").replace("$__interval", "1m")
    expr = expr.replace("$__range", "1h")
    return re.sub(r"\$\{?\w+\}?", ".*", expr)


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def all_panels(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for panel in panels:
        out.append(panel)
        out.extend(all_panels(panel.get("panels", [])))
    return out


def dashboard_queries() -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target."""
    return [
        (f"panel {panel['title']!r} {target['refId']}", target["expr"])
        for panel in all_panels(dashboard()["panels"])
        for target in panel.get("targets", [])
    ]


def variable_metrics() -> list[tuple[str, str]]:
    """(where, metric) of each query variable's label_values(metric, label)."""
    out = []
    for var in dashboard()["templating"]["list"]:
        if var["type"] != "query":
            continue
        query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        match = re.fullmatch(r"label_values\((.+),\s*\w+\)", query.strip())
        assert match, f"variable {var['name']}: not label_values(metric, label): {query}"
        out.extend((f"variable {var['name']}", name) for name in metric_names(match.group(1)))
    return out


def alert_rules() -> list[dict[str, str]]:
    """The rules of alerts.yml: name and expression (read without a YAML library: an `expr:`
    is one line or a `|` block)."""
    rules: list[dict[str, str]] = []
    lines = ALERTS.read_text().splitlines()
    for number, line in enumerate(lines):
        head = re.match(r"\s*- (alert|record): (\S+)", line)
        if head:
            rules.append({"name": head.group(2)})
            continue
        expr = re.match(r"(\s*)expr: ?(.*)$", line)
        if not expr:
            continue
        indent, value = len(expr.group(1)), expr.group(2).strip()
        if value in ("|", ">", "|-", ">-"):
            block = []
            for following in lines[number + 1 :]:
                if following.strip() and len(following) - len(following.lstrip()) <= indent:
                    break
                block.append(following.strip())
            value = " ".join(part for part in block if part)
        assert rules and "expr" not in rules[-1], f"alerts.yml:{number + 1}: expr outside a rule"
        rules[-1]["expr"] = value
    return rules


def unknown(names: list[tuple[str, str]]) -> list[str]:
    return [
        f"{where}: {name}"
        for where, name in names
        if name not in EXTERNAL and family_of(name) is None
    ]


def test_dashboard_loads_with_a_prometheus_datasource_variable() -> None:
    board = dashboard()
    assert board["schemaVersion"] >= 36
    variables = {var["name"]: var for var in board["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    panels = all_panels(board["panels"])
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    for panel in panels:
        if panel["type"] == "row":
            continue
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        for source in (panel["datasource"], *(t["datasource"] for t in panel["targets"])):
            assert source == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}, panel["title"]


def test_dashboard_shows_what_an_operator_watches() -> None:
    queried = {family_of(name) for _, expr in dashboard_queries() for name in metric_names(expr)}
    for family in (
        "ressonance_connections",
        "ressonance_cluster_connections",
        "ressonance_messages_received",
        "ressonance_messages_sent",
        "ressonance_errors",
        "ressonance_publish_latency_seconds",
        "ressonance_broker_up",
        "ressonance_broker_reconnects",
        "ressonance_cluster_nodes",
        "ressonance_slow_consumers",
        "process_resident_memory_bytes",
        "process_cpu_seconds",
    ):
        assert family in queried, f"no panel shows {family}"
    exprs = " ".join(expr for _, expr in dashboard_queries())
    assert "by (app_id)" in exprs and "(region)" in exprs and "by (code)" in exprs
    for q in ("0.50", "0.99"):
        assert f"histogram_quantile({q}, sum by (le) (rate(ressonance_publish_latency" in exprs


def test_dashboard_queries_name_only_exposed_families() -> None:
    names = [(where, name) for where, expr in dashboard_queries() for name in metric_names(expr)]
    names += variable_metrics()
    assert names
    for where, expr in dashboard_queries():
        assert metric_names(expr), f"{where}: no metric found in {expr}"
    assert not unknown(names), "not exposed by the server:\n" + "\n".join(unknown(names))


def test_alert_rules_name_only_exposed_families() -> None:
    rules = alert_rules()
    assert len(rules) >= 6
    names = []
    for rule in rules:
        assert rule.get("expr"), f"{rule['name']}: no expr found"
        found = metric_names(rule["expr"])
        assert found, f"{rule['name']}: no metric found in {rule['expr']}"
        names += [(rule["name"], name) for name in found]
    series = re.findall(r"series: '([A-Za-z_:][\w:]*)\{", ALERTS_TEST.read_text())
    assert series
    names += [("alerts_test.yml", name) for name in series]
    assert not unknown(names), "not exposed by the server:\n" + "\n".join(unknown(names))
    alerts = {rule["name"] for rule in rules}
    for alert in (
        "RessonanceNodeDown",
        "RessonanceNotReady",
        "RessonanceBrokerDown",
        "RessonanceErrorRateHigh",
        "RessonancePublishLatencyHigh",
        "RessonanceSlowConsumersClosed",
        "RessonanceConnectionsNearFdLimit",
    ):
        assert alert in alerts


def test_the_doc_names_every_family_and_only_those() -> None:
    text = DOC.read_text()
    # a histogram is named by its family; ressonance_admin is the dashboard's cookie
    named = set(re.findall(r"`((?:ressonance|soketi|process)_[a-z_]+)`", text))
    named -= {"ressonance_admin"}
    histograms = {name for name in named if FAMILIES.get(name) == "histogram"}
    promql = "\n".join(re.findall(r"```promql\n(.*?)```", text, flags=re.S))
    examples = [("docs/observability.md", name) for name in metric_names(promql)]
    documented = [("docs/observability.md", name) for name in sorted(named - histograms)]
    wrong = unknown(documented + examples)
    assert not wrong, "not exposed by the server:\n" + "\n".join(wrong)
    families = {family_of(name) for name in named} | histograms
    missing = [name for name, kind in FAMILIES.items() if base_name(name, kind) not in families]
    assert not missing, f"families the doc does not describe: {missing}"


# The words the parser must get right, on expressions like the files' own.
@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('sum by (le) (rate(a_bucket{x=~"$i"}[$__rate_interval]))', ["a_bucket"]),
        ("a * on (instance, job) group_left (region) b", ["a", "b"]),
        ('label_replace(up, "dst", "$1", "src", "(.*)") > bool 0', ["up"]),
        ("sum(rate(a_total[5m])) without (code) / ignoring(x) c offset 1h", ["a_total", "c"]),
    ],
)
def test_metric_names(expr: str, names: list[str]) -> None:
    assert metric_names(expr) == names


def test_family_names_follow_prometheus_client() -> None:
    assert family_of("ressonance_connections_opened_total") == "ressonance_connections_opened"
    assert family_of("ressonance_publish_latency_seconds_bucket") is not None
    assert family_of("ressonance_connection") is None
    # where the type is known, only its own suffixes
    assert family_of("process_cpu_seconds_total") == "process_cpu_seconds"
    assert family_of("process_cpu_seconds") is None
    assert family_of("process_open_fds_total") is None
    assert family_of("soketi_socket_received_bytes") is not None
    assert family_of("soketi_socket_received_bytes_total") is None


def run_promtool(*args: str) -> None:
    done = subprocess.run(
        [require("promtool"), *args], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_checks_the_rules_and_the_config() -> None:
    run_promtool("check", "rules", str(ALERTS))
    run_promtool("check", "config", str(PROMETHEUS_YML))  # also loads alerts.yml


def test_the_alerts_fire_when_they_should() -> None:
    run_promtool("test", "rules", str(ALERTS_TEST))


def test_promtool_parses_every_dashboard_query(tmp_path: Path) -> None:
    rules = [
        {"record": f"dashboard:query_{i}", "expr": grafana_vars(expr)}
        for i, (_, expr) in enumerate(dashboard_queries())
    ]
    path = tmp_path / "dashboard-queries.yml"  # JSON is YAML
    path.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))
    run_promtool("check", "rules", str(path))
