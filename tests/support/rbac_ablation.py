"""RBAC ablation: every rule the chart grants is needed by something a user can see.

For each single permission of the chart (one verb on one resource), an operator runs
with exactly the chart's rules minus that one, against a private control plane and a
real OpenBao, and every scenario below runs against it. A permission that no scenario
needs would be a permission the chart should not grant; the run fails for it.

`SCENARIO_FOR` names, for every permission, the scenario expected to break without
it: the run checks that one broke (others may break too, and are printed), and a unit
test checks that every permission the chart grants has an entry, so a new rule
without a scenario fails `make test`.

Run it with `make rbac-ablation` (hack/rbac-ablation.sh); it is not part of `make test`.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import secrets
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import hvac
import yaml

from appinfra.kube.client import Kube, KubeError
from tests.e2e.conftest import ControlPlane, Operator
from tests.support.audit import apiserver_args, service_account_user
from tests.support.kube import Cluster
from tests.support.objects import apply, deployment
from tests.support.openbao import enable_kubernetes_auth
from tests.support.rbac import Rule, chart_rules, service_account_kubeconfig
from tests.support.servers import REPO, ServerProcess, free_port, http_ok, tool

SYSTEM_NAMESPACE = "appinfra-system"
MANAGED_SELECTOR = "app.kubernetes.io/managed-by=appinfra"  # what the operator's informers use
TIMEOUT = 30.0  # seconds a scenario step may take; with every rule each takes a few

# The stores the ablation's operators use: one per auth method that needs RBAC (token:
# a credential Secret; kubernetes: a TokenRequest), so the chart grants every rule.
STORES: dict[str, Any] = {
    "bao": {
        "vault": {"address": "http://placeholder", "kv": {"mount": "secret", "version": 2},
                  "auth": {"token": {"secretRef": {"namespace": SYSTEM_NAMESPACE,
                                                   "name": "bao-token", "key": "token"}}}},
        "allowedNamespaces": ["*"], "keyPrefix": "",
    },
    "bao-k8s": {
        "vault": {"address": "http://placeholder", "kv": {"mount": "secret", "version": 2},
                  "auth": {"kubernetes": {"role": "appinfra", "serviceAccount": "default",
                                          "audience": "openbao"}}},
        "allowedNamespaces": ["*"], "keyPrefix": "",
    },
}  # fmt: skip


# --- permissions ------------------------------------------------------------------


def permission(group: str, resource: str, verb: str, names: list[str] | None = None) -> str:
    """One permission's name: "apps/deployments:patch", "core/secrets:get"."""
    suffix = f"[{','.join(names)}]" if names else ""
    return f"{group or 'core'}/{resource}{suffix}:{verb}"


def permissions(rules: list[Rule]) -> dict[str, Rule]:
    """Every single permission in `rules`, each as a rule of its own."""
    out: dict[str, Rule] = {}
    for rule in rules:
        names = rule.get("resourceNames") or None
        for group in rule.get("apiGroups", []):
            for resource in rule.get("resources", []):
                for verb in rule.get("verbs", []):
                    single: Rule = {"apiGroups": [group], "resources": [resource], "verbs": [verb]}
                    if names:
                        single["resourceNames"] = list(names)
                    out[permission(group, resource, verb, names)] = single
    return out


