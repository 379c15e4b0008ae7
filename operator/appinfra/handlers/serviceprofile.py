"""ServiceProfile reconciler: validate -> render (pure) -> apply what changed -> status."""

from __future__ import annotations

import logging

from appinfra.api.kinds import SERVICE_PROFILE
from appinfra.controller import Runtime, Taken, describe_changes
from appinfra.kube.client import KubeError, Obj
from appinfra.kube.conditions import ACCEPTED, Condition
from appinfra.kube.resources import (
    CONFIGMAP,
    DEPLOYMENT,
    HEALTHPOLICY,
    HPA,
    NETWORKPOLICY,
    PDB,
    RATELIMITPOLICY,
    SECRETBINDING,
    SERVICEPROFILE,
)
from appinfra.kube.workqueue import Requeue
from appinfra.render.common import Owner
from appinfra.render.interpolate import MissingVariables
from appinfra.render.serviceprofile import render_serviceprofile, variables_from_names
from appinfra.render.templates import TemplateError

log = logging.getLogger("appinfra.serviceprofile")

KIND = "ServiceProfile"
CHILD_KINDS = (CONFIGMAP, HPA, NETWORKPOLICY, PDB)
MANAGER = "appinfra-serviceprofile"
APPLIED = "appinfra.dev/applied-serviceprofile"
RETRY_MISSING_SOURCE = 30.0


def reconcile(rt: Runtime, namespace: str, name: str) -> Requeue | None:
    body = rt.read(SERVICEPROFILE, namespace, name)
    if body is None:
        return None  # gone; its children go with it through ownerReferences
    if body["metadata"].get("deletionTimestamp"):
        _finalize(rt, body)
        return None

    spec = rt.admit(SERVICEPROFILE, SERVICE_PROFILE, body)
    if spec is None:
        return None  # permanent until the spec or a rival changes (which enqueues us again)
    deployment = rt.target(SERVICEPROFILE, body, DEPLOYMENT, spec.target_ref.name)
    if deployment is None:
        return None

    sources: list[dict[str, str]] = []
    for index, cm_name in enumerate(variables_from_names(spec)):
        cm = rt.kube.get(CONFIGMAP, namespace, cm_name)  # not watched: always read fresh
        if cm is None:
            rt.reject(
                SERVICEPROFILE,
                body,
                "Invalid",
                f"spec.config.variablesFrom[{index}].configMapRef.name: ConfigMap {cm_name} "
                f"not found in namespace {namespace}; create it or remove the entry",
            )
            return Requeue(RETRY_MISSING_SOURCE)
        sources.append(dict(cm.get("data") or {}))

    owner = Owner.of(body)
    try:
        rendered = render_serviceprofile(owner, spec, deployment, sources)
    except MissingVariables as exc:
        rt.reject(
            SERVICEPROFILE,
            body,
            "Invalid",
            "spec.config.data: no value and no default for variable(s) "
            + ", ".join(exc.names)
            + "; set them in spec.config.variables or variablesFrom, or add ${NAME:default}",
        )
        return None
    except TemplateError as exc:
        rt.reject(SERVICEPROFILE, body, "Invalid", f"spec.{exc}")
        return None

    writes_target = rendered.deployment is not None
    body = rt.claim_target(SERVICEPROFILE, body, DEPLOYMENT if writes_target else None,
                           spec.target_ref.name)  # fmt: skip
    changed: list[str] = []
    try:
        for obj in rendered.children:
            _, did = rt.ensure_child(owner, obj, MANAGER)
            if did:
                changed.append(f"{obj['kind']}/{obj['metadata']['name']}")
        deleted = rt.prune(owner, CHILD_KINDS, rendered.children)
        if rendered.deployment is not None:
            _, did = rt.ensure(rendered.deployment, MANAGER, APPLIED)
            if did:
                changed.append(f"Deployment/{spec.target_ref.name} fields")
    except Taken as exc:
        rt.reject(SERVICEPROFILE, body, "Conflicted", str(exc))
        return None  # until the spec changes or that object goes (resync retries)
    except KubeError as exc:
        rt.apply_failed(SERVICEPROFILE, body, exc)
        if exc.invalid:
            return None  # permanent: retried when the spec changes (or at resync)
        raise

    if changed or deleted:
        summary = describe_changes(changed, deleted)
        log.info("%s", summary)
        rt.event(body, "Applied", summary)
    rt.write_status(
        SERVICEPROFILE,
        body,
        [
            ACCEPTED,
            Condition("Ready", True, "Reconciled", "every child exists as rendered"),
        ],
        replicaRange=rendered.replica_range,
        policies=_attached_policies(rt, namespace, spec.target_ref.name),
    )
    return None


def _finalize(rt: Runtime, body: Obj) -> None:
    """Deleted: release our Deployment fields (children go by garbage collection)."""
    rt.release_target(SERVICEPROFILE, body)


ATTACHABLE = {"HealthPolicy": HEALTHPOLICY, "RateLimitPolicy": RATELIMITPOLICY,
              "SecretBinding": SECRETBINDING}  # fmt: skip


def _attached_policies(rt: Runtime, namespace: str, deployment: str) -> list[dict[str, str]]:
    """The other appinfra resources on the same Deployment, with their Ready state."""
    out = []
    for kind, name in rt.targets.attached((namespace, "Deployment", deployment)):
        res = ATTACHABLE.get(kind)
        obj = rt.store.get(res, namespace, name) if res else None
        if obj is None or obj["spec"].get("targetRef", {}).get("group", "apps") != "apps":
            continue
        conditions = (obj.get("status") or {}).get("conditions", [])
        ready = next(
            (c.get("status", "Unknown") for c in conditions if c.get("type") == "Ready"), "Unknown"
        )
        out.append({"kind": kind, "name": name, "ready": ready})
    return out
