"""The chart's monitoring of the operator itself (prometheusRule, grafanaDashboard),
checked with the real tools: every alert expression and dashboard query through
`promtool check rules`, every alert through `promtool test rules` (series that make it
fire, and a healthy set that fires none), and every metric they name against the
operator's own metric catalogue. The e2e side (the API server accepts both objects, the
readiness metric on a live operator) is tests/e2e/test_monitoring_operator.py.

Needs bin/helm and bin/promtool (`make helm promtool`): without them these fail, saying so.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

import appinfra.observability.metrics  # noqa: F401  (registers the whole catalogue)
from tests.support.prometheus import check_rules, run_rule_tests
from tests.unit.test_chart import CHART, RELEASE, only, render

JOB = f'job="{RELEASE}-metrics"'  # the selector the rules default to: the chart's ServiceMonitor
TEAM = {"team": "platform"}  # prometheusRule.alertLabels in these tests: on every alert
VALUES: dict[str, Any] = {"prometheusRule": {"enabled": True, "alertLabels": TEAM}}
ALERTS = {
    "AppinfraOperatorDown", "AppinfraNoLeader", "AppinfraLeaderFlapping",
    "AppinfraReconcileErrors", "AppinfraResourceNotReady", "AppinfraSecretSyncFailing",
    "AppinfraBackendUnavailable",
}  # fmt: skip
DASHBOARD = CHART / "dashboards" / "appinfra.json"


@pytest.fixture(scope="module")
def helm_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("helm")


def groups(home: Path, values: dict[str, Any] = VALUES) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = only(render(home, values), "PrometheusRule")["spec"]["groups"]
    return result


def rules(home: Path) -> list[dict[str, Any]]:
    return [rule for group in groups(home) for rule in group["rules"]]


def without_annotations(groups_: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rules without annotations: promtool compares annotations exactly, and several
    quote $value; these tests are about which alerts fire with which labels (the
    annotations are parsed by check_rules, and expanded in the NotReady test)."""
    return [
        {**g, "rules": [{k: v for k, v in r.items() if k != "annotations"} for r in g["rules"]]}
        for g in groups_
    ]


def series(metric: str, values: str, /, **labels: str) -> dict[str, str]:
    """One promtool input series of the operator's job (`values` in promtool's notation)."""
    matchers = ",".join(f'{k}="{v}"' for k, v in {"job": f"{RELEASE}-metrics", **labels}.items())
    return {"series": f"{metric}{{{matchers}}}", "values": values}


def fired(alert: str, at: str, **labels: str) -> dict[str, Any]:
    return {"eval_time": at, "alertname": alert, "exp_alerts": [{"exp_labels": labels}]}


def job(severity: str, **labels: str) -> dict[str, str]:
    """The labels of an alert aggregated by job: job, severity, the extra labels."""
    return {"job": f"{RELEASE}-metrics", "severity": severity, **TEAM, **labels}