# What breaks without each permission (the scenario names are the functions below;
# "a|b": either, whichever a race decides).
SCENARIO_FOR: dict[str, str] = {
    # The four kinds: kopf lists and watches them; a deleted one is confirmed gone with a
    # GET; the finalizer is a merge patch.
    "appinfra.dev/serviceprofiles:get": "deletions-settle",
    "appinfra.dev/secretbindings:get": "deletions-settle",
    "appinfra.dev/healthpolicies:get": "deletions-settle",
    "appinfra.dev/ratelimitpolicies:get": "deletions-settle",
    "appinfra.dev/serviceprofiles:list": "profile",
    "appinfra.dev/serviceprofiles:watch": "profile",
    "appinfra.dev/serviceprofiles:patch": "profile",
    "appinfra.dev/secretbindings:list": "binding",
    "appinfra.dev/secretbindings:watch": "binding",
    "appinfra.dev/secretbindings:patch": "binding",
    "appinfra.dev/healthpolicies:list": "health",
    "appinfra.dev/healthpolicies:watch": "health",
    "appinfra.dev/healthpolicies:patch": "health",
    "appinfra.dev/ratelimitpolicies:list": "ratelimit-nginx",
    "appinfra.dev/ratelimitpolicies:watch": "ratelimit-nginx",
    "appinfra.dev/ratelimitpolicies:patch": "ratelimit-nginx",
    # Status is a merge patch of the status subresource.
    "appinfra.dev/serviceprofiles/status:patch": "profile",
    "appinfra.dev/secretbindings/status:patch": "binding",
    "appinfra.dev/healthpolicies/status:patch": "health",
    "appinfra.dev/ratelimitpolicies/status:patch": "ratelimit-nginx",
    # OwnerReferencesPermissionEnforcement: a child with blockOwnerDeletion needs these.
    "appinfra.dev/serviceprofiles/finalizers:update": "profile",
    "appinfra.dev/secretbindings/finalizers:update": "binding",
    "appinfra.dev/ratelimitpolicies/finalizers:update": "ratelimit-envoy",
    # Targets.
    "apps/deployments:list": "profile",
    "apps/deployments:watch": "profile-target-later",
    "apps/deployments:patch": "profile",
    "networking.k8s.io/ingresses:list": "ratelimit-nginx",
    "networking.k8s.io/ingresses:watch": "ratelimit-target-later",
    "networking.k8s.io/ingresses:patch": "ratelimit-nginx",
    # Children (watched by label selector) and the Secrets store credentials live in.
    "core/configmaps:get": "profile-variables-from",
    "core/configmaps:list": "profile",
    "core/configmaps:watch": "profile-drift",
    "core/configmaps:create": "profile",
    "core/configmaps:patch": "profile-change",
    "core/configmaps:delete": "profile-prune",
    "core/secrets:get": "binding",
    "core/secrets:list": "binding",
    "core/secrets:watch": "binding-drift",
    "core/secrets:create": "binding",
    "core/secrets:patch": "binding-change",
    "core/secrets:delete": "binding-remote-gone",
    "autoscaling/horizontalpodautoscalers:get": "profile-taken",
    "autoscaling/horizontalpodautoscalers:list": "profile",
    "autoscaling/horizontalpodautoscalers:watch": "profile-drift",
    "autoscaling/horizontalpodautoscalers:create": "profile",
    "autoscaling/horizontalpodautoscalers:patch": "profile-change",
    "autoscaling/horizontalpodautoscalers:delete": "profile-prune",
    "networking.k8s.io/networkpolicies:get": "profile-taken",
    "networking.k8s.io/networkpolicies:list": "profile",
    "networking.k8s.io/networkpolicies:watch": "profile-drift",
    "networking.k8s.io/networkpolicies:create": "profile",
    "networking.k8s.io/networkpolicies:patch": "profile-change",
    "networking.k8s.io/networkpolicies:delete": "profile-prune",
    "policy/poddisruptionbudgets:get": "profile-taken",
    "policy/poddisruptionbudgets:list": "profile",
    # Without the watch the cache keeps what it listed: a deleted PDB is not recreated, or
    # (when another child's event recreated it first) a dropped section's PDB stays.
    "policy/poddisruptionbudgets:watch": "profile-drift|profile-prune",
    "policy/poddisruptionbudgets:create": "profile",
    "policy/poddisruptionbudgets:patch": "profile-change",
    "policy/poddisruptionbudgets:delete": "profile-prune",
    "core/events:create": "events",
    "core/serviceaccounts/token[default]:create": "binding-kubernetes-auth",
    # kopf with --namespace: it lists namespaces at start (retrying for about a minute
    # without) and watches them for a watched namespace created later.
    "core/namespaces:list": "profile",
    "core/namespaces:watch": "namespace-later",
    # Leader election.
    "coordination.k8s.io/leases:get": "leader",
    "coordination.k8s.io/leases:create": "leader",
    "coordination.k8s.io/leases:update": "leader",
}
# Granted, but no scenario here breaks without them; each says why it stays.
NOT_PROVEN: dict[str, str] = {
    "apps/deployments:get": "HealthPolicy deletion after an Override reads the "
    "Deployment's managedFields to hand probes back; shown by the e2e test "
    "test_deleting_an_override_of_a_tcp_port_finishes_and_keeps_a_valid_probe (chart RBAC), "
    "not yet an ablation scenario",
    "apiextensions.k8s.io/customresourcedefinitions:list": "kopf's resource observer: "
    "CRDs installed after the operator started (not a scenario: the CRDs are shared)",
    "apiextensions.k8s.io/customresourcedefinitions:watch": "kopf's resource observer: "
    "CRDs installed after the operator started (not a scenario: the CRDs are shared)",
    **{
        f"monitoring.coreos.com/{plural}:{verb}": "Prometheus Operator children "
        "(ServiceProfile monitoring, HealthPolicy alerts): the ablation's control plane has "
        "no Prometheus Operator CRDs; the e2e tests of those sections prove the verbs"
        for plural in ("servicemonitors", "podmonitors", "prometheusrules")
        for verb in ("get", "list", "watch", "create", "patch", "delete")
    },
    **{
        f"core/services:{verb}": "ServiceProfile monitoring: the Service a ServiceMonitor goes "
        "through (get: the named one, list: the namespace's); its e2e tests "
        "(tests/e2e/test_serviceprofile_monitoring.py, chart RBAC) fail without it, not yet an "
        "ablation scenario (the ablation's control plane has no Prometheus Operator CRDs)"
        for verb in ("get", "list")
    },
    "appinfra.dev/healthpolicies/finalizers:update": "blockOwnerDeletion on the alerts' "
    "PrometheusRule: needs the Prometheus Operator CRDs, which the ablation's control plane "
    "has not",
    "core/events:patch": "a repeated Event is counted in the first one (count, "
    "lastTimestamp); shown by the e2e test "
    "test_a_repeated_failure_is_one_event_whose_count_grows (chart RBAC), not yet an "
    "ablation scenario (none repeats a failure)",
}


