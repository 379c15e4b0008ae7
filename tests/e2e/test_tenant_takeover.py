"""Tenant attacks: a namespace's resource must never take over, relabel or delete an
object appinfra did not create for it. Each test builds the victim object first,
aims an appinfra resource at its name, and shows the victim byte-for-byte unchanged
(same resourceVersion), the attacker's status honest (Accepted=False, Conflicted,
naming the object), and the operator still alive."""

from __future__ import annotations

import base64
import time
from typing import Any

from tests.e2e.conftest import Operator, Stores
from tests.e2e.test_secretbinding import binding, put, secret_data
from tests.e2e.test_serviceprofile import profile
from tests.support.kube import Cluster
from tests.support.objects import (
    apply,
    condition,
    deployment,
    get,
    wait_condition,
    wait_exists,
    wait_gone,
)
from tests.support.servers import http_ok, wait_until

SP = "serviceprofile"
SB = "secretbinding"
RLP = "ratelimitpolicy"

Obj = dict[str, Any]


def _victim(namespace: str, kind: str, name: str) -> Obj:
    """Objects a team made itself, with the names an appinfra resource would derive."""
    meta = {"name": name, "namespace": namespace, "labels": {"team": "own"}}
    if kind == "NetworkPolicy":
        return {"apiVersion": "networking.k8s.io/v1", "kind": kind, "metadata": meta,
                "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}  # fmt: skip
    if kind == "HorizontalPodAutoscaler":
        return {"apiVersion": "autoscaling/v2", "kind": kind, "metadata": meta,
                "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                            "name": "other"},
                         "minReplicas": 1, "maxReplicas": 3}}  # fmt: skip
    if kind == "PodDisruptionBudget":
        selector = {"matchLabels": {"app": "other"}}
        return {"apiVersion": "policy/v1", "kind": kind, "metadata": meta,
                "spec": {"minAvailable": 1, "selector": selector}}  # fmt: skip
    return {"apiVersion": "v1", "kind": kind, "metadata": meta, "data": {"OWN": "value"}}


def _unchanged(cluster: Cluster, kind: str, namespace: str, before: Obj) -> None:
    after = get(cluster, kind, namespace, before["metadata"]["name"])
    assert after is not None, f"{kind} {before['metadata']['name']} was deleted"
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert after == before


def _alive(operator: Operator) -> None:
    assert operator.process.running()
    assert http_ok(f"http://127.0.0.1:{operator.health_port}/healthz")


def _conflicted(cluster: Cluster, kind: str, namespace: str, name: str, names: str) -> None:
    obj = wait_condition(cluster, kind, namespace, name, "Accepted", "False", "Conflicted")
    message = condition(obj, "Accepted")["message"]
    assert names in message, message
    assert condition(obj, "Ready")["status"] == "False"


ATTACKS: list[tuple[str, str, dict[str, Any], str]] = [
    # (victim kind, victim name, ServiceProfile spec aimed at it, profile name)
    (
        "NetworkPolicy",
        "default-deny",
        {"network": {"policyTypes": ["Ingress"], "ingress": [{}]}},
        "default-deny",
    ),
    ("ConfigMap", "web-config", {"config": {"data": {"A": "1"}}}, "web"),
    (
        "ConfigMap",
        "team-settings",
        {"config": {"name": "team-settings", "data": {"A": "1"}}},
        "settings",
    ),
    (
        "HorizontalPodAutoscaler",
        "scaler",
        {"autoscaling": {"minReplicas": 1, "maxReplicas": 2}},
        "scaler",
    ),
    ("PodDisruptionBudget", "budget", {"disruption": {"minAvailable": 1}}, "budget"),
]


