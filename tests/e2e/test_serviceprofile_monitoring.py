"""ServiceProfile `monitoring` against the real API server with the Prometheus Operator's
real CRDs (v0.85, installed by the session fixture): every ServiceMonitor and PodMonitor
the operator writes is validated by the API server against their schemas, and each test
asserts on what a user sees with kubectl: the monitor, the profile's status, its Events."""

from __future__ import annotations

import time
from typing import Any

from tests.e2e.conftest import Operator
from tests.support.kube import Cluster
from tests.support.objects import (
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
from tests.support.servers import wait_until

SP = "serviceprofile"
# Fully qualified: kubectl's discovery cache may not know the kinds after a reinstall.
SM = "servicemonitors.monitoring.coreos.com"
PM = "podmonitors.monitoring.coreos.com"
OURS = {
    "app.kubernetes.io/managed-by": "appinfra",
    "appinfra.dev/owner-kind": "ServiceProfile",
}


def profile(namespace: str, name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "appinfra.dev/v1alpha1",
        "kind": "ServiceProfile",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"targetRef": {"kind": "Deployment", "name": name}, **spec},
    }


def service(namespace: str, name: str, selector: dict[str, str], **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"selector": selector, "ports": [{"name": "http", "port": 80,
                                                  "targetPort": "http"}]},
    }  # fmt: skip


def owned_by_profile(obj: dict[str, Any], name: str, uid: str) -> bool:
    meta = obj["metadata"]
    return (
        {**meta.get("labels", {}), **OURS} == meta.get("labels")
        and meta["labels"]["appinfra.dev/owner-name"] == name
        and any(r["uid"] == uid and r.get("controller") for r in meta.get("ownerReferences", []))
    )


RELABEL = {"sourceLabels": ["__meta_kubernetes_pod_node_name"], "targetLabel": "node",
           "action": "replace"}  # fmt: skip
DROP = {"sourceLabels": ["__name__"], "regex": "go_gc_.*", "action": "drop"}


def test_a_service_selecting_the_pods_gives_a_servicemonitor_the_api_server_accepts(
    cluster: Cluster, operator: Operator, namespace: str
) -> None:
    apply(
        cluster,
        deployment(namespace, "web"),
        # A headless twin with the same labels: the monitor must scrape only one of them.
        service(namespace, "web", {"app": "web"}, app="web"),
        service(namespace, "zz-other", {"app": "other"}, app="web"),
    )
    monitoring = {
        "port": "http", "path": "/stats/prometheus", "scheme": "https", "interval": "30s",
        "scrapeTimeout": "10s", "relabelings": [RELABEL], "metricRelabelings": [DROP],
        "labels": {"release": "prometheus"},
    }  # fmt: skip
    apply(cluster, profile(namespace, "web", monitoring=monitoring))
    sp = wait_condition(cluster, SP, namespace, "web", "Ready", "True", "Reconciled")
    assert condition(sp, "Accepted")["status"] == "True"

    sm = get(cluster, SM, namespace, "web")
    assert sm is not None and owned_by_profile(sm, "web", sp["metadata"]["uid"])
    assert sm["metadata"]["labels"]["release"] == "prometheus"
    assert sm["spec"]["selector"] == {"matchLabels": {"app": "web"}}
    (endpoint,) = sm["spec"]["endpoints"]
    assert endpoint["targetPort"] == "http"
    assert (endpoint["path"], endpoint["scheme"]) == ("/stats/prometheus", "https")
    assert (endpoint["interval"], endpoint["scrapeTimeout"]) == ("30s", "10s")
    keep, relabel = endpoint["relabelings"]
    assert keep == {"sourceLabels": ["__meta_kubernetes_service_name"], "regex": "web",
                    "action": "keep"}  # fmt: skip
    assert relabel == RELABEL
    assert endpoint["metricRelabelings"] == [DROP]
    assert get(cluster, PM, namespace, "web") is None


def test_without_a_service_a_podmonitor_with_a_numeric_port_then_a_servicemonitor(
    cluster: Cluster, operator: Operator, namespace: str
) -> None:
    apply(cluster, deployment(namespace, "api"))
    apply(cluster, profile(namespace, "api", monitoring={"port": 8080, "relabelings": [RELABEL]}))
    sp = wait_condition(cluster, SP, namespace, "api", "Ready", "True", "Reconciled")
    pm = get(cluster, PM, namespace, "api")
    assert pm is not None and owned_by_profile(pm, "api", sp["metadata"]["uid"])
    assert pm["spec"]["selector"] == {"matchLabels": {"app": "api"}}
    (endpoint,) = pm["spec"]["podMetricsEndpoints"]
    assert endpoint["portNumber"] == 8080 and endpoint["path"] == "/metrics"
    assert endpoint["relabelings"] == [RELABEL]
    assert get(cluster, SM, namespace, "api") is None

    # A Service appears: Services are not watched, so the next reconcile of the profile
    # (here a spec change; else the periodic resync) switches Auto to a ServiceMonitor
    # and removes the PodMonitor.
    apply(cluster, service(namespace, "api", {"app": "api"}, app="api"))
    apply(cluster, profile(namespace, "api", monitoring={"port": 8080, "interval": "1m"}))
    wait_condition(cluster, SP, namespace, "api", "Ready", "True", "Reconciled")
    sm = wait_exists(cluster, SM, namespace, "api", timeout=20)
    assert sm["spec"]["endpoints"][0]["targetPort"] == 8080
    wait_gone(cluster, PM, namespace, "api", timeout=20)


