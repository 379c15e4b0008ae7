"""HealthPolicy `alerts` against the real control plane with the Prometheus Operator's
real CRDs (so the API server validates every PrometheusRule appinfra writes against the
schema Prometheus Operator v0.85.0 publishes), driven by the session `appinfra run`.

What the rules mean when Prometheus evaluates them is tested with promtool in
tests/unit/test_render_alerts.py; here: the object, its ownership and its lifecycle.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import yaml

from tests.e2e.conftest import Operator
from tests.support.kube import Cluster
from tests.support.objects import (
    appinfra_resource,
    apply,
    condition,
    deployment,
    events_for,
    get,
    spec_and_our_writes,
    wait_condition,
    wait_exists,
    wait_gone,
)
from tests.support.prometheus import install_prometheus_crds, remove_prometheus_crds
from tests.support.servers import REPO, tool, wait_until

HP = "healthpolicy"
RULE = "prometheusrule"
BURN_WINDOWS = ("1h", "6h", "1d", "3d")
READINESS = {"httpGet": {"path": "/ready", "port": "http"}}
ALERTS: dict[str, Any] = {
    "availability": {"objective": "99.9"},
    "latency": {"objective": "99", "threshold": "300ms"},
    "labels": {"team": "payments", "route": "pager"},
    "ruleLabels": {"release": "prometheus"},
    "runbookURL": "https://runbooks.example.com/payments",
}


def policy(namespace: str, name: str, **spec: Any) -> dict[str, Any]:
    return appinfra_resource(
        "HealthPolicy", namespace, name, targetRef={"kind": "Deployment", "name": name}, **spec
    )


def alerts_of(rule: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r}


def readiness_path(cluster: Cluster, namespace: str, name: str) -> str | None:
    dep = get(cluster, "deployment", namespace, name)
    probe = dep["spec"]["template"]["spec"]["containers"][0].get("readinessProbe")  # type: ignore[index]
    return None if probe is None else str(probe["httpGet"]["path"])


def test_rule_is_created_owned_labelled_and_kept_as_rendered(
    cluster: Cluster, operator: Operator, namespace: str
) -> None:
    apply(cluster, deployment(namespace, "api"))
    apply(cluster, policy(namespace, "api", readiness=READINESS, alerts=ALERTS))
    hp = wait_condition(cluster, HP, namespace, "api", "Ready", "True")
    assert condition(hp, "Accepted")["status"] == "True"
    assert condition(hp, "Enforced")["status"] == "True"

    # The API server accepted it against the real CRD schema, owned by the policy.
    rule = get(cluster, RULE, namespace, "api")
    assert rule is not None
    meta = rule["metadata"]
    assert meta["labels"]["release"] == "prometheus"  # ruleLabels: Prometheus selects it
    assert meta["labels"]["appinfra.dev/owner-kind"] == "HealthPolicy"
    [ref] = meta["ownerReferences"]
    assert (ref["kind"], ref["uid"], ref["controller"]) == (
        "HealthPolicy",
        hp["metadata"]["uid"],
        True,
    )
    alerts = alerts_of(rule)
    burns = {
        f"SLO{s}Burn{w}" for s in ("Availability", "Latency") for w in ("1h", "6h", "1d", "3d")
    }
    workload = {"DeploymentRolloutStuck", "DeploymentReplicasUnavailable", "PodCrashLooping"}
    assert set(alerts) == burns | workload
    page = alerts["SLOAvailabilityBurn1h"]
    assert page["labels"] == {"team": "payments", "route": "pager", "severity": "critical",
                              "slo": "availability"}  # fmt: skip
    assert page["annotations"]["runbook_url"] == (
        "https://runbooks.example.com/payments#sloavailabilityburn1h"
    )
    assert "Deployment api" in page["annotations"]["summary"]
    assert alerts["PodCrashLooping"]["labels"]["route"] == "pager"

    # Drift: an edit is reverted, a deletion recreated.
    cluster.kubectl("-n", namespace, "patch", RULE, "api", "--type=merge",
                    "-p", '{"spec":{"groups":[]}}')  # fmt: skip
    wait_until(
        lambda: (
            alerts_of(get(cluster, RULE, namespace, "api") or {"spec": {"groups": []}}) == alerts
        ),
        20,
        "the PrometheusRule edit to be reverted",
    )
    cluster.kubectl("-n", namespace, "delete", RULE, "api")
    recreated = wait_exists(cluster, RULE, namespace, "api", timeout=20)
    assert alerts_of(recreated) == alerts


def test_removing_the_section_deletes_the_rule_and_deleting_the_policy_collects_it(
    cluster: Cluster, operator: Operator, namespace: str
) -> None:
    apply(cluster, deployment(namespace, "svc"))
    apply(cluster, policy(namespace, "svc", readiness=READINESS, alerts=ALERTS))
    wait_condition(cluster, HP, namespace, "svc", "Ready", "True")
    wait_exists(cluster, RULE, namespace, "svc")

    apply(cluster, policy(namespace, "svc", readiness=READINESS))
    wait_condition(cluster, HP, namespace, "svc", "Ready", "True")
    wait_gone(cluster, RULE, namespace, "svc", timeout=20)
    assert readiness_path(cluster, namespace, "svc") == "/ready"

    # Only alerts (no probe) is a valid policy too; deleting it garbage-collects the rule
    # (ownerReference, by the kube-controller-manager).
    apply(cluster, policy(namespace, "svc", alerts={"disabled": ["PodCrashLooping"]}))
    wait_condition(cluster, HP, namespace, "svc", "Ready", "True")
    rule = wait_exists(cluster, RULE, namespace, "svc", timeout=20)
    assert set(alerts_of(rule)) == {"DeploymentRolloutStuck", "DeploymentReplicasUnavailable"}
    cluster.kubectl("-n", namespace, "delete", HP, "svc", "--wait=true", "--timeout=60s")
    wait_gone(cluster, RULE, namespace, "svc")


def test_a_foreign_rule_of_the_same_name_is_conflicted_and_untouched(
    cluster: Cluster, operator: Operator, namespace: str
) -> None:
    foreign = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "web", "namespace": namespace, "labels": {"owner": "platform"}},
        "spec": {
            "groups": [{"name": "theirs", "rules": [{"alert": "Theirs", "expr": "vector(1)"}]}]
        },
    }
    apply(cluster, deployment(namespace, "web"), foreign)
    original = get(cluster, RULE, namespace, "web")
    before = spec_and_our_writes(original)
    apply(cluster, policy(namespace, "web", readiness=READINESS, alerts=ALERTS))
    hp = wait_condition(cluster, HP, namespace, "web", "Accepted", "False", "Conflicted")
    message = condition(hp, "Accepted")["message"]
    assert "PrometheusRule web already exists and was not created by this HealthPolicy" in message
    assert condition(hp, "Ready")["reason"] == "Conflicted"
    assert condition(hp, "Enforced")["status"] == "True"  # the probes are applied regardless
    assert readiness_path(cluster, namespace, "web") == "/ready"
    time.sleep(2)  # any write of ours would have landed by now
    live = get(cluster, RULE, namespace, "web")
    assert spec_and_our_writes(live) == before
    assert live == original, "the foreign rule changed (not byte for byte the same)"
    assert live["spec"] == foreign["spec"] and "ownerReferences" not in live["metadata"]  # type: ignore[index]
    assert any(e["reason"] == "Conflicted" for e in events_for(cluster, namespace, "web"))


def _reconciles(operator: Operator, namespace: str, name: str) -> int:
    """Reconciles of one HealthPolicy, from the operator's own log (the metric counts
    every HealthPolicy, and other tests' namespaces are still going away)."""
    text = operator.process.log_path.read_text(errors="replace")
    return text.count(f"[HealthPolicy {namespace}/{name} ")


