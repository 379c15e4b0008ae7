"""HealthPolicy reconciler: probes and graceful shutdown on the target, a live Healthy
verdict from the target's status (re-evaluated on every Deployment change event, not by
polling), and the PrometheusRule of `alerts` (a child, when the Prometheus Operator's
CRD is served)."""

from __future__ import annotations

from appinfra.api.kinds import HEALTH_POLICY
from appinfra.api.names import Obj, applied_annotation, field_manager
from appinfra.controller import Controller, Runtime, Taken, describe_changes
from appinfra.controller.claims import names
from appinfra.kube.client import KubeError
from appinfra.kube.conditions import ACCEPTED, Condition
from appinfra.kube.resources import DEPLOYMENT, HEALTHPOLICY, PROMETHEUSRULE
from appinfra.kube.workqueue import Requeue
from appinfra.render import messages
from appinfra.render.common import Owner
from appinfra.render.healthpolicy import (
    HealthRendered,
    hand_back_intent,
    health_verdict,
    render_healthpolicy,
)

MANAGER = field_manager(HEALTHPOLICY.kind)
HANDED_BACK = "released-from-appinfra"
"""Holds the probes an Override replaced after the policy is deleted (not an appinfra
manager any more: appinfra never applies as it again and uninstall leaves it alone)."""
APPLIED = applied_annotation(HEALTHPOLICY.kind)
CHILD_KINDS = (PROMETHEUSRULE,)


def hand_back(rt: Runtime, body: Obj) -> None:
    """Before the release: probes of ours that replaced a container's own (Override) are
    applied once more by HANDED_BACK, so that they stay as they are instead of being
    stripped to a mix the API server may reject (see render.healthpolicy.hand_back_intent).
    Only the policy the Deployment names as its HealthPolicy does this, as for release."""
    claimed = rt.claimed_target(body)
    if claimed is None or claimed[0] != DEPLOYMENT:
        return
    # A GET, not the cache: the cache keeps only appinfra's managedFields entries, and
    # whether another manager holds part of a probe is the question here.
    live = rt.kube.get(DEPLOYMENT, body["metadata"]["namespace"], claimed[1])
    if live is None or not names(live, Owner.of(body)):
        return
    intent = hand_back_intent(live, MANAGER)
    if intent is not None:
        rt.store.write_through(DEPLOYMENT, rt.kube.apply(DEPLOYMENT, intent, HANDED_BACK))


def reconcile(rt: Runtime, namespace: str, name: str) -> Requeue | None:
    body = rt.read(HEALTHPOLICY, namespace, name)
    if body is None:
        return None
    if body["metadata"].get("deletionTimestamp"):
        hand_back(rt, body)
        rt.release_target(HEALTHPOLICY, body)
        return None
    spec = rt.admit(HEALTHPOLICY, HEALTH_POLICY, body)
    if spec is None:
        return None
    deployment = rt.target(HEALTHPOLICY, body, DEPLOYMENT, spec.target_ref.name)
    if deployment is None:
        return None

    rendered = render_healthpolicy(Owner.of(body), spec, deployment)
    if rendered.problems:
        rt.reject(HEALTHPOLICY, body, "Invalid", "; ".join(rendered.problems))
        return None

    body = rt.claim_target(HEALTHPOLICY, body, DEPLOYMENT, spec.target_ref.name)
    try:
        live, changed = rt.ensure(rendered.deployment, MANAGER, APPLIED)
    except KubeError as exc:
        rt.apply_failed(HEALTHPOLICY, body, exc, also=("Enforced",))  # raises if retryable
        return None
    if changed:
        rt.event(body, "Applied", f"probes and shutdown settings applied to {spec.target_ref.name}")
    try:
        refused = _ensure_alerts(rt, body, rendered)
    except KubeError as exc:
        rt.apply_failed(HEALTHPOLICY, body, exc)  # raises if retryable
        return None

    # The verdict reads the freshest copy: the cache has the controller's latest status.
    verdict = health_verdict(rt.read(DEPLOYMENT, namespace, spec.target_ref.name) or live)
    enforced = f"applied to Deployment {spec.target_ref.name} (mode {spec.mode})"
    accepted, ready = ACCEPTED, Condition("Ready", True, "Reconciled", enforced)
    if refused is not None:
        accepted = Condition("Accepted", False, *refused)
        ready = Condition("Ready", False, *refused)
    old = {c.get("type"): c for c in (body.get("status") or {}).get("conditions", [])}
    was = old.get("Accepted") or {}
    rt.write_status(
        HEALTHPOLICY,
        body,
        [
            accepted,
            # Probes and shutdown are applied whatever became of the alerts.
            Condition("Enforced", True, "Enforced", enforced),
            Condition("Healthy", verdict.status, verdict.reason, verdict.message),
            ready,
        ],
        replicas=verdict.replicas,
    )
    if refused is not None and (was.get("reason"), was.get("message")) != refused:
        rt.event(body, refused[0], refused[1], warning=True)
    return None


def _ensure_alerts(rt: Runtime, body: Obj, rendered: HealthRendered) -> tuple[str, str] | None:
    """Write the PrometheusRule of `alerts`, or delete it once the section is gone. Returns
    why it could not be written, for Accepted=False: the CRD is not served (the manager
    reconciles again when it is: no retry of our own), or its name is someone else's."""
    if rendered.children and (missing := rt.apis.missing(CHILD_KINDS)):
        res = missing[0]
        return messages.CRD_NOT_INSTALLED, messages.crd_not_installed(
            "spec.alerts", res.kind, res.crd_name
        )
    owner = Owner.of(body)
    try:
        changed = [
            f"{obj['kind']}/{obj['metadata']['name']}"
            for obj in rendered.children
            if rt.ensure_child(owner, obj, MANAGER)[1]
        ]
    except Taken as exc:
        return "Conflicted", str(exc)  # until that object goes or the spec changes
    # Prune reads the cache: with the CRD absent nothing is cached, and nothing is sent.
    deleted = rt.prune(owner, CHILD_KINDS, rendered.children)
    if changed or deleted:
        rt.event(body, "Applied", describe_changes(changed, deleted))
    return None


CONTROLLER = Controller(
    HEALTHPOLICY,
    reconcile,
    owns=CHILD_KINDS,
    targets=(DEPLOYMENT,),
    follows_target_status=True,  # the Healthy verdict reads the Deployment's status
    before_release=hand_back,
)