def test_drift_is_corrected_and_removing_the_section_deletes_the_monitor(
    cluster: Cluster, operator: Operator, namespace: str
) -> None:
    apply(cluster, deployment(namespace, "drift"), service(namespace, "drift", {"app": "drift"}))
    monitoring = {"port": "http", "interval": "30s"}
    apply(cluster, profile(namespace, "drift", monitoring=monitoring,
                           disruption={"minAvailable": 1}))  # fmt: skip
    wait_condition(cluster, SP, namespace, "drift", "Ready", "True", "Reconciled")
    wait_exists(cluster, SM, namespace, "drift")

    edit = '[{"op":"replace","path":"/spec/endpoints/0/interval","value":"5m"}]'
    cluster.kubectl("-n", namespace, "patch", SM, "drift", "--type=json", "-p", edit)
    wait_until(
        lambda: (
            (get(cluster, SM, namespace, "drift") or {})["spec"]["endpoints"][0]["interval"]
            == "30s"
        ),
        20,
        "the ServiceMonitor edit to be reverted",
    )
    cluster.kubectl("-n", namespace, "delete", SM, "drift")
    wait_exists(cluster, SM, namespace, "drift", timeout=20)

    apply(cluster, profile(namespace, "drift", disruption={"minAvailable": 1}))
    wait_gone(cluster, SM, namespace, "drift", timeout=20)
    wait_condition(cluster, SP, namespace, "drift", "Ready", "True", "Reconciled")
    assert get(cluster, "pdb", namespace, "drift") is not None  # the rest stays


def test_a_foreign_servicemonitor_of_the_same_name_is_conflicted_and_untouched(
    cluster: Cluster, operator: Operator, namespace: str
) -> None:
    foreign = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": "shop", "namespace": namespace, "labels": {"team": "sre"}},
        "spec": {"selector": {"matchLabels": {"app": "shop"}},
                 "endpoints": [{"port": "web", "interval": "2m"}]},
    }  # fmt: skip
    apply(cluster, deployment(namespace, "shop"), service(namespace, "shop", {"app": "shop"}),
          foreign)  # fmt: skip
    before = get(cluster, SM, namespace, "shop")
    apply(cluster, profile(namespace, "shop", monitoring={"port": "http"}))
    sp = wait_condition(cluster, SP, namespace, "shop", "Accepted", "False", "Conflicted")
    message = condition(sp, "Accepted")["message"]
    assert "ServiceMonitor shop already exists and was not created by this ServiceProfile" in (
        message
    )
    time.sleep(2)  # a wrongly retried write would land meanwhile
    after = get(cluster, SM, namespace, "shop")
    assert after is not None and before is not None
    assert spec_and_our_writes(after) == spec_and_our_writes(before)
    assert after == before, "the foreign ServiceMonitor changed (not byte for byte the same)"
    assert after["spec"] == foreign["spec"] and after["metadata"]["labels"] == {"team": "sre"}


def test_a_named_service_that_is_missing_is_reported_and_the_rest_applied(
    cluster: Cluster, operator: Operator, namespace: str
) -> None:
    apply(cluster, deployment(namespace, "named"))
    monitoring = {"port": "http", "service": "named-metrics"}
    apply(cluster, profile(namespace, "named", monitoring=monitoring,
                           config={"data": {"A": "1"}}))  # fmt: skip
    sp = wait_condition(cluster, SP, namespace, "named", "Accepted", "False", "ServiceNotFound")
    message = condition(sp, "Accepted")["message"]
    assert message.startswith(
        f"spec.monitoring.service: Service named-metrics not found in namespace {namespace}"
    )
    assert condition(sp, "Ready")["reason"] == "ServiceNotFound"
    assert get(cluster, "configmap", namespace, "named-config") is not None
    assert (
        get(cluster, SM, namespace, "named") is None
        and get(cluster, PM, namespace, "named") is None
    )
    assert any(e["reason"] == "ServiceNotFound" for e in events_for(cluster, namespace, "named"))

    # Not watched: the operator looks again 30 s later by itself.
    apply(cluster, service(namespace, "named-metrics", {"app": "named"}, svc="named-metrics"))
    sm = wait_exists(cluster, SM, namespace, "named", timeout=60)
    assert sm["spec"]["selector"] == {"matchLabels": {"svc": "named-metrics"}}
    wait_condition(cluster, SP, namespace, "named", "Ready", "True", "Reconciled")


def test_without_the_crds_the_rest_is_applied_and_the_monitor_follows_their_install(
    cluster: Cluster, operator: Operator, namespace: str
) -> None:
    apply(cluster, deployment(namespace, "late"), service(namespace, "late", {"app": "late"}))
    remove_prometheus_crds(cluster)
    try:
        apply(cluster, profile(namespace, "late", monitoring={"port": "http"},
                               config={"data": {"A": "1"}}))  # fmt: skip
        sp = wait_condition(cluster, SP, namespace, "late", "Accepted", "False", "CRDNotInstalled")
        message = condition(sp, "Accepted")["message"]
        assert message.startswith(
            "spec.monitoring: the ServiceMonitor API (CRD servicemonitors.monitoring.coreos.com"
        )
        assert condition(sp, "Ready")["reason"] == "CRDNotInstalled"
        assert get(cluster, "configmap", namespace, "late-config") is not None  # the rest
        assert any(e["reason"] == "CRDNotInstalled" for e in events_for(cluster, namespace, "late"))
        generation = sp["metadata"]["generation"]
    finally:
        install_prometheus_crds(cluster)
    # Nobody touches the profile: the operator notices the CRD (it rechecks every 2 s here).
    sm = wait_exists(cluster, SM, namespace, "late", timeout=60)
    assert sm["spec"]["endpoints"][0]["targetPort"] == "http"
    sp = wait_condition(cluster, SP, namespace, "late", "Ready", "True", "Reconciled")
    assert condition(sp, "Accepted")["status"] == "True"
    assert sp["metadata"]["generation"] == generation
