from collections.abc import Sequence
from typing import Any

import pytest

from appinfra.api.serviceprofile import ServiceProfileSpec
from appinfra.render.common import Owner
from appinfra.render.interpolate import MissingVariables
from appinfra.render.serviceprofile import Rendered, render_serviceprofile

OWNER = Owner("ServiceProfile", "payments", "shop", "uid-1")
DEPLOYMENT: dict[str, Any] = {
    "metadata": {"name": "payments", "namespace": "shop"},
    "spec": {
        "replicas": 3,
        "selector": {"matchLabels": {"app": "payments"}},
        "template": {"spec": {"containers": [{"name": "app"}, {"name": "sidecar"}]}},
    },
}


def spec(**fields: Any) -> ServiceProfileSpec:
    return ServiceProfileSpec.model_validate({"targetRef": {"name": "payments"}, **fields})


def by_kind(objs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {o["kind"]: o for o in objs}


def test_children_carry_labels_and_controller_owner_reference() -> None:
    out = render_serviceprofile(
        OWNER,
        spec(config={"data": {"A": "1"}}, autoscaling={"maxReplicas": 3},
             network={"policyTypes": ["Ingress"]}, disruption={"minAvailable": 1}),
        DEPLOYMENT,
    )  # fmt: skip
    assert {o["kind"] for o in out.children} == {
        "ConfigMap", "HorizontalPodAutoscaler", "NetworkPolicy", "PodDisruptionBudget"
    }  # fmt: skip
    for obj in out.children:
        meta = obj["metadata"]
        assert meta["namespace"] == "shop"
        assert meta["labels"] == {
            "app.kubernetes.io/managed-by": "appinfra",
            "appinfra.dev/owner-kind": "ServiceProfile",
            "appinfra.dev/owner-name": "payments",
        }
        (ref,) = meta["ownerReferences"]
        assert ref["uid"] == "uid-1" and ref["controller"] is True


def test_deployment_intent_never_sets_replicas_and_annotates_target() -> None:
    out = render_serviceprofile(
        OWNER, spec(autoscaling={"maxReplicas": 3}, rollout={"minReadySeconds": 5}), DEPLOYMENT
    )
    intent = out.deployment
    assert intent is not None
    assert "replicas" not in intent["spec"]
    assert intent["spec"]["minReadySeconds"] == 5
    assert intent["metadata"]["annotations"] == {"appinfra.dev/serviceprofile": "payments"}
    assert out.replica_range == "1-3"


def test_config_hash_changes_with_content_only() -> None:
    def hash_of(data: dict[str, str]) -> str:
        out = render_serviceprofile(OWNER, spec(config={"data": data}), DEPLOYMENT)
        assert out.deployment is not None
        return str(
            out.deployment["spec"]["template"]["metadata"]["annotations"][
                "appinfra.dev/config-hash"
            ]
        )

    assert hash_of({"A": "1", "B": "2"}) == hash_of({"B": "2", "A": "1"})
    assert hash_of({"A": "1"}) != hash_of({"A": "2"})


def test_envfrom_injected_into_every_container() -> None:
    out = render_serviceprofile(OWNER, spec(config={"data": {"A": "1"}}), DEPLOYMENT)
    assert out.deployment is not None
    containers = out.deployment["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["app", "sidecar"]
    assert all(c["envFrom"] == [{"configMapRef": {"name": "payments-config"}}] for c in containers)


def test_allow_dns_adds_the_kube_dns_rule_only_with_egress() -> None:
    out = render_serviceprofile(
        OWNER, spec(network={"policyTypes": ["Ingress", "Egress"], "allowDNS": True}), DEPLOYMENT
    )
    np = by_kind(out.children)["NetworkPolicy"]
    assert np["spec"]["podSelector"] == {"matchLabels": {"app": "payments"}}
    assert np["spec"]["egress"][-1]["ports"] == [
        {"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}
    ]  # fmt: skip
    ingress_only = render_serviceprofile(
        OWNER, spec(network={"policyTypes": ["Ingress"], "allowDNS": True}), DEPLOYMENT
    )
    assert "egress" not in by_kind(ingress_only.children)["NetworkPolicy"]["spec"]


def test_missing_variables_render_nothing() -> None:
    with pytest.raises(MissingVariables) as err:
        render_serviceprofile(OWNER, spec(config={"data": {"A": "${X}", "B": "${Y}"}}), DEPLOYMENT)
    assert err.value.names == ["X", "Y"]


def test_variables_from_in_order_then_variables_win() -> None:
    sources = [{"configMapRef": {"name": "a"}}, {"configMapRef": {"name": "b"}}]
    config = {"data": {"V": "${V}", "W": "${W}"}, "variables": {"W": "local"}}
    out = render_serviceprofile(
        OWNER,
        spec(config={**config, "variablesFrom": sources}),
        DEPLOYMENT,
        [{"V": "first", "W": "first"}, {"V": "second"}],
    )
    assert by_kind(out.children)["ConfigMap"]["data"] == {"V": "second", "W": "local"}


# --- monitoring ------------------------------------------------------------------------

POD_LABELS = {"app": "payments", "tier": "backend"}
MONITORED: dict[str, Any] = {
    **DEPLOYMENT,
    "spec": {**DEPLOYMENT["spec"], "template": {**DEPLOYMENT["spec"]["template"],
                                                "metadata": {"labels": POD_LABELS}}},
}  # fmt: skip
OUR_LABELS = {
    "app.kubernetes.io/managed-by": "appinfra",
    "appinfra.dev/owner-kind": "ServiceProfile",
    "appinfra.dev/owner-name": "payments",
}


def service(name: str, selector: dict[str, str] | None, **labels: str) -> dict[str, Any]:
    svc: dict[str, Any] = {"metadata": {"name": name, "namespace": "shop"}, "spec": {}}
    if selector is not None:
        svc["spec"]["selector"] = selector
    if labels:
        svc["metadata"]["labels"] = labels
    return svc


def monitor(services: Sequence[dict[str, Any]] = (), **monitoring: Any) -> Rendered:
    return render_serviceprofile(
        OWNER, spec(monitoring={"port": "metrics", **monitoring}), MONITORED, (), services
    )


def test_auto_with_a_service_selecting_the_pods_renders_a_servicemonitor_through_it() -> None:
    svc = service("payments", {"app": "payments"}, app="payments", team="pay")
    out = monitor([svc], interval="30s", scrapeTimeout="10s", scheme="https", path="/m")
    assert out.monitor_problem is None
    assert out.monitor == {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {
            "name": "payments",
            "namespace": "shop",
            "labels": OUR_LABELS,
            "ownerReferences": [OWNER.reference],
        },
        "spec": {
            # the Service's labels select it; the first relabeling keeps only this Service
            # (its labels may be shared, e.g. by a headless twin)
            "selector": {"matchLabels": {"app": "payments", "team": "pay"}},
            "endpoints": [
                {
                    "targetPort": "metrics",
                    "path": "/m",
                    "scheme": "https",
                    "interval": "30s",
                    "scrapeTimeout": "10s",
                    "relabelings": [
                        {
                            "sourceLabels": ["__meta_kubernetes_service_name"],
                            "regex": "payments",
                            "action": "keep",
                        },
                    ],
                }
            ],
        },
    }
    assert out.monitor not in out.children  # written apart: its CRD may be missing


def test_auto_without_a_service_renders_a_podmonitor_on_the_deployment_selector() -> None:
    out = monitor([])
    assert out.monitor is not None and out.monitor_problem is None
    assert out.monitor["kind"] == "PodMonitor"
    assert out.monitor["spec"] == {
        "selector": {"matchLabels": {"app": "payments"}},
        "podMetricsEndpoints": [{"port": "metrics", "path": "/metrics"}],
    }


def test_a_numeric_port_is_portnumber_on_a_podmonitor_and_targetport_on_a_servicemonitor() -> None:
    pod = render_serviceprofile(OWNER, spec(monitoring={"port": 9090}), MONITORED, (), [])
    assert pod.monitor is not None
    (endpoint,) = pod.monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["portNumber"] == 9090 and "port" not in endpoint
    svc = [service("payments", {"app": "payments"})]
    out = render_serviceprofile(OWNER, spec(monitoring={"port": 9090}), MONITORED, (), svc)
    assert out.monitor is not None
    (endpoint,) = out.monitor["spec"]["endpoints"]
    assert endpoint["targetPort"] == 9090 and "port" not in endpoint


@pytest.mark.parametrize(
    "selector",
    [{}, None, {"app": "other"}, {"app": "payments", "version": "v2"}],
    ids=["empty", "none (ExternalName)", "other-pods", "superset-of-pod-labels"],
)
def test_auto_ignores_a_service_that_does_not_select_the_pods(
    selector: dict[str, str] | None,
) -> None:
    out = monitor([service("payments", selector, app="payments")])
    assert out.monitor is not None and out.monitor["kind"] == "PodMonitor"


def test_auto_takes_the_first_selecting_service_by_name() -> None:
    services = [
        service("zeta", {"app": "payments"}, svc="zeta"),
        service("other", {"app": "nope"}, svc="other"),
        service("alpha", {"tier": "backend"}, svc="alpha"),
        service("beta", {"app": "payments"}, svc="beta"),
    ]  # neither the first nor the last selecting one in list order
    out = monitor(services)
    assert out.monitor is not None
    assert out.monitor["spec"]["selector"] == {"matchLabels": {"svc": "alpha"}}
    assert out.monitor["spec"]["endpoints"][0]["relabelings"][0]["regex"] == "alpha"


def test_a_named_service_is_used_and_an_unlabeled_one_is_selected_by_its_name_alone() -> None:
    services = [service("alpha", {"app": "payments"}, svc="alpha"), service("metrics", {"x": "y"})]
    out = monitor(services, service="metrics")
    assert out.monitor is not None and out.monitor["kind"] == "ServiceMonitor"
    assert out.monitor["spec"]["selector"] == {}
    assert out.monitor["spec"]["endpoints"][0]["relabelings"][0]["regex"] == "metrics"


def test_a_missing_named_service_is_a_problem_and_no_monitor() -> None:
    out = monitor([service("alpha", {"app": "payments"})], service="metrics")
    assert out.monitor is None
    assert out.monitor_problem is not None
    assert out.monitor_problem.startswith("spec.monitoring.service: Service metrics not found")
    assert "namespace shop" in out.monitor_problem


def test_kind_servicemonitor_without_a_service_is_a_problem_and_podmonitor_ignores_services() -> (
    None
):
    forced = monitor([], kind="ServiceMonitor")
    assert forced.monitor is None
    assert forced.monitor_problem is not None
    assert forced.monitor_problem.startswith("spec.monitoring.kind: a ServiceMonitor needs")
    assert "Deployment payments" in forced.monitor_problem
    pod = monitor([service("payments", {"app": "payments"})], kind="PodMonitor")
    assert pod.monitor is not None and pod.monitor["kind"] == "PodMonitor"


def test_relabelings_and_labels_pass_through_and_our_labels_stay() -> None:
    relabel = {"sourceLabels": ["__meta_kubernetes_pod_node_name"], "targetLabel": "node",
               "action": "replace"}  # fmt: skip
    drop = {"sourceLabels": ["__name__"], "regex": "go_.*", "action": "drop"}
    svc = [service("payments", {"app": "payments"})]
    out = monitor(svc, relabelings=[relabel], metricRelabelings=[drop],
                  labels={"release": "prometheus", "team": "payments"})  # fmt: skip
    assert out.monitor is not None
    assert out.monitor["metadata"]["labels"] == {
        "release": "prometheus", "team": "payments", **OUR_LABELS
    }  # fmt: skip
    (endpoint,) = out.monitor["spec"]["endpoints"]
    assert endpoint["relabelings"][1:] == [relabel]  # after the Service pin, unchanged
    assert endpoint["metricRelabelings"] == [drop]
    pod = monitor([], relabelings=[relabel], metricRelabelings=[drop])
    assert pod.monitor is not None
    (endpoint,) = pod.monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["relabelings"] == [relabel] and endpoint["metricRelabelings"] == [drop]


def test_without_monitoring_there_is_no_monitor() -> None:
    out = render_serviceprofile(OWNER, spec(), MONITORED, (), [service("p", {"app": "payments"})])
    assert out.monitor is None and out.monitor_problem is None
