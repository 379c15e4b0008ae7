"""ServiceProfile reconciler: validate -> render (pure) -> apply what changed -> status."""

from __future__ import annotations

import logging

from appinfra.api.kinds import SERVICE_PROFILE
from appinfra.api.names import Obj, applied_annotation, field_manager
from appinfra.api.serviceprofile import ServiceProfileSpec
from appinfra.controller import Controller, Runtime, Taken, Watch, describe_changes, same_target
from appinfra.kube.client import KubeError
from appinfra.kube.conditions import ACCEPTED, Condition
from appinfra.kube.resources import (
    BY_KIND,
    CONFIGMAP,
    DEPLOYMENT,
    HEALTHPOLICY,
    HPA,
    NETWORKPOLICY,
    PDB,
    PODMONITOR,
    RATELIMITPOLICY,
    SECRETBINDING,
    SERVICE,
    SERVICEMONITOR,
    SERVICEPROFILE,
)
from appinfra.kube.workqueue import Requeue
from appinfra.render import messages
from appinfra.render.common import Owner
from appinfra.render.interpolate import MissingVariables
from appinfra.render.monitoring import MONITORING_FIELD, wants_service
from appinfra.render.serviceprofile import (
    Rendered,
    render_serviceprofile,
    variables_from_names,
)
from appinfra.render.templates import TemplateError

log = logging.getLogger("appinfra.serviceprofile")

KIND = SERVICEPROFILE.kind
# ServiceMonitor and PodMonitor are optional APIs (the Prometheus Operator's CRDs): while
# one is not served, nothing of it is cached, so prune deletes nothing of it.
CHILD_KINDS = (CONFIGMAP, HPA, NETWORKPOLICY, PDB, SERVICEMONITOR, PODMONITOR)
MANAGER = field_manager(KIND)
APPLIED = applied_annotation(KIND)
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
    sources = _variable_sources(rt, body, spec)
    if sources is None:
        return Requeue(RETRY_MISSING_SOURCE)  # not watched: look again later
    services = _services(rt, body, spec)
    rendered = _render(rt, body, spec, deployment, sources, services)
    if rendered is None:
        return None
    body = rt.claim_target(SERVICEPROFILE, body, DEPLOYMENT if rendered.deployment else None,
                           spec.target_ref.name)  # fmt: skip
    applied = _apply(rt, body, spec, rendered)
    if applied is None:
        return None
    if applied:
        log.info("%s", applied)
        rt.event(body, "Applied", applied)
    problem = _monitoring_problem(rt, rendered)
    if problem is None:
        conditions = [
            ACCEPTED,
            Condition("Ready", True, "Reconciled", "every child exists as rendered"),
        ]
    else:  # the rest is applied; only the monitor waits
        conditions = [Condition("Accepted", False, *problem), Condition("Ready", False, *problem)]
    changed = rt.write_status(
        SERVICEPROFILE,
        body,
        conditions,
        replicaRange=rendered.replica_range,
        policies=_attached_policies(rt, namespace, spec.target_ref.name),
    )
    if problem is not None and changed:
        rt.event(body, *problem, warning=True)
    if problem is not None and problem[0] == messages.SERVICE_NOT_FOUND:
        # Services are not watched: look again later (a missing CRD needs no polling,
        # its informer re-queues every profile when it appears).
        return Requeue(RETRY_MISSING_SOURCE)
    return None


def _services(rt: Runtime, body: Obj, spec: ServiceProfileSpec) -> list[Obj]:
    """The Services a ServiceMonitor may go through, read only when monitoring can use one:
    the named one (a GET) or the namespace's (a LIST). Not watched (the operator would
    cache every Service of the cluster for this): a Service created, changed or deleted
    later is seen at the next reconcile of the profile, at the latest the periodic resync."""
    if spec.monitoring is None or not wants_service(spec.monitoring):
        return []
    namespace = body["metadata"]["namespace"]
    if spec.monitoring.service is not None:
        found = rt.kube.get(SERVICE, namespace, spec.monitoring.service)
        return [found] if found is not None else []
    return rt.kube.list_namespace(SERVICE, namespace)


