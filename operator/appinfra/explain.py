"""`appinfra explain deployment/NAME`: what appinfra does to one Deployment, read live.

Read-only (GET and LIST, never a write), with the caller's kube context: the
Deployment with its managedFields, the appinfra resources naming it in
spec.targetRef, their children (by the owner labels) and, for SecretBindings, the
target Secret's metadata. Secret values are never read into the output: only names,
owners and the binding's own status. The pure part (decoding, model, rendering) is
in explain_model.py.
"""

from __future__ import annotations

from collections.abc import Iterator

from appinfra.api.names import MANAGED_SELECTOR, OWNER_KIND, OWNER_NAME, Obj
from appinfra.explain_model import (
    Attached,
    Child,
    Explanation,
    SecretSync,
    condition_state,
    owned_fields,
)
from appinfra.kube.client import Kube, KubeError
from appinfra.kube.resources import (
    CONFIGMAP,
    DEPLOYMENT,
    HPA,
    NETWORKPOLICY,
    OURS,
    PDB,
    PODMONITOR,
    PROMETHEUSRULE,
    SECRET,
    SERVICEMONITOR,
    Resource,
)
from appinfra.kube.targets import target_ref

CHILD_KINDS = (CONFIGMAP, SECRET, HPA, NETWORKPOLICY, PDB, SERVICEMONITOR, PODMONITOR,
               PROMETHEUSRULE)  # fmt: skip
"""Every kind appinfra creates as a child (see kube/cache.py CHILD_TYPES)."""


class NotFound(Exception):
    """The Deployment does not exist (the message says which)."""


def _list(kube: Kube, res: Resource, namespace: str, selector: str = "") -> Iterator[Obj]:
    query = {"limit": "250", **({"labelSelector": selector} if selector else {})}
    while True:
        page = kube.request("GET", res.path(namespace), query=query, resource=res.plural)
        yield from page.get("items") or []
        token = (page.get("metadata") or {}).get("continue")
        if not token:
            return
        query = {**query, "continue": token}


def _names_deployment(body: Obj, name: str) -> bool:
    group, kind, target = target_ref(body)
    return group == "apps" and kind == "Deployment" and target == name


def _owner_state(obj: Obj, owner: Obj) -> str:
    """`exists, owned by Kind/name` when its controller reference is the owner's uid."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller") and ref.get("uid") == owner["metadata"].get("uid"):
            return f"exists, owned by {owner['kind']}/{owner['metadata']['name']}"
    return "exists, NOT owned by it (labelled only)"


def explain(kube: Kube, namespace: str, name: str) -> Explanation:
    """Read the Deployment and everything appinfra attached to it. Raises NotFound, or
    KubeError for any other API answer (403 included)."""
    dep = kube.get(DEPLOYMENT, namespace, name)
    if dep is None:
        raise NotFound(f'deployment "{name}" not found in namespace "{namespace}"')
    attached: list[Obj] = []
    for kind, res in OURS.items():
        for body in _list(kube, res, namespace):
            if _names_deployment(body, name):
                attached.append({**body, "kind": kind})
    children: dict[tuple[str, str], list[Obj]] = {}
    notes: list[str] = []
    unreadable: set[str] = set()
    if attached:  # one LIST per child kind, shared by all the resources
        for res in CHILD_KINDS:
            try:
                objs = list(_list(kube, res, namespace, MANAGED_SELECTOR))
            except KubeError as exc:
                if exc.status == 404 and res.optional:
                    continue  # its CRD is not installed: none exist
                # Viewers may read the Deployment but not Secrets (the aggregated `view`
                # role excludes them): say what is missing instead of failing.
                if exc.status != 403:
                    raise
                unreadable.add(res.kind)
                notes.append(f"{res.kind}s not shown: no access to list them ({exc.message})")
                continue
            for obj in objs:
                labels = obj["metadata"].get("labels") or {}
                key = (labels.get(OWNER_KIND, ""), labels.get(OWNER_NAME, ""))
                children.setdefault(key, []).append({**obj, "kind": res.kind})
    resources = [_attached(kube, body, children, unreadable) for body in attached]
    return Explanation(namespace, name, owned_fields(dep), resources, notes)


def _attached(
    kube: Kube, body: Obj, children: dict[tuple[str, str], list[Obj]], unreadable: set[str]
) -> Attached:
    kind, name = body["kind"], body["metadata"]["name"]
    accepted = condition_state(body, "Accepted")
    result = Attached(
        kind,
        name,
        condition_state(body, "Ready"),
        accepted,
        conflicted=accepted.status == "False" and accepted.reason == "Conflicted",
    )
    for obj in sorted(children.get((kind, name), []), key=lambda o: (o["kind"], _name(o))):
        result.children.append(Child(obj["kind"], _name(obj), _owner_state(obj, body)))
    if kind == "SecretBinding":
        status = body.get("status") or {}
        target = status.get("targetSecret")
        result.secret = SecretSync(target, status.get("lastSyncTime"), status.get("nextSyncTime"))
        listed = {(c.kind, c.name) for c in result.children}
        if target and "Secret" in unreadable:
            result.children.append(Child("Secret", target, "unknown (no access to Secrets)"))
        elif target and ("Secret", target) not in listed:
            # A Merge target is someone else's Secret, without our labels: read it alone.
            secret = kube.get(SECRET, body["metadata"]["namespace"], target)
            state = "missing" if secret is None else _owner_state(secret, body)
            if secret is not None and "NOT owned" in state:
                state = "exists, not owned by it (creationPolicy Merge: its owner's Secret)"
            result.children.append(Child("Secret", target, state))
    return result


def _name(obj: Obj) -> str:
    return str(obj["metadata"]["name"])