# --- scenarios ----------------------------------------------------------------------


@dataclass
class Ctx:
    cluster: Cluster
    api: Kube  # the operator's own JSON client, with the admin's credentials
    namespace: str
    bao: hvac.Client
    operator: Operator
    pod_name: str


def _get(ctx: Ctx, path: str) -> dict[str, Any] | None:
    try:
        out: dict[str, Any] = ctx.api.request("GET", path)
    except KubeError as exc:
        if exc.not_found:
            return None
        raise
    return out


def _path(kind: str, namespace: str, name: str) -> str:
    base = {
        "deployment": "/apis/apps/v1",
        "configmap": "/api/v1",
        "secret": "/api/v1",
        "lease": "/apis/coordination.k8s.io/v1",
        "hpa": "/apis/autoscaling/v2",
        "networkpolicy": "/apis/networking.k8s.io/v1",
        "ingress": "/apis/networking.k8s.io/v1",
        "pdb": "/apis/policy/v1",
    }.get(kind, "/apis/appinfra.dev/v1alpha1")
    plural = {
        "deployment": "deployments", "configmap": "configmaps", "secret": "secrets",
        "lease": "leases", "hpa": "horizontalpodautoscalers",
        "networkpolicy": "networkpolicies", "ingress": "ingresses",
        "pdb": "poddisruptionbudgets", "serviceprofile": "serviceprofiles",
        "secretbinding": "secretbindings", "healthpolicy": "healthpolicies",
        "ratelimitpolicy": "ratelimitpolicies",
    }[kind]  # fmt: skip
    return f"{base}/namespaces/{namespace}/{plural}/{name}"


def _obj(ctx: Ctx, kind: str, name: str) -> dict[str, Any] | None:
    return _get(ctx, _path(kind, ctx.namespace, name))


