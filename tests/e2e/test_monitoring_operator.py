"""Monitoring the operator itself, against the real API server and the session operator:
the chart's PrometheusRule and dashboard ConfigMap are accepted as rendered (the
Prometheus Operator's CRDs are installed by the session fixture, so the API server
validates the rule against the real schema), and appinfra_resource_condition on the
operator's /metrics follows a resource's conditions and goes with the resource.

promtool's side of the same rules is tests/unit/test_chart_monitoring.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import Operator
from tests.e2e.test_operations import profile
from tests.support.kube import Cluster
from tests.support.objects import apply, deployment, wait_condition, wait_gone
from tests.support.servers import wait_until
from tests.unit.test_chart import CHART, RELEASE, helm

DASHBOARD = CHART / "dashboards" / "appinfra.json"


def rendered(home: Path, namespace: str, values: dict[str, Any]) -> list[dict[str, Any]]:
    path = home / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    out = helm("template", RELEASE, str(CHART), "--namespace", namespace, "-f", str(path),
               home=home).stdout  # fmt: skip
    return [doc for doc in yaml.safe_load_all(out) if doc]


def server_side_apply(cluster: Cluster, doc: dict[str, Any], check: bool = True) -> str:
    """Apply as Helm 4 does (server-side), refusing unknown fields instead of pruning them."""
    proc = cluster.kubectl("apply", "--server-side", "--field-manager=helm", "--validate=strict",
                           "-f", "-", input=json.dumps(doc), check=check)  # fmt: skip
    return proc.stdout + proc.stderr


def test_the_api_server_accepts_the_charts_prometheus_rule_and_dashboard(
    crds: Cluster, namespace: str, tmp_path: Path
) -> None:
    values = {
        "prometheusRule": {"enabled": True, "labels": {"release": "prom"},
                           "alertLabels": {"team": "platform"}, "notReadyFor": "30m"},
        "grafanaDashboard": {"enabled": True, "annotations": {"grafana_folder": "Platform"}},
    }  # fmt: skip
    docs = rendered(tmp_path, namespace, values)
    (rule,) = [d for d in docs if d["kind"] == "PrometheusRule"]
    (dashboard,) = [d for d in docs if d["metadata"]["name"] == f"{RELEASE}-dashboard"]
    for doc in (rule, dashboard):
        server_side_apply(crds, doc)

    stored = crds.kubectl_json("-n", namespace, "get", "prometheusrule", RELEASE)
    # Nothing pruned or defaulted away: what Prometheus loads is what the chart rendered.
    assert stored["spec"] == rule["spec"]
    assert {r["alert"] for g in stored["spec"]["groups"] for r in g["rules"]} >= {
        "AppinfraOperatorDown", "AppinfraResourceNotReady", "AppinfraBackendUnavailable",
    }  # fmt: skip
    assert stored["metadata"]["labels"]["release"] == "prom"
    config_map = crds.kubectl_json("-n", namespace, "get", "configmap", f"{RELEASE}-dashboard")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(config_map["data"]["appinfra.json"]) == json.loads(DASHBOARD.read_text())

    # The check can fail: the same rule with a `for` that is no duration is refused.
    broken = json.loads(json.dumps(rule))
    broken["metadata"]["name"] = "broken"
    broken["spec"]["groups"][0]["rules"][0]["for"] = "five minutes"
    refused = server_side_apply(crds, broken, check=False)
    assert "spec.groups[0].rules[0].for" in refused, refused


def conditions(metrics: str, namespace: str, name: str) -> dict[tuple[str, str], float]:
    """appinfra_resource_condition of the ServiceProfile: (condition, status) -> value."""
    return {
        (s.labels["condition"], s.labels["status"]): s.value
        for family in text_string_to_metric_families(metrics)
        if family.name == "appinfra_resource_condition"
        for s in family.samples
        if s.labels["namespace"] == namespace
        and s.labels["name"] == name
        and s.labels["kind"] == "ServiceProfile"
    }


def wait_metric(
    operator: Operator, namespace: str, name: str, expected: dict[tuple[str, str], float]
) -> None:
    seen: dict[str, Any] = {}

    def check() -> bool:
        seen["now"] = conditions(operator.metrics(), namespace, name)
        return seen["now"] == expected

    try:
        wait_until(check, 30, f"appinfra_resource_condition of {namespace}/{name}")
    except TimeoutError as exc:
        raise AssertionError(f"{exc}: {seen.get('now')} != {expected}") from None


def test_readiness_metric_follows_the_conditions_and_goes_with_the_resource(
    cluster: Cluster, operator: Operator, namespace: str
) -> None:
    apply(cluster, deployment(namespace, "web"), profile(namespace, "web"))
    # Its target is missing: not accepted, not Ready, with the reason users see in status.
    apply(cluster, profile(namespace, "lonely"))
    wait_condition(cluster, "serviceprofile", namespace, "web", "Ready", "True")
    wait_condition(cluster, "serviceprofile", namespace, "lonely", "Ready", "False",
                   "TargetNotFound")  # fmt: skip

    wait_metric(operator, namespace, "web", {("Accepted", "True"): 1, ("Ready", "True"): 1})
    wait_metric(operator, namespace, "lonely", {("Accepted", "False"): 1, ("Ready", "False"): 1})

    # The target appears: the same resource's series move to True, the False ones go.
    apply(cluster, deployment(namespace, "lonely"))
    wait_condition(cluster, "serviceprofile", namespace, "lonely", "Ready", "True")
    wait_metric(operator, namespace, "lonely", {("Accepted", "True"): 1, ("Ready", "True"): 1})

    # Deleted: no series of either is left (none piles up per deleted resource).
    cluster.kubectl("-n", namespace, "delete", "serviceprofile", "web", "lonely")
    wait_gone(cluster, "serviceprofile", namespace, "web")
    wait_gone(cluster, "serviceprofile", namespace, "lonely")
    wait_metric(operator, namespace, "web", {})
    wait_metric(operator, namespace, "lonely", {})