# Each alert: input series that make it fire, and the alert promtool must see (and when).
FIRING: dict[str, dict[str, Any]] = {
    "AppinfraOperatorDown": {
        # Both replicas scraped but down: absent() carries no labels of its own.
        "input_series": [
            series("up", "0x20", instance="10.0.0.1:8081"),
            series("up", "0x20", instance="10.0.0.2:8081"),
        ],
        "alert_rule_test": [
            {"eval_time": "4m", "alertname": "AppinfraOperatorDown", "exp_alerts": []},
            fired("AppinfraOperatorDown", "10m", severity="critical", **TEAM),
        ],
    },
    "AppinfraNoLeader": {
        "input_series": [
            series("up", "1x20", instance="a"),
            series("appinfra_leader", "0x20", instance="a"),
            series("appinfra_leader", "0x20", instance="b"),
        ],
        "alert_rule_test": [fired("AppinfraNoLeader", "10m", **job("critical"))],
    },
    "AppinfraLeaderFlapping": {
        # The Lease changes hands every few minutes.
        "input_series": [
            series("appinfra_leader", "1 1 0 0 1 1 0 0 1 1 0 0 1 1 0 0 1 1 0 0", instance="a"),
            series("appinfra_leader", "0 0 1 1 0 0 1 1 0 0 1 1 0 0 1 1 0 0 1 1", instance="b"),
        ],
        "alert_rule_test": [fired("AppinfraLeaderFlapping", "15m", **job("warning"))],
    },
    "AppinfraReconcileErrors": {
        # A third of the SecretBinding reconciles fail.
        "input_series": [
            series("appinfra_reconcile_total", "0+5x40", kind="SecretBinding", result="error"),
            series("appinfra_reconcile_total", "0+10x40", kind="SecretBinding", result="success"),
            series("appinfra_reconcile_total", "0+10x40", kind="ServiceProfile", result="success"),
        ],
        "alert_rule_test": [
            fired("AppinfraReconcileErrors", "30m", **job("warning", kind="SecretBinding"))
        ],
    },
    "AppinfraResourceNotReady": {
        # Not Ready for 20 minutes, on both replicas (one series after the max).
        "input_series": [
            series(
                "appinfra_resource_condition",
                "1x30",
                instance=i,
                kind="ServiceProfile",
                namespace="shop",
                name="web",
                condition="Ready",
                status="False",
            )
            for i in ("a", "b")
        ],
        "alert_rule_test": [
            {"eval_time": "10m", "alertname": "AppinfraResourceNotReady", "exp_alerts": []},
            fired(
                "AppinfraResourceNotReady",
                "20m",
                **job("warning", kind="ServiceProfile", namespace="shop", name="web"),
            ),
        ],
    },
    "AppinfraSecretSyncFailing": {
        "input_series": [
            series("appinfra_secret_sync_total", "0+1x40", store="vault", result="SecretNotFound"),
            series("appinfra_secret_sync_total", "0+3x40", store="vault", result="Synced"),
        ],
        "alert_rule_test": [
            fired(
                "AppinfraSecretSyncFailing",
                "35m",
                **job("warning", store="vault", result="SecretNotFound"),
            ),
        ],
    },
    "AppinfraBackendUnavailable": {
        # Every request fails as unavailable; the last success was before.
        "input_series": [
            series(
                "appinfra_backend_requests_total",
                "0+2x40",
                store="vault",
                operation="get_secret",
                status="BackendUnavailable",
            ),
            series(
                "appinfra_backend_requests_total",
                "7x40",
                store="vault",
                operation="get_secret",
                status="ok",
            ),
        ],
        "alert_rule_test": [
            fired("AppinfraBackendUnavailable", "25m", **job("critical", store="vault"))
        ],
    },
}

# A healthy operator: everything above, minus the trouble.
HEALTHY: list[dict[str, str]] = [
    series("up", "1x90", instance="a"),
    series("up", "1x90", instance="b"),
    # One handover in the window (a rolling upgrade): not flapping.
    series("appinfra_leader", "1x30 0x60", instance="a"),
    series("appinfra_leader", "0x30 1x60", instance="b"),
    # 1% of the reconciles fail (retried), below the 10% that alerts.
    series("appinfra_reconcile_total", "0+1x90", kind="SecretBinding", result="error"),
    series("appinfra_reconcile_total", "0+99x90", kind="SecretBinding", result="success"),
    # A resource not Ready for 10 minutes (under notReadyFor), then Ready.
    series("appinfra_resource_condition", "1x10 _x80", kind="ServiceProfile",
           namespace="shop", name="web", condition="Ready", status="False"),
    series("appinfra_resource_condition", "_x10 1x80", kind="ServiceProfile",
           namespace="shop", name="web", condition="Ready", status="True"),
    series("appinfra_resource_condition", "1x90", kind="SecretBinding",
           namespace="shop", name="db", condition="Synced", status="False"),
    # Syncs succeed; a few failures in the first minutes only.
    series("appinfra_secret_sync_total", "0+1x3 3x87", store="vault", result="SecretNotFound"),
    series("appinfra_secret_sync_total", "0+5x90", store="vault", result="Synced"),
    # Some requests fail as unavailable, but the store answers.
    series("appinfra_backend_requests_total", "0+1x90", store="vault",
           operation="get_secret", status="BackendUnavailable"),
    series("appinfra_backend_requests_total", "0+20x90", store="vault",
           operation="get_secret", status="ok"),
]  # fmt: skip


