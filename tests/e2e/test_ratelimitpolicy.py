"""RateLimitPolicy with all three enforcements against the real API server."""

from __future__ import annotations

import json
from typing import Any

import yaml

from tests.e2e.conftest import Operator
from tests.support.kube import Cluster
from tests.support.objects import (
    apply,
    condition,
    deployment,
    get,
    managers,
    wait_condition,
    wait_gone,
)

RLP = "ratelimitpolicy"
NGINX = "nginx.ingress.kubernetes.io/"


def ingress(namespace: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": name, "namespace": namespace,
                     "annotations": {"team": "shop"}},
        "spec": {
            "ingressClassName": "nginx",
            "rules": [{"host": "shop.example", "http": {"paths": [{
                "path": "/", "pathType": "Prefix",
                "backend": {"service": {"name": name, "port": {"number": 80}}},
            }]}}],
        },
    }  # fmt: skip


def policy(namespace: str, name: str, **spec: Any) -> dict[str, Any]:
    spec.setdefault("targetRef", {"group": "networking.k8s.io", "kind": "Ingress", "name": name})
    return {
        "apiVersion": "appinfra.dev/v1alpha1",
        "kind": "RateLimitPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


LIMITS = {
    "default": {"requests": 100, "unit": "Second", "burst": 200, "by": {"clientIP": {}}},
    "writes": {"requests": 10, "unit": "Minute", "when": {"pathPrefix": "/orders",
                                                          "methods": ["POST", "PUT"]}},
    "keys": {"requests": 1000, "unit": "Hour", "by": {"header": "x-api-key"}},
}  # fmt: skip


def test_ingress_nginx_annotations_and_partial_enforcement(
    cluster: Cluster, operator: Operator, namespace: str
) -> None:
    apply(cluster, ingress(namespace, "shop"))
    apply(cluster, policy(namespace, "shop", enforcement="IngressNginx", limits=LIMITS,
                          allowlist=["10.0.0.0/8", "192.168.1.1"]))  # fmt: skip
    rlp = wait_condition(cluster, RLP, namespace, "shop", "Enforced", "False", "PartiallyEnforced")
    message = condition(rlp, "Enforced")["message"]
    assert "writes" in message and "keys" in message  # each unexpressed limit is named
    annotations = get(cluster, "ingress", namespace, "shop")["metadata"]["annotations"]  # type: ignore[index]
    assert annotations[NGINX + "limit-rps"] == "100"
    assert annotations[NGINX + "limit-burst-multiplier"] == "2"
    assert annotations[NGINX + "limit-whitelist"] == "10.0.0.0/8,192.168.1.1"
    assert annotations["appinfra.dev/ratelimitpolicy"] == "shop"
    assert annotations["team"] == "shop"

    # Only an expressible limit left: fully enforced, in requests per minute.
    apply(cluster, policy(namespace, "shop", enforcement="IngressNginx",
                          limits={"default": {"requests": 30, "unit": "Minute",
                                                "by": {"clientIP": {}}}}))  # fmt: skip
    wait_condition(cluster, RLP, namespace, "shop", "Enforced", "True", "Enforced")
    annotations = get(cluster, "ingress", namespace, "shop")["metadata"]["annotations"]  # type: ignore[index]
    assert annotations[NGINX + "limit-rpm"] == "30"
    assert NGINX + "limit-rps" not in annotations
    assert NGINX + "limit-whitelist" not in annotations

    cluster.kubectl("-n", namespace, "delete", RLP, "shop", "--wait=true", "--timeout=60s")
    live = get(cluster, "ingress", namespace, "shop")
    assert not any(k.startswith(NGINX) for k in live["metadata"]["annotations"])  # type: ignore[index]
    assert live["metadata"]["annotations"]["team"] == "shop"  # type: ignore[index]
    assert "appinfra-ratelimitpolicy" not in managers(live)  # type: ignore[arg-type]


def test_envoy_ratelimit_config_parses_back(
    cluster: Cluster, operator: Operator, namespace: str
) -> None:
    apply(cluster, ingress(namespace, "edge"))
    apply(cluster, policy(namespace, "edge", enforcement="EnvoyRateLimit", limits=LIMITS))
    wait_condition(cluster, RLP, namespace, "edge", "Ready", "False")
    cm = get(cluster, "configmap", namespace, "edge-ratelimit")
    assert cm is not None
    assert cm["metadata"]["labels"]["appinfra.dev/owner-kind"] == "RateLimitPolicy"
    config = yaml.safe_load(cm["data"]["config.yaml"])
    assert config["domain"] == f"{namespace}.edge"
    found = {}
    for top in config["descriptors"]:
        assert top["key"] == "limit"
        node = top
        while "descriptors" in node and "rate_limit" not in node:
            node = next(
                d for d in node["descriptors"] if not d.get("rate_limit", {}).get("unlimited")
            )
        found[top["value"]] = node["rate_limit"]
    assert found == {
        "default": {"unit": "second", "requests_per_unit": 100},
        "writes": {"unit": "minute", "requests_per_unit": 10},
        "keys": {"unit": "hour", "requests_per_unit": 1000},
    }


def test_configmap_limits_json_and_target_not_found(
    cluster: Cluster, operator: Operator, namespace: str
) -> None:
    target = {"group": "apps", "kind": "Deployment", "name": "app"}
    apply(cluster, policy(namespace, "inapp", enforcement="ConfigMap", limits=LIMITS,
                          targetRef=target))  # fmt: skip
    wait_condition(cluster, RLP, namespace, "inapp", "Accepted", "False", "TargetNotFound")
    apply(cluster, deployment(namespace, "app"))
    wait_condition(cluster, RLP, namespace, "inapp", "Enforced", "True", "Enforced")
    cm = get(cluster, "configmap", namespace, "inapp-ratelimit")
    limits = json.loads(cm["data"]["limits.json"])  # type: ignore[index]
    assert limits["version"] == 1
    by_name = {limit["name"]: limit for limit in limits["limits"]}
    assert by_name["writes"]["periodSeconds"] == 60
    assert by_name["keys"]["by"] == {"header": "x-api-key"}

    # Switching enforcement removes what the old one produced.
    apply(cluster, policy(namespace, "inapp", enforcement="EnvoyRateLimit",
                          limits={"default": {"requests": 5, "unit": "Second"}},
                          targetRef=target))  # fmt: skip
    wait_condition(cluster, RLP, namespace, "inapp", "Enforced", "True")
    cm = get(cluster, "configmap", namespace, "inapp-ratelimit")
    assert "config.yaml" in cm["data"] and "limits.json" not in cm["data"]  # type: ignore[index]
    cluster.kubectl("-n", namespace, "delete", RLP, "inapp")
    wait_gone(cluster, "configmap", namespace, "inapp-ratelimit")
