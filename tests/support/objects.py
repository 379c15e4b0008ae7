"""Manifests and waits the e2e tests share."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

from tests.support.kube import Cluster
from tests.support.servers import wait_until

Obj = dict[str, Any]


def deployment(namespace: str, name: str, containers: tuple[str, ...] = ("app",)) -> Obj:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": {"team": "shop"}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [
                        {
                            "name": c,
                            "image": "registry.k8s.io/pause:3.10",
                            "ports": [{"name": "http", "containerPort": 8080 + i}],
                        }
                        for i, c in enumerate(containers)
                    ]
                },
            },
        },
    }


def appinfra_resource(kind: str, namespace: str, name: str, **spec: Any) -> Obj:
    """An appinfra resource manifest of `kind` with `spec`."""
    return {
        "apiVersion": "appinfra.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def apply(cluster: Cluster, *objs: Obj, check: bool = True) -> str:
    """`kubectl apply` as a user would (client-side apply, manager kubectl-client-side-apply)."""
    doc = {"apiVersion": "v1", "kind": "List", "items": list(objs)}
    proc = cluster.kubectl("apply", "-f", "-", input=json.dumps(doc), check=check)
    return proc.stdout + proc.stderr


def get(cluster: Cluster, kind: str, namespace: str, name: str) -> Obj | None:
    proc = cluster.kubectl(
        "-n", namespace, "get", kind, name, "-o", "json", "--show-managed-fields", check=False
    )
    if proc.returncode != 0:
        if "NotFound" in proc.stderr:
            return None
        raise AssertionError(proc.stderr)
    obj: Obj = json.loads(proc.stdout)
    return obj


def condition(obj: Obj | None, type_: str) -> Obj:
    for cond in (obj or {}).get("status", {}).get("conditions", []):
        if cond["type"] == type_:
            c: Obj = cond
            return c
    return {}


def wait_condition(
    cluster: Cluster,
    kind: str,
    namespace: str,
    name: str,
    type_: str,
    status: str,
    reason: str | None = None,
    timeout: float = 60,
) -> Obj:
    """Wait until a condition has `status` (and `reason`), for the current generation."""
    seen: dict[str, Obj] = {}

    def check() -> bool:
        obj = get(cluster, kind, namespace, name)
        seen["obj"] = obj or {}
        cond = condition(obj, type_)
        return bool(
            obj is not None
            and cond.get("status") == status
            and (reason is None or cond.get("reason") == reason)
            and obj.get("status", {}).get("observedGeneration") == obj["metadata"]["generation"]
        )

    try:
        wait_until(check, timeout, f"{kind}/{name} {type_}={status} {reason or ''}")
    except TimeoutError as exc:
        raise AssertionError(
            f"{exc}\nlast seen status: {seen.get('obj', {}).get('status')}"
        ) from None
    return seen["obj"]


def wait_gone(cluster: Cluster, kind: str, namespace: str, name: str, timeout: float = 60) -> None:
    wait_until(lambda: get(cluster, kind, namespace, name) is None, timeout, f"{kind}/{name} gone")


def wait_exists(cluster: Cluster, kind: str, namespace: str, name: str, timeout: float = 60) -> Obj:
    found: dict[str, Obj] = {}

    def check() -> bool:
        obj = get(cluster, kind, namespace, name)
        if obj is not None:
            found["obj"] = obj
        return obj is not None

    wait_until(check, timeout, f"{kind}/{name} to exist")
    return found["obj"]


def managers(obj: Obj) -> set[str]:
    return {m["manager"] for m in obj["metadata"].get("managedFields", [])}


def fields_of(obj: Obj, manager: str) -> str:
    """The fieldsV1 a manager owns, as JSON text (for "does it own f:replicas" checks)."""
    return json.dumps(
        [m.get("fieldsV1", {}) for m in obj["metadata"].get("managedFields", [])
         if m["manager"] == manager]
    )  # fmt: skip


def events_for(cluster: Cluster, namespace: str, name: str) -> list[Obj]:
    items: list[Obj] = cluster.kubectl_json(
        "-n", namespace, "get", "events", "--field-selector", f"involvedObject.name={name}"
    )["items"]
    return items


def spec_and_our_writes(obj: Obj | None) -> tuple[Any, dict[str, str]]:
    """What "untouched by appinfra" means for an object whose status controllers keep
    writing: the same generation and no new write by an appinfra field manager."""
    meta = (obj or {}).get("metadata", {})
    ours = {
        f"{m['manager']} {m.get('subresource', '')}": m["time"]
        for m in meta.get("managedFields", [])
        if m["manager"].startswith("appinfra")
    }
    return meta.get("generation"), ours


@contextlib.contextmanager
def frozen(
    cluster: Cluster, namespace: str, plural: str, kind: str, labels: dict[str, str] | None = None
) -> Iterator[None]:
    """A ValidatingAdmissionPolicy refusing (403) every create and update of core/v1
    `plural` in `namespace` (those with `labels`, when given): a failure that stays the
    same however often the operator retries, as a frozen namespace would. In force (a
    server-side dry run is refused) on entry; removed on exit."""
    name = f"appinfra-e2e-frozen-{plural}-{namespace}"
    match: Obj = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}}
    if labels:
        match["objectSelector"] = {"matchLabels": labels}
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [{
                "apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"],
                "resources": [plural]}]},
            "validations": [{"expression": "false", "reason": "Forbidden",
                             "message": f"{kind}s are frozen here"}],
        },
    }  # fmt: skip
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name},
        "spec": {"policyName": name, "validationActions": ["Deny"], "matchResources": match},
    }
    meta = {"name": "probe", "namespace": namespace, "labels": labels or {}}
    probe = {"apiVersion": "v1", "kind": kind, "metadata": meta}

    def refused() -> bool:
        proc = cluster.kubectl("create", "--dry-run=server", "-f", "-", input=json.dumps(probe),
                               check=False)  # fmt: skip
        return proc.returncode != 0 and "frozen" in proc.stderr

    try:
        apply(cluster, policy, binding)
        wait_until(refused, 30, "the admission policy in force")
        yield
    finally:
        cluster.kubectl("delete", "validatingadmissionpolicybinding,validatingadmissionpolicy",
                        name, "--ignore-not-found", check=False)  # fmt: skip