def test_serviceprofile_never_takes_over_a_foreign_child(
    cluster: Cluster, operator: Operator, namespace: str
) -> None:
    before = {}
    for kind, name, _, _ in ATTACKS:
        apply(cluster, _victim(namespace, kind, name))
        before[name] = get(cluster, kind, namespace, name)
    for _, _, spec, attacker in ATTACKS:  # one target each: one profile per Deployment
        apply(
            cluster, deployment(namespace, attacker), profile(namespace, attacker, attacker, **spec)
        )
    for kind, name, _, attacker in ATTACKS:
        _conflicted(cluster, SP, namespace, attacker, f"{kind} {name}")
        _unchanged(cluster, kind, namespace, before[name])
    # Deleting the attackers must not garbage-collect the victims either.
    for _, _, _, attacker in ATTACKS:
        cluster.kubectl("-n", namespace, "delete", SP, attacker, "--wait=true", "--timeout=60s")
    time.sleep(3)  # give the garbage collector a chance to (wrongly) act
    for kind, name, _, _ in ATTACKS:
        _unchanged(cluster, kind, namespace, before[name])
    _alive(operator)


def test_forged_owner_labels_do_not_make_an_object_prunable(
    cluster: Cluster, operator: Operator, namespace: str
) -> None:
    """Labels can be copied by anyone; only the controller reference proves ownership."""
    apply(cluster, deployment(namespace, "api"))
    forged = _victim(namespace, "ConfigMap", "looks-like-ours")
    forged["metadata"]["labels"] = {
        "app.kubernetes.io/managed-by": "appinfra",
        "appinfra.dev/owner-kind": "ServiceProfile",
        "appinfra.dev/owner-name": "api",
    }
    apply(cluster, forged)
    before = get(cluster, "configmap", namespace, "looks-like-ours")
    assert before is not None
    apply(cluster, profile(namespace, "api", "api", config={"data": {"A": "1"}}))
    wait_condition(cluster, SP, namespace, "api", "Ready", "True")
    time.sleep(2)
    _unchanged(cluster, "configmap", namespace, before)


def test_a_dropped_key_leaves_the_created_configmap(
    cluster: Cluster, operator: Operator, namespace: str
) -> None:
    """A child is created (never applied over a stranger), and the fields the intent
    later drops still go: the creation is owned as an apply, not as an update."""
    apply(cluster, deployment(namespace, "api"))
    apply(cluster, profile(namespace, "api", "api", config={"data": {"A": "1", "B": "2"}}))
    wait_condition(cluster, SP, namespace, "api", "Ready", "True")
    cm = wait_exists(cluster, "configmap", namespace, "api-config")
    assert cm["data"] == {"A": "1", "B": "2"}
    operations = {(m["manager"], m["operation"]) for m in cm["metadata"]["managedFields"]}
    assert ("appinfra-serviceprofile", "Update") not in operations, operations
    apply(cluster, profile(namespace, "api", "api", config={"data": {"A": "1"}}))
    wait_until(
        lambda: (
            (get(cluster, "configmap", namespace, "api-config") or {}).get("data") == {"A": "1"}
        ),
        30,
        "key B removed from api-config",
    )


def test_ratelimitpolicy_never_takes_over_a_foreign_configmap(
    cluster: Cluster, operator: Operator, namespace: str
) -> None:
    apply(cluster, deployment(namespace, "api"))
    apply(cluster, _victim(namespace, "ConfigMap", "api-ratelimit"))
    before = get(cluster, "configmap", namespace, "api-ratelimit")
    assert before is not None
    policy = {
        "apiVersion": "appinfra.dev/v1alpha1",
        "kind": "RateLimitPolicy",
        "metadata": {"name": "api", "namespace": namespace},
        "spec": {
            "targetRef": {"group": "apps", "kind": "Deployment", "name": "api"},
            "enforcement": "ConfigMap",
            "limits": {"default": {"requests": 10, "unit": "Second"}},
        },
    }
    apply(cluster, policy)
    _conflicted(cluster, RLP, namespace, "api", "ConfigMap api-ratelimit")
    _unchanged(cluster, "configmap", namespace, before)
    _alive(operator)