def test_every_rule_passes_promtool_check(helm_home: Path) -> None:
    """Expressions parse, names and labels are valid, annotation templates parse."""
    assert {rule["alert"] for rule in rules(helm_home)} == ALERTS
    check_rules(groups(helm_home))


@pytest.mark.parametrize("alert", sorted(FIRING))
def test_each_alert_fires_on_its_trouble(helm_home: Path, alert: str) -> None:
    result = run_rule_tests(without_annotations(groups(helm_home)), [FIRING[alert]])
    assert result.returncode == 0, result.stdout + result.stderr


def test_operator_down_fires_when_no_target_is_scraped_at_all(helm_home: Path) -> None:
    test = {
        "input_series": [series("appinfra_leader", "1x20", instance="other", job="not-ours")],
        "alert_rule_test": [fired("AppinfraOperatorDown", "10m", severity="critical", **TEAM)],
    }
    result = run_rule_tests(without_annotations(groups(helm_home)), [test])
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_firing_test() -> None:
    assert set(FIRING) == ALERTS


def test_a_healthy_operator_fires_nothing(helm_home: Path) -> None:
    checks = [
        {"eval_time": at, "alertname": alert, "exp_alerts": []}
        for alert in sorted(ALERTS)
        for at in ("20m", "45m", "89m")
    ]
    test = {"interval": "1m", "input_series": HEALTHY, "alert_rule_test": checks}
    result = run_rule_tests(without_annotations(groups(helm_home)), [test])
    assert result.returncode == 0, result.stdout + result.stderr


def test_not_ready_for_is_the_values_duration_and_annotations_name_the_resource(
    helm_home: Path,
) -> None:
    values = {"prometheusRule": {"enabled": True, "notReadyFor": "5m",
                                 "runbookUrl": "https://git.example/docs/runbooks.md"}}  # fmt: skip
    labels = {"job": f"{RELEASE}-metrics", "severity": "warning", "kind": "HealthPolicy",
              "namespace": "shop", "name": "api"}  # fmt: skip
    annotations = {
        "summary": "An appinfra resource is not Ready.",
        "description": "HealthPolicy shop/api has not been Ready for 5m; its Ready condition "
        "says why.",
        "runbook_url": "https://git.example/docs/runbooks.md#appinfraresourcenotready",
    }
    test = {
        "input_series": [
            series(
                "appinfra_resource_condition",
                "1x20",
                kind="HealthPolicy",
                namespace="shop",
                name="api",
                condition="Ready",
                status="Unknown",
            ),
        ],
        "alert_rule_test": [
            {"eval_time": "3m", "alertname": "AppinfraResourceNotReady", "exp_alerts": []},
            {
                "eval_time": "8m",
                "alertname": "AppinfraResourceNotReady",
                "exp_alerts": [{"exp_labels": labels, "exp_annotations": annotations}],
            },
        ],
    }
    not_ready = [
        {**g, "rules": [r for r in g["rules"] if r["alert"] == "AppinfraResourceNotReady"]}
        for g in groups(helm_home, values)
    ]
    result = run_rule_tests(not_ready, [test])
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_custom_selector_is_used_by_every_rule(helm_home: Path) -> None:
    values = {"prometheusRule": {"enabled": True, "selector": 'job="ops",cluster="eu"'}}
    for rule in [r for g in groups(helm_home, values) for r in g["rules"]]:
        assert 'job="ops",cluster="eu"' in rule["expr"] and JOB not in rule["expr"], rule["alert"]
    check_rules(groups(helm_home, values))


def test_rule_labels_and_namespace_follow_the_values(helm_home: Path) -> None:
    values = {"prometheusRule": {"enabled": True, "namespace": "monitoring",
                                 "labels": {"release": "kube-prometheus-stack"}}}  # fmt: skip
    rule = only(render(helm_home, values), "PrometheusRule")
    assert rule["metadata"]["namespace"] == "monitoring"
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert not any(d["kind"] == "PrometheusRule" for d in render(helm_home, {}))


# --- the metric names the rules and the dashboard use ------------------------------------------