def _until(what: str, check: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(KubeError):
            if check():
                return
        time.sleep(1)
    raise AssertionError(f"not within {timeout:.0f}s: {what}")


def _cond(obj: dict[str, Any] | None, type_: str) -> dict[str, Any]:
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            found: dict[str, Any] = cond
            return found
    return {}


def _wait_condition(ctx: Ctx, kind: str, name: str, type_: str, status: str) -> None:
    _until(
        f"{kind}/{name} {type_}={status}",
        lambda: _cond(_obj(ctx, kind, name), type_).get("status") == status,
    )


def _wait_reason(ctx: Ctx, kind: str, name: str, type_: str, reason: str) -> None:
    _until(
        f"{kind}/{name} {type_} reason {reason}",
        lambda: _cond(_obj(ctx, kind, name), type_).get("reason") == reason,
    )


def _exists(ctx: Ctx, kind: str, name: str) -> None:
    _until(f"{kind}/{name} exists", lambda: _obj(ctx, kind, name) is not None)


def _gone(ctx: Ctx, kind: str, name: str) -> None:
    _until(f"{kind}/{name} gone", lambda: _obj(ctx, kind, name) is None)


def _delete(ctx: Ctx, kind: str, name: str) -> None:
    ctx.api.request("DELETE", _path(kind, ctx.namespace, name))


def _apply(ctx: Ctx, *objs: dict[str, Any]) -> None:
    apply(ctx.cluster, *objs)


def _kind(kind: str, ns: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "appinfra.dev/v1alpha1", "kind": kind,
            "metadata": {"name": name, "namespace": ns}, "spec": spec}  # fmt: skip


PROFILE_SPEC: dict[str, Any] = {
    "targetRef": {"kind": "Deployment", "name": "web"},
    "config": {"data": {"A": "1"}},
    "autoscaling": {"minReplicas": 1, "maxReplicas": 2, "cpu": {"averageUtilization": 70}},
    "network": {"policyTypes": ["Ingress"],
                "ingress": [{"from": [{"podSelector": {}}]}]},
    "disruption": {"minAvailable": 1},
    "rollout": {"minReadySeconds": 3},
}  # fmt: skip
CHILDREN = (("configmap", "web-config"), ("hpa", "web"), ("networkpolicy", "web"), ("pdb", "web"))


def profile(ctx: Ctx) -> None:
    """A ServiceProfile with every section: Ready, its four children, the target patched."""
    _apply(ctx, deployment(ctx.namespace, "web"))
    _apply(ctx, _kind("ServiceProfile", ctx.namespace, "web", PROFILE_SPEC))
    _wait_condition(ctx, "serviceprofile", "web", "Ready", "True")
    for kind, name in CHILDREN:
        _exists(ctx, kind, name)
    _until(
        "the Deployment's minReadySeconds set",
        lambda: (
            ((_obj(ctx, "deployment", "web") or {}).get("spec") or {}).get("minReadySeconds") == 3
        ),
    )


def profile_change(ctx: Ctx) -> None:
    """A changed spec changes every child in place (an apply of the existing objects)."""
    spec = json.loads(json.dumps(PROFILE_SPEC))
    spec["config"]["data"]["A"] = "2"
    spec["autoscaling"]["maxReplicas"] = 3
    spec["network"]["ingress"] = [{"from": [{"podSelector": {"matchLabels": {"x": "y"}}}]}]
    spec["disruption"] = {"minAvailable": 2}
    _apply(ctx, _kind("ServiceProfile", ctx.namespace, "web", spec))
    wanted: dict[tuple[str, str], Callable[[dict[str, Any]], bool]] = {
        ("configmap", "web-config"): lambda o: (o.get("data") or {}).get("A") == "2",
        ("hpa", "web"): lambda o: o["spec"].get("maxReplicas") == 3,
        ("networkpolicy", "web"): lambda o: "matchLabels" in json.dumps(o["spec"]),
        ("pdb", "web"): lambda o: o["spec"].get("minAvailable") == 2,
    }
    for (kind, name), check in wanted.items():
        _until(f"{kind}/{name} changed", lambda k=kind, n=name, c=check: c(_obj(ctx, k, n) or {}))


def profile_drift(ctx: Ctx) -> None:
    """Children a user deleted come back."""
    for kind, name in CHILDREN:
        _delete(ctx, kind, name)
    for kind, name in CHILDREN:
        _exists(ctx, kind, name)


def profile_prune(ctx: Ctx) -> None:
    """Sections removed from the spec: their children are deleted."""
    spec = {"targetRef": PROFILE_SPEC["targetRef"], "rollout": PROFILE_SPEC["rollout"]}
    _apply(ctx, _kind("ServiceProfile", ctx.namespace, "web", spec))
    for kind, name in CHILDREN:
        _gone(ctx, kind, name)


def profile_delete(ctx: Ctx) -> None:
    """A deleted profile releases the target's fields before its finalizer goes."""
    _delete(ctx, "serviceprofile", "web")
    _gone(ctx, "serviceprofile", "web")
    dep = _obj(ctx, "deployment", "web") or {}
    # Without the finalizer the profile is gone at once and nobody releases the field.
    assert (dep.get("spec") or {}).get("minReadySeconds", 0) == 0, "target fields not released"


def _taken_objects(ns: str) -> list[dict[str, Any]]:
    """Objects a user made, named as the `taken-*` profiles' children would be."""
    meta = {"namespace": ns}
    selector = {"matchLabels": {"app": "mine"}}
    return [
        {"apiVersion": "v1", "kind": "ConfigMap",
         "metadata": {**meta, "name": "taken-cm-config"}, "data": {"MINE": "1"}},
        {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
         "metadata": {**meta, "name": "taken-hpa"},
         "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                     "name": "mine"}, "maxReplicas": 2}},
        {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
         "metadata": {**meta, "name": "taken-np"}, "spec": {"podSelector": selector}},
        {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
         "metadata": {**meta, "name": "taken-pdb"},
         "spec": {"minAvailable": 1, "selector": selector}},
    ]  # fmt: skip


TAKEN_SECTIONS = {
    "taken-cm": {"config": PROFILE_SPEC["config"]},
    "taken-hpa": {"autoscaling": PROFILE_SPEC["autoscaling"]},
    "taken-np": {"network": PROFILE_SPEC["network"]},
    "taken-pdb": {"disruption": PROFILE_SPEC["disruption"]},
}


def profile_taken(ctx: Ctx) -> None:
    """A user's own object with a child's name is reported (read to see whose it is),
    never taken over: one profile per child kind."""
    _apply(ctx, *_taken_objects(ctx.namespace))
    for name, section in TAKEN_SECTIONS.items():
        _apply(ctx, deployment(ctx.namespace, name))
        spec = {"targetRef": {"kind": "Deployment", "name": name}, **section}
        _apply(ctx, _kind("ServiceProfile", ctx.namespace, name, spec))
    for name in TAKEN_SECTIONS:
        _wait_reason(ctx, "serviceprofile", name, "Accepted", "Conflicted")


def profile_target_later(ctx: Ctx) -> None:
    """A profile whose Deployment appears after it converges by itself."""
    spec = {"targetRef": {"kind": "Deployment", "name": "late"}, "config": {"data": {"A": "1"}}}
    _apply(ctx, _kind("ServiceProfile", ctx.namespace, "late", spec))
    _wait_condition(ctx, "serviceprofile", "late", "Accepted", "False")
    _apply(ctx, deployment(ctx.namespace, "late"))
    _wait_condition(ctx, "serviceprofile", "late", "Ready", "True")


def profile_variables_from(ctx: Ctx) -> None:
    """Variables read from a user's ConfigMap reach the rendered one."""
    _apply(ctx, {"apiVersion": "v1", "kind": "ConfigMap",
                 "metadata": {"name": "vars", "namespace": ctx.namespace},
                 "data": {"HOST": "db.example"}})  # fmt: skip
    _apply(ctx, deployment(ctx.namespace, "vars"))
    spec = {"targetRef": {"kind": "Deployment", "name": "vars"},
            "config": {"data": {"H": "${HOST}"},
                       "variablesFrom": [{"configMapRef": {"name": "vars"}}]}}  # fmt: skip
    _apply(ctx, _kind("ServiceProfile", ctx.namespace, "vars", spec))
    _wait_condition(ctx, "serviceprofile", "vars", "Ready", "True")
    cm = _obj(ctx, "configmap", "vars-config") or {}
    assert (cm.get("data") or {}).get("H") == "db.example"


def _secret_value(ctx: Ctx, name: str, key: str) -> str | None:
    data = ((_obj(ctx, "secret", name) or {}).get("data")) or {}
    return base64.b64decode(data[key]).decode() if key in data else None


def _binding(ctx: Ctx, name: str, store: str = "bao", **spec: Any) -> dict[str, Any]:
    remote = f"ablation/{ctx.namespace}/{name}"
    data = [{"secretKey": "PW", "remoteRef": {"key": remote, "property": "pw"}}]
    return _kind("SecretBinding", ctx.namespace, name, {"store": store, "data": data, **spec})


def _put(ctx: Ctx, name: str) -> None:
    ctx.bao.secrets.kv.v2.create_or_update_secret(
        path=f"ablation/{ctx.namespace}/{name}", secret={"pw": "1"}, mount_point="secret"
    )


def binding(ctx: Ctx) -> None:
    """A SecretBinding with a token-auth store that rolls its Deployment on change: Ready,
    and the Secret holds the value."""
    _put(ctx, "db")
    _apply(ctx, deployment(ctx.namespace, "db"))
    _apply(ctx, _binding(ctx, "db", targetRef={"kind": "Deployment", "name": "db"}))
    _wait_condition(ctx, "secretbinding", "db", "Ready", "True")
    _until("Secret db synced", lambda: _secret_value(ctx, "db", "PW") == "1")


def binding_taken(ctx: Ctx) -> None:
    """A user's own Secret with the target's name is reported, never taken over."""
    _put(ctx, "taken")
    _apply(ctx, {"apiVersion": "v1", "kind": "Secret",
                 "metadata": {"name": "taken", "namespace": ctx.namespace},
                 "stringData": {"MINE": "1"}})  # fmt: skip
    _apply(ctx, _binding(ctx, "taken"))
    _wait_reason(ctx, "secretbinding", "taken", "Accepted", "Conflicted")


def binding_change(ctx: Ctx) -> None:
    """A changed binding changes its Secret in place."""
    spec = _binding(ctx, "db", targetRef={"kind": "Deployment", "name": "db"})
    spec["spec"]["data"].append(dict(spec["spec"]["data"][0], secretKey="PW2"))
    _apply(ctx, spec)
    _until("Secret db has PW2", lambda: _secret_value(ctx, "db", "PW2") == "1")


def binding_drift(ctx: Ctx) -> None:
    """A synced Secret a user deleted comes back."""
    _delete(ctx, "secret", "db")
    _until("Secret db back", lambda: _secret_value(ctx, "db", "PW") == "1")


def binding_kubernetes_auth(ctx: Ctx) -> None:
    """A store with Vault kubernetes auth logs in with a requested ServiceAccount token."""
    _put(ctx, "k8s")
    _apply(ctx, _binding(ctx, "k8s", "bao-k8s"))
    _wait_condition(ctx, "secretbinding", "k8s", "Ready", "True")


def binding_remote_gone(ctx: Ctx) -> None:
    """deletionPolicy Delete: the Secret goes when the remote secret does."""
    _put(ctx, "gone")
    target = {"deletionPolicy": "Delete"}
    _apply(ctx, _binding(ctx, "gone", refreshInterval="10s", target=target))
    _until("Secret gone synced", lambda: _secret_value(ctx, "gone", "PW") == "1")
    ctx.bao.secrets.kv.v2.delete_metadata_and_all_versions(
        path=f"ablation/{ctx.namespace}/gone", mount_point="secret"
    )
    _gone(ctx, "secret", "gone")


def health(ctx: Ctx) -> None:
    """A HealthPolicy: Enforced, and the probe is on the Deployment."""
    _apply(ctx, deployment(ctx.namespace, "hp"))
    spec = {"targetRef": {"kind": "Deployment", "name": "hp"},
            "readiness": {"httpGet": {"path": "/ready", "port": 8080}}}  # fmt: skip
    _apply(ctx, _kind("HealthPolicy", ctx.namespace, "hp", spec))
    _wait_condition(ctx, "healthpolicy", "hp", "Enforced", "True")

    def probed() -> bool:
        dep = _obj(ctx, "deployment", "hp") or {}
        containers = dep["spec"]["template"]["spec"]["containers"]
        return all("readinessProbe" in c for c in containers)

    _until("the readiness probe on the Deployment", probed)


def _ingress(ns: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"rules": [{"host": f"{name}.example", "http": {"paths": [{
            "path": "/", "pathType": "Prefix",
            "backend": {"service": {"name": name, "port": {"number": 80}}}}]}}]},
    }  # fmt: skip


LIMITS = {"default": {"requests": 10, "unit": "Second", "by": {"clientIP": {}}}}
NGINX_LIMIT = "nginx.ingress.kubernetes.io/limit-rps"


def _rlp(ns: str, name: str, enforcement: str) -> dict[str, Any]:
    ref = {"group": "networking.k8s.io", "kind": "Ingress", "name": name}
    spec = {"targetRef": ref, "enforcement": enforcement, "limits": LIMITS}
    return _kind("RateLimitPolicy", ns, name, spec)


def _annotated(ctx: Ctx, name: str) -> bool:
    ing = _obj(ctx, "ingress", name) or {}
    return NGINX_LIMIT in ((ing.get("metadata") or {}).get("annotations") or {})


def ratelimit_nginx(ctx: Ctx) -> None:
    """IngressNginx enforcement: Enforced, and the annotation is on the Ingress."""
    _apply(ctx, _ingress(ctx.namespace, "edge"), _rlp(ctx.namespace, "edge", "IngressNginx"))
    _wait_condition(ctx, "ratelimitpolicy", "edge", "Enforced", "True")
    _until("the limit annotation on the Ingress", lambda: _annotated(ctx, "edge"))


def ratelimit_target_later(ctx: Ctx) -> None:
    """A policy whose Ingress appears after it converges by itself."""
    _apply(ctx, _rlp(ctx.namespace, "later", "IngressNginx"))
    _wait_condition(ctx, "ratelimitpolicy", "later", "Accepted", "False")
    _apply(ctx, _ingress(ctx.namespace, "later"))
    _until("the limit annotation on the late Ingress", lambda: _annotated(ctx, "later"))


def ratelimit_envoy(ctx: Ctx) -> None:
    """EnvoyRateLimit enforcement: the rendered ConfigMap exists and the policy is Ready."""
    _apply(ctx, _ingress(ctx.namespace, "envoy"), _rlp(ctx.namespace, "envoy", "EnvoyRateLimit"))
    _wait_condition(ctx, "ratelimitpolicy", "envoy", "Ready", "True")

    def rendered() -> bool:
        cms = _get(ctx, f"/api/v1/namespaces/{ctx.namespace}/configmaps") or {}
        return any(
            ref.get("kind") == "RateLimitPolicy"
            for cm in cms.get("items", [])
            for ref in cm["metadata"].get("ownerReferences") or []
        )

    _until("a ConfigMap owned by the policy", rendered)


def events(ctx: Ctx) -> None:
    """The operator reports what it applied as Events on the resource."""
    _apply(ctx, deployment(ctx.namespace, "ev"))
    spec = {"targetRef": {"kind": "Deployment", "name": "ev"}, "config": {"data": {"A": "1"}}}
    _apply(ctx, _kind("ServiceProfile", ctx.namespace, "ev", spec))

    def posted() -> bool:
        out = _get(ctx, f"/api/v1/namespaces/{ctx.namespace}/events") or {}
        return any(
            e["involvedObject"].get("name") == "ev" and e.get("reason") == "Applied"
            for e in out.get("items", [])
        )

    _until("an Applied Event on the profile", posted)


DELETED = (
    ("serviceprofile", "ServiceProfile", "late"),
    ("secretbinding", "SecretBinding", "db"),
    ("healthpolicy", "HealthPolicy", "hp"),
    ("ratelimitpolicy", "RateLimitPolicy", "edge"),
)


def deletions_settle(ctx: Ctx) -> None:
    """One resource of each kind deleted: each goes, and no reconcile of them is refused
    afterwards (the operator confirms a deleted one is gone with a GET)."""
    log = ctx.operator.process.log_path
    offset = log.stat().st_size
    for kind, _, name in DELETED:
        with contextlib.suppress(KubeError):
            _delete(ctx, kind, name)
    for kind, _, name in DELETED:
        _gone(ctx, kind, name)
    time.sleep(5)  # a failed reconcile is logged at once, then retried
    text = log.read_bytes()[offset:].decode(errors="replace")
    keys = [f"[{kind} {ctx.namespace}/{name} " for _, kind, name in DELETED]
    # Refused ones: a 409 or 404 racing the deletion is retried and ends by itself.
    failed = [line for line in text.splitlines()
              if "reconcile failed" in line and "403" in line
              and any(key in line for key in keys)]  # fmt: skip
    assert not failed, f"{len(failed)} refused reconciles of deleted resources"


def namespace_later(ctx: Ctx) -> None:
    """A watched namespace created after the operator started is served too."""
    later = f"{ctx.namespace}-later"
    ctx.cluster.kubectl("create", "namespace", later)
    spec = {"targetRef": {"kind": "Deployment", "name": "nl"}, "config": {"data": {"A": "1"}}}
    _apply(ctx, deployment(later, "nl"), _kind("ServiceProfile", later, "nl", spec))
    path = _path("serviceprofile", later, "nl")
    _until(
        f"serviceprofile/nl in {later} Ready=True",
        lambda: _cond(_get(ctx, path), "Ready").get("status") == "True",
    )


def leader(ctx: Ctx) -> None:
    """The replica holds the Lease, keeps renewing it, and keeps running."""
    lease = _obj(ctx, "lease", "appinfra")
    assert lease is not None, "no Lease"
    assert lease["spec"].get("holderIdentity") == ctx.pod_name, "not the holder"
    first = lease["spec"].get("renewTime")
    _until(
        "the Lease renewed",
        lambda: (_obj(ctx, "lease", "appinfra") or {}).get("spec", {}).get("renewTime") != first,
    )
    assert ctx.operator.process.running(), "the operator exited"


# Scenario chains: each chain runs in order (a step needs the one before); chains run
# at the same time, all in one namespace watched by the operator under test.
CHAINS: list[list[Callable[[Ctx], None]]] = [
    [profile, profile_change, profile_drift, profile_prune, profile_delete],
    [profile_target_later],
    [profile_taken],
    [profile_variables_from],
    [binding, binding_change, binding_drift],
    [binding_taken],
    [binding_kubernetes_auth],
    [binding_remote_gone],
    [health],
    [ratelimit_nginx],
    [ratelimit_target_later],
    [ratelimit_envoy],
    [events],
    [namespace_later],
]
FINAL = [deletions_settle, leader]  # after every chain


def name_of(fn: Callable[[Ctx], None]) -> str:
    return fn.__name__.replace("_", "-")


SCENARIOS = [name_of(fn) for chain in CHAINS for fn in chain] + [name_of(fn) for fn in FINAL]


# --- the run ------------------------------------------------------------------------


# RBAC cannot scope list/watch by label; the audit log shows what the operator asks for.
SECRET_READS_POLICY: dict[str, Any] = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [
        {"level": "Metadata", "verbs": ["get", "list", "watch"],
         "resources": [{"group": "", "resources": ["secrets"]}]},
        {"level": "None"},
    ],
}  # fmt: skip