def _secret(namespace: str, name: str, type_: str = "Opaque", **annotations: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": type_,
        "metadata": {"name": name, "namespace": namespace, "annotations": annotations},
        "data": {"OWN": base64.b64encode(b"keep-me").decode()},
    }


def test_secretbinding_never_writes_a_foreign_secret_without_opt_in(
    cluster: Cluster, operator: Operator, stores: Stores, namespace: str
) -> None:
    put(stores, f"{namespace}/db", {"password": "from-vault"})
    data = [{"secretKey": "PW", "remoteRef": {"key": f"{namespace}/db", "property": "password"}}]
    victims = {
        "plain": _secret(namespace, "plain"),
        "release": _secret(
            namespace,
            "release",
            "helm.sh/release.v1",
            **{"appinfra.dev/merge-from": "merge-release"},
        ),
        "other-optin": _secret(
            namespace, "other-optin", **{"appinfra.dev/merge-from": "someone-else"}
        ),
    }
    apply(cluster, *victims.values())
    before = {name: get(cluster, "secret", namespace, name) for name in victims}
    attackers = {
        # Orphan + Delete used to overwrite, relabel, then delete the Secret.
        "orphan": {"name": "plain", "creationPolicy": "Orphan", "deletionPolicy": "Delete"},
        "owner": {"name": "plain"},
        "merge-plain": {"name": "plain", "creationPolicy": "Merge"},
        "merge-release": {"name": "release", "creationPolicy": "Merge"},
        "merge-other": {"name": "other-optin", "creationPolicy": "Merge"},
    }
    for name, target in attackers.items():
        apply(cluster, binding(namespace, name, data=data, target=target))
    for name, target in attackers.items():
        _conflicted(cluster, SB, namespace, name, f"Secret {target['name']}")
    message = condition(get(cluster, SB, namespace, "merge-plain"), "Accepted")["message"]
    assert "appinfra.dev/merge-from: merge-plain" in message
    # The remote secret going away must not make an Orphan/Delete binding delete it.
    stores.bao.secrets.kv.v2.delete_metadata_and_all_versions(f"{namespace}/db")
    time.sleep(3)
    for obj in before.values():
        assert obj is not None
        _unchanged(cluster, "secret", namespace, obj)
    _alive(operator)


def test_merge_writes_only_its_keys_with_the_owners_opt_in(
    cluster: Cluster, operator: Operator, stores: Stores, namespace: str
) -> None:
    put(stores, f"{namespace}/db", {"password": "from-vault"})
    data = [{"secretKey": "PW", "remoteRef": {"key": f"{namespace}/db", "property": "password"}}]
    apply(cluster, _secret(namespace, "shared", **{"appinfra.dev/merge-from": "a, merger"}))
    apply(cluster, binding(namespace, "merger", data=data,
                           target={"name": "shared", "creationPolicy": "Merge"}))  # fmt: skip
    wait_condition(cluster, SB, namespace, "merger", "Ready", "True")
    assert secret_data(cluster, namespace, "shared") == {"OWN": "keep-me", "PW": "from-vault"}
    shared = get(cluster, "secret", namespace, "shared")
    assert shared is not None and not shared["metadata"].get("ownerReferences")
    # Merge into a Secret that does not exist: nothing is created, the status says why.
    apply(cluster, binding(namespace, "nowhere", data=data,
                           target={"name": "absent", "creationPolicy": "Merge"}))  # fmt: skip
    sb = wait_condition(cluster, SB, namespace, "nowhere", "Synced", "False", "SecretNotFound")
    assert "appinfra.dev/merge-from" in condition(sb, "Synced")["message"]
    assert get(cluster, "secret", namespace, "absent") is None
    cluster.kubectl("-n", namespace, "delete", SB, "merger", "--wait=true", "--timeout=60s")
    time.sleep(2)
    assert secret_data(cluster, namespace, "shared") is not None
    wait_gone(cluster, SB, namespace, "merger")