def catalogue() -> set[str]:
    """Every sample name the operator's registry exposes (observability/metrics.py and the
    two metrics it re-exports), by type: a counter's _total, a histogram's _bucket,
    _count and _sum. Derived from the families, so a labelled metric with no sample yet
    counts too."""
    suffixes = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_count", "_sum")}
    names = set()
    for family in REGISTRY.collect():
        if family.name.startswith("appinfra_"):
            names.update(family.name + suffix for suffix in suffixes[family.type])
    return names


SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{")
APPINFRA_NAME = re.compile(r"\bappinfra_[a-z0-9_]+")


def metric_names(expr: str) -> set[str]:
    """The metric names of an expression: every name followed by a selector (every query
    here selects with labels), and any appinfra_ name wherever it appears."""
    return set(SELECTOR.findall(expr)) | set(APPINFRA_NAME.findall(expr))


def dashboard_queries() -> Iterator[tuple[str, str]]:
    """(panel title, expression) of every query, Grafana's variables set as Grafana would."""
    dashboard = json.loads(DASHBOARD.read_text())
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"].replace("$__rate_interval", "5m").replace("$job", ".+")
            assert "$" not in expr, f"{panel['title']}: a variable the test does not set"
            yield panel["title"], expr
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":  # label_values(<metric>, <label>): Grafana's, not PromQL
            (name,) = re.findall(r"label_values\((\w+),", variable["definition"])
            yield f"variable {variable['name']}", name + "{}"


def test_the_catalogue_is_complete() -> None:
    """The check below can fail: it knows every kind of name the operator exposes."""
    names = catalogue()
    assert {"appinfra_reconcile_total", "appinfra_reconcile_duration_seconds_bucket",
            "appinfra_resource_condition", "appinfra_api_requests_total",
            "appinfra_backend_requests_total", "appinfra_leader"} <= names  # fmt: skip
    assert "appinfra_reconcile_total_total" not in names and "appinfra_leader_total" not in names


def test_rules_use_only_metrics_the_operator_exposes(helm_home: Path) -> None:
    used = set().union(*(metric_names(rule["expr"]) for rule in rules(helm_home)))
    assert used - catalogue() == {"up"}  # Prometheus' own, per scrape target


def test_dashboard_uses_only_metrics_the_operator_exposes() -> None:
    used = set().union(*(metric_names(expr) for _, expr in dashboard_queries()))
    assert used - catalogue() == {"up"}
    # It shows what the chart README promises.
    assert used >= {
        "appinfra_reconcile_total", "appinfra_reconcile_duration_seconds_bucket",
        "appinfra_resource_condition", "appinfra_secret_sync_total",
        "appinfra_backend_requests_total", "appinfra_api_requests_total", "appinfra_leader",
        "appinfra_managed_objects",
    }  # fmt: skip


def test_every_dashboard_query_parses() -> None:
    """Each panel's query as a recording rule through `promtool check rules`."""
    records = [
        {"record": f"appinfra_dashboard:query_{i}", "expr": expr}
        for i, (_, expr) in enumerate(dashboard_queries())
    ]
    assert len(records) >= 15
    check_rules([{"name": "appinfra-dashboard", "rules": records}])


def test_dashboard_config_map_carries_the_sidecar_label_and_the_file(helm_home: Path) -> None:
    values = {"grafanaDashboard": {"enabled": True, "namespace": "monitoring",
                                   "labelKey": "grafana.example/dashboard", "labelValue": "yes",
                                   "annotations": {"grafana_folder": "Platform"}}}  # fmt: skip
    config_map = only(render(helm_home, values), "ConfigMap", f"{RELEASE}-dashboard")
    assert config_map["metadata"]["namespace"] == "monitoring"
    assert config_map["metadata"]["labels"]["grafana.example/dashboard"] == "yes"
    assert config_map["metadata"]["annotations"] == {"grafana_folder": "Platform"}
    assert json.loads(config_map["data"]["appinfra.json"]) == json.loads(DASHBOARD.read_text())
    default = only(render(helm_home, {"grafanaDashboard": {"enabled": True}}), "ConfigMap",
                   f"{RELEASE}-dashboard")  # fmt: skip
    assert default["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert default["metadata"]["namespace"] == "appinfra-system"
    assert not [d for d in render(helm_home, {}) if d["metadata"]["name"].endswith("-dashboard")]