def secret_reads(env: Env, user: str) -> tuple[int, list[str]]:
    """How many lists and watches of Secrets `user` sent, and those among them without
    the managed-by label selector. A watch is logged when it starts (and again when it
    ends), so both stages count."""
    seen, unselected = 0, []
    for line in env.audit_log.read_text().splitlines():
        e = json.loads(line)
        if e["user"]["username"] != user or e["verb"] not in ("list", "watch"):
            continue
        seen += 1
        if parse_qs(urlsplit(e["requestURI"]).query).get("labelSelector") != [MANAGED_SELECTOR]:
            unselected.append(f"{e['verb']} {e['requestURI']}")
    return seen, unselected


@dataclass
class Env:
    cluster: Cluster
    bao: hvac.Client
    bao_address: str
    root: Path
    audit_log: Path


@contextlib.contextmanager
def environment(root: Path) -> Iterator[Env]:
    """A private control plane (with OwnerReferencesPermissionEnforcement) and OpenBao."""
    plane = ControlPlane(root, audit=True)
    apiserver_args(plane.dir, SECRET_READS_POLICY)  # the same flags, this policy
    plane.start()
    port = free_port()
    token = secrets.token_hex(16)
    home = root / "openbao"
    home.mkdir(parents=True, exist_ok=True)
    address = f"http://127.0.0.1:{port}"
    bao_proc = ServerProcess(
        "openbao",
        [tool("bao"), "server", "-dev", f"-dev-root-token-id={token}",
         f"-dev-listen-address=127.0.0.1:{port}"],
        home, env={"HOME": str(home), "BAO_ADDR": address},
    ).start()  # fmt: skip
    try:
        bao_proc.wait_ready(lambda: http_ok(f"{address}/v1/sys/health"), 60)
        cluster = Cluster(plane.kubeconfig)
        crds = str(REPO / "crds")
        cluster.kubectl("apply", "--server-side", "-f", crds)
        cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", crds)
        cluster.kubectl("create", "namespace", SYSTEM_NAMESPACE)
        secret = {"apiVersion": "v1", "kind": "Secret",
                  "metadata": {"name": "bao-token", "namespace": SYSTEM_NAMESPACE},
                  "stringData": {"token": token}}  # fmt: skip
        apply(cluster, secret)
        bao = hvac.Client(url=address, token=token)
        bao.sys.create_or_update_policy("read", 'path "secret/data/*" { capabilities = ["read"] }')
        enable_kubernetes_auth(bao, cluster, SYSTEM_NAMESPACE)
        bao.auth.kubernetes.create_role(
            "appinfra", bound_service_account_names=["default"],
            bound_service_account_namespaces=["*"], policies=["read"], audience="openbao",
        )  # fmt: skip
        yield Env(cluster, bao, address, root, plane.audit_log)
    finally:
        bao_proc.stop()
        plane.stop()


