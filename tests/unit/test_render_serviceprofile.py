from typing import Any

import pytest

from appinfra.api.serviceprofile import ServiceProfileSpec
from appinfra.render.common import Owner
from appinfra.render.interpolate import MissingVariables
from appinfra.render.serviceprofile import render_serviceprofile

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
