"""ServiceProfile reconciler: validate -> render (pure) -> apply what changed -> status."""

from __future__ import annotations

import logging

from appinfra.api.kinds import SERVICE_PROFILE
from appinfra.api.validation import parse_spec
from appinfra.controller import FINALIZER, Runtime, describe_changes, target_key
from appinfra.kube.client import KubeError, Obj
from appinfra.kube.conditions import Condition
from appinfra.kube.resources import (
    CONFIGMAP,
    DEPLOYMENT,
    HPA,
    NETWORKPOLICY,
    PDB,
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


def _not_accepted(rt: Runtime, body: Obj, reason: str, message: str) -> None:
    changed = rt.write_status(
        SERVICEPROFILE,
        body,
        [
            Condition("Accepted", False, reason, message),
            Condition("Ready", False, reason, message),
        ],
    )
    if changed:
        rt.event(body, reason, message, warning=True)


def reconcile(rt: Runtime, namespace: str, name: str) -> Requeue | None:
    body = rt.read(SERVICEPROFILE, namespace, name)
    if body is None:
        return None  # gone; its children go with it through ownerReferences
    if body["metadata"].get("deletionTimestamp"):
        _finalize(rt, body)
        return None

    spec, problems = parse_spec(SERVICE_PROFILE, body)
    if spec is None:
        _not_accepted(rt, body, "Invalid", "; ".join(map(str, problems)))
        return None  # permanent until the spec changes (which enqueues us again)

    target = target_key(body)
    winner = rt.winner(SERVICEPROFILE, body, lambda o: target_key(o) == target)
    if winner["metadata"]["name"] != name:
        _not_accepted(
            rt,
            body,
            "Conflicted",
            f"ServiceProfile {winner['metadata']['name']} already targets Deployment "
            f"{spec.target_ref.name} (the oldest wins); delete one of them",
        )
        return None

    deployment = rt.read(DEPLOYMENT, namespace, spec.target_ref.name)
    if deployment is None:
        _not_accepted(
            rt,
            body,
            "TargetNotFound",
            f"Deployment {spec.target_ref.name} not found in namespace {namespace}; "
            "it will be configured as soon as it is created",
        )
        return None

    sources: list[dict[str, str]] = []
    for index, cm_name in enumerate(variables_from_names(spec)):
        cm = rt.kube.get(CONFIGMAP, namespace, cm_name)  # not watched: always read fresh
        if cm is None:
            _not_accepted(
                rt,
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
        _not_accepted(
            rt,
            body,
            "Invalid",
            "spec.config.data: no value and no default for variable(s) "
            + ", ".join(exc.names)
            + "; set them in spec.config.variables or variablesFrom, or add ${NAME:default}",
        )
        return None
    except TemplateError as exc:
        _not_accepted(rt, body, "Invalid", f"spec.{exc}")
        return None

    body = rt.add_finalizer(SERVICEPROFILE, body)
    changed: list[str] = []
    try:
        for obj in rendered.children:
            _, did = rt.ensure(obj, MANAGER)
            if did:
                changed.append(f"{obj['kind']}/{obj['metadata']['name']}")
        deleted = rt.prune(owner, CHILD_KINDS, rendered.children)
        if rendered.deployment is not None:
            _, did = rt.ensure(rendered.deployment, MANAGER, APPLIED)
            if did:
                changed.append(f"Deployment/{spec.target_ref.name} fields")
    except KubeError as exc:
        message = f"applying failed: {exc.message}"
        rt.write_status(
            SERVICEPROFILE,
            body,
            [
                Condition("Accepted", True, "Accepted", "the spec is valid and effective"),
                Condition("Ready", False, "ApplyFailed", message),
            ],
        )
        rt.event(body, "ApplyFailed", message, warning=True)
        raise

    if changed or deleted:
        rt.event(body, "Applied", describe_changes(changed, deleted))
    rt.write_status(
        SERVICEPROFILE,
        body,
        [
            Condition("Accepted", True, "Accepted", "the spec is valid and effective"),
            Condition("Ready", True, "Reconciled", "every child exists as rendered"),
        ],
        replicaRange=rendered.replica_range,
    )
    return None


def _finalize(rt: Runtime, body: Obj) -> None:
    """Deleted: release our Deployment fields (children go by garbage collection)."""
    if FINALIZER not in (body["metadata"].get("finalizers") or []):
        return
    meta = body["metadata"]
    deployment = rt.read(DEPLOYMENT, meta["namespace"], target_key(body)[2])
    annotations = (deployment or {}).get("metadata", {}).get("annotations") or {}
    # Only the profile that shaped the Deployment releases: the manager name is per
    # kind, so a conflicted loser releasing would strip the winner's fields.
    if annotations.get(Owner.of(body).target_annotation) == meta["name"]:
        rt.release(DEPLOYMENT, meta["namespace"], target_key(body)[2], MANAGER)
    rt.remove_finalizer(SERVICEPROFILE, body)