def _monitoring_problem(rt: Runtime, rendered: Rendered) -> tuple[str, str] | None:
    """(reason, message) when spec.monitoring is set but its monitor is not written: its
    Service is missing, or its CRD is not installed."""
    if rendered.monitor_problem is not None:
        return messages.SERVICE_NOT_FOUND, rendered.monitor_problem
    if rendered.monitor is None:
        return None
    res = BY_KIND[rendered.monitor["kind"]]
    if rt.apis.available(res):
        return None
    return messages.CRD_NOT_INSTALLED, messages.crd_not_installed(
        MONITORING_FIELD, res.kind, res.crd_name
    )


def _variable_sources(
    rt: Runtime, body: Obj, spec: ServiceProfileSpec
) -> list[dict[str, str]] | None:
    """The data of every variablesFrom ConfigMap, or None after reporting a missing one."""
    namespace = body["metadata"]["namespace"]
    sources: list[dict[str, str]] = []
    for index, cm_name in enumerate(variables_from_names(spec)):
        cm = rt.kube.get(CONFIGMAP, namespace, cm_name)  # not watched: always read fresh
        if cm is None:
            message = messages.variables_source_missing(index, cm_name, namespace)
            rt.reject(SERVICEPROFILE, body, "Invalid", message)
            return None
        sources.append(dict(cm.get("data") or {}))
    return sources


def _render(
    rt: Runtime,
    body: Obj,
    spec: ServiceProfileSpec,
    deployment: Obj,
    sources: list[dict[str, str]],
    services: list[Obj],
) -> Rendered | None:
    """The desired children and Deployment fields, or None after reporting why not."""
    try:
        return render_serviceprofile(Owner.of(body), spec, deployment, sources, services)
    except MissingVariables as exc:
        message = messages.variables_missing(exc.names)
    except TemplateError as exc:
        message = f"spec.{exc}"
    rt.reject(SERVICEPROFILE, body, "Invalid", message)
    return None


def _apply(rt: Runtime, body: Obj, spec: ServiceProfileSpec, rendered: Rendered) -> str | None:
    """Write what changed and prune what is gone: a summary ("" when nothing changed),
    or None after reporting why not (a refused write that retrying cannot help raises)."""
    owner = Owner.of(body)
    changed: list[str] = []
    children = list(rendered.children)
    monitor = rendered.monitor
    if monitor is not None and rt.apis.available(BY_KIND[monitor["kind"]]):
        children.append(monitor)  # else its CRD is missing: reported in status
    try:
        for obj in children:
            if rt.ensure_child(owner, obj, MANAGER)[1]:
                changed.append(f"{obj['kind']}/{obj['metadata']['name']}")
        deleted = rt.prune(owner, CHILD_KINDS, children)
        deployment = rendered.deployment
        if deployment is not None and rt.ensure(deployment, MANAGER, APPLIED)[1]:
            changed.append(f"Deployment/{spec.target_ref.name} fields")
    except Taken as exc:
        rt.reject(SERVICEPROFILE, body, "Conflicted", str(exc))
        return None  # until the spec changes or that object goes (resync retries)
    except KubeError as exc:
        rt.apply_failed(SERVICEPROFILE, body, exc)  # raises unless retrying cannot help
        return None
    return describe_changes(changed, deleted)


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


CONTROLLER = Controller(
    SERVICEPROFILE,
    reconcile,
    owns=CHILD_KINDS,
    targets=(DEPLOYMENT,),
    # status.policies lists the Ready of every other appinfra resource on the same
    # Deployment: any change of theirs, even a status write, concerns the profile.
    watches=tuple(Watch(res, same_target(KIND)) for res in ATTACHABLE.values()),
)