def operator_config(env: Env) -> dict[str, Any]:
    stores = yaml.safe_load(yaml.safe_dump(STORES))
    for store in stores.values():
        store["vault"]["address"] = env.bao_address
    return {"secretStores": stores, "rateLimit": {"defaultEnforcement": "IngressNginx"}}


@dataclass
class Outcome:
    removed: str  # "" for the run with every rule
    user: str  # the operator's ServiceAccount, as the audit log names it
    broke: dict[str, str]  # scenario -> what did not happen
    seconds: float


def run_one(env: Env, removed: str, rules: dict[str, Rule]) -> Outcome:
    """An operator with `rules` minus `removed`, in a namespace of its own; every scenario."""
    started = time.monotonic()
    ns = f"ab-{uuid.uuid4().hex[:8]}"
    home = env.root / ns
    home.mkdir(parents=True)
    env.cluster.kubectl("create", "namespace", ns)
    granted = [rule for key, rule in rules.items() if key != removed]
    kubeconfig = service_account_kubeconfig(
        env.cluster, SYSTEM_NAMESPACE, f"appinfra-{ns}", granted, home / "kubeconfig"
    )
    user = service_account_user(SYSTEM_NAMESPACE, f"appinfra-{ns}")
    (home / "operator-config.yaml").write_text(yaml.safe_dump(operator_config(env)))
    pod = f"replica-{ns}"
    op = Operator(env.cluster, home, "operator", "--namespace", ns, "--namespace",
                  f"{ns}-later", "--leader-elect", "--lease-namespace", ns)  # fmt: skip
    op.process.argv.remove("--all-namespaces")
    op.process.env.update({"KUBECONFIG": str(kubeconfig), "POD_NAME": pod})
    broke: dict[str, str] = {}
    try:
        op.start()
    except Exception as exc:
        return Outcome(removed, user, {"start": type(exc).__name__}, time.monotonic() - started)
    api = env.cluster.api()
    ctx = Ctx(env.cluster, Kube(api), ns, env.bao, op, pod)
    try:

        def chain(steps: list[Callable[[Ctx], None]]) -> None:
            for step in steps:
                try:
                    step(ctx)
                except Exception as exc:
                    broke[name_of(step)] = str(exc).splitlines()[0][:100] or type(exc).__name__
                    for rest in steps[steps.index(step) + 1 :]:
                        broke[name_of(rest)] = f"after {name_of(step)}"
                    return

        with ThreadPoolExecutor(len(CHAINS)) as pool:
            list(pool.map(chain, CHAINS))
        for step in FINAL:  # each on its own: the replica must still lead either way
            chain([step])
    finally:
        op.stop()
        api.close()
        env.cluster.kubectl("delete", "namespace", ns, f"{ns}-later", "--wait=false", check=False)
    return Outcome(removed, user, broke, time.monotonic() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parallel", type=int, default=5, help="operators at a time")
    parser.add_argument("--only", action="append", default=[], help="just these permissions")
    parser.add_argument(
        "--explore", action="store_true", help="also ablate permissions not in SCENARIO_FOR"
    )
    args = parser.parse_args(argv)
    rules = permissions(chart_rules(STORES))
    missing = sorted(set(rules) - set(SCENARIO_FOR) - set(NOT_PROVEN))
    if missing and not args.explore:
        print(f"permissions without a scenario in SCENARIO_FOR: {missing}", file=sys.stderr)
        return 1
    targets = args.only or sorted(rules)
    root = Path(tempfile.mkdtemp(prefix="appinfra-ablation-"))
    started = time.monotonic()
    lock = threading.Lock()
    failures = 0
    try:
        with environment(root) as env:
            baseline = run_one(env, "", rules)
            if baseline.broke:
                print(f"with every rule, scenarios fail: {baseline.broke}", file=sys.stderr)
                return 1
            print(f"with every rule: all {len(SCENARIOS)} scenarios pass "
                  f"({baseline.seconds:.0f}s)")  # fmt: skip
            # Cluster-wide list/watch on Secrets is granted; it is used only label-selected.
            seen, unselected = secret_reads(env, baseline.user)
            if not seen or unselected:
                shown = unselected or "none seen"
                print(f"Secrets listed or watched without the managed-by selector: {shown}")
                return 1
            print(f"all {seen} lists/watches of Secrets carried the managed-by label selector")
            print(f"{'permission removed':58} {'expected':24} broke")

            def one(removed: str) -> None:
                nonlocal failures
                outcome = run_one(env, removed, rules)
                expected = SCENARIO_FOR.get(removed, "-")
                # Scenarios that failed themselves: a step after a broken one in its chain
                # did not run, and proves nothing.
                ran = [k for k, why in outcome.broke.items() if not why.startswith("after ")]
                # "start": the operator never became ready, so every scenario broke.
                ok = bool(set(expected.split("|")) & set(ran)) or "start" in ran
                ok = ok or removed in NOT_PROVEN
                with lock:
                    failures += not ok
                    shown = ", ".join(sorted(ran)) or "NOTHING"
                    mark = "" if ok else "   <-- expected scenario did not break"
                    if removed in NOT_PROVEN:
                        mark = f"   (not proven: {NOT_PROVEN[removed]})"
                    print(f"{removed:58} {expected:24} {shown}{mark}", flush=True)
                    if not ok or os.environ.get("ABLATION_VERBOSE"):
                        for scenario, why in sorted(outcome.broke.items()):
                            print(f"    {scenario}: {why}", flush=True)

            with ThreadPoolExecutor(args.parallel) as pool:
                list(pool.map(one, targets))
    finally:
        if not os.environ.get("APPINFRA_KEEP_TEST_DATA"):
            shutil.rmtree(root, ignore_errors=True)
    minutes = (time.monotonic() - started) / 60
    print(f"{len(targets)} permissions ablated in {minutes:.1f} min; {failures} not proven")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