def test_without_the_crds_the_section_waits_and_converges_once_installed(
    cluster: Cluster, operator: Operator, namespace: str
) -> None:
    apply(cluster, deployment(namespace, "late"))
    apply(cluster, policy(namespace, "late", readiness=READINESS, alerts=ALERTS))
    wait_condition(cluster, HP, namespace, "late", "Ready", "True")
    wait_exists(cluster, RULE, namespace, "late")
    try:
        remove_prometheus_crds(cluster)
        hp = wait_condition(cluster, HP, namespace, "late", "Accepted", "False", "CRDNotInstalled",
                            timeout=30)  # fmt: skip
        message = condition(hp, "Accepted")["message"]
        assert "spec.alerts" in message and "prometheusrules.monitoring.coreos.com" in message
        assert condition(hp, "Ready")["reason"] == "CRDNotInstalled"
        assert condition(hp, "Enforced")["status"] == "True"
        assert any(e["reason"] == "CRDNotInstalled" for e in events_for(cluster, namespace, "late"))

        # The rest of the spec is still applied: a changed probe lands while the CRD is away.
        changed = {"httpGet": {"path": "/changed", "port": "http"}}
        apply(cluster, policy(namespace, "late", readiness=changed, alerts=ALERTS))
        wait_condition(cluster, HP, namespace, "late", "Accepted", "False", "CRDNotInstalled",
                       timeout=30)  # fmt: skip
        assert readiness_path(cluster, namespace, "late") == "/changed"
        wait_condition(cluster, HP, namespace, "late", "Healthy", "True", timeout=60)

        # No retry storm: once the rollout has settled, nothing reconciles the policy
        # while the answer stays the same (the operator looks for the CRD every 2 s with
        # one LIST, and re-queues what owns the type only when the answer changes).
        time.sleep(2)
        before = _reconciles(operator, namespace, "late")
        time.sleep(7)
        assert _reconciles(operator, namespace, "late") - before == 0
    finally:
        install_prometheus_crds(cluster)
    wait_condition(cluster, HP, namespace, "late", "Ready", "True", timeout=30)
    hp = get(cluster, HP, namespace, "late")
    assert condition(hp, "Accepted")["status"] == "True"
    rule = wait_exists(cluster, RULE, namespace, "late", timeout=20)
    assert "SLOLatencyBurn1h" in alerts_of(rule)


def test_the_slo_example_is_what_render_shows(
    cluster: Cluster, operator: Operator, namespace: str, tmp_path: Path
) -> None:
    """examples/slo in a namespace of its own: the operator's PrometheusRule is the one
    `appinfra render` prints for the same files (labels and every group and rule)."""
    docs = [d for path in sorted((REPO / "examples" / "slo").glob("*.yaml"))
            for d in yaml.safe_load_all(path.read_text()) if d]  # fmt: skip
    for doc in docs:
        doc["metadata"]["namespace"] = namespace
    files = tmp_path / "slo.yaml"
    files.write_text(yaml.safe_dump_all(docs))
    cluster.kubectl("apply", "-f", str(files))
    wait_condition(cluster, HP, namespace, "checkout", "Ready", "True")
    live = wait_exists(cluster, RULE, namespace, "checkout")
    out = subprocess.run([tool("appinfra"), "render", "-f", str(files)],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    [shown] = [d for d in yaml.safe_load_all(out) if d and d["kind"] == "PrometheusRule"]
    assert live["spec"] == shown["spec"]
    assert shown["metadata"]["labels"].items() <= live["metadata"]["labels"].items()
