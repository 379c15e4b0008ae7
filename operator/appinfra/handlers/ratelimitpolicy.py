"""RateLimitPolicy reconciler: ingress-nginx annotations on the target Ingress, or a
ConfigMap for envoy ratelimit or an in-app limiter; Enforced says how much of the
policy the chosen enforcement can express."""

from __future__ import annotations

from appinfra.api.kinds import RATE_LIMIT_POLICY
from appinfra.api.names import Obj, applied_annotation, field_manager
from appinfra.controller import Controller, Runtime, Taken
from appinfra.kube.client import KubeError
from appinfra.kube.conditions import ACCEPTED, Condition
from appinfra.kube.resources import (
    BY_KIND,
    CONFIGMAP,
    DEPLOYMENT,
    INGRESS,
    RATELIMITPOLICY,
    Resource,
)
from appinfra.kube.targets import target_ref
from appinfra.kube.workqueue import Requeue
from appinfra.render import messages
from appinfra.render.common import Owner
from appinfra.render.ratelimitpolicy import render_ratelimitpolicy

MANAGER = field_manager(RATELIMITPOLICY.kind)
APPLIED = applied_annotation(RATELIMITPOLICY.kind)


def _target(body: Obj) -> tuple[Resource, str]:
    _, kind, name = target_ref(body)
    return BY_KIND[kind], name


def reconcile(rt: Runtime, namespace: str, name: str) -> Requeue | None:
    body = rt.read(RATELIMITPOLICY, namespace, name)
    if body is None:
        return None
    if body["metadata"].get("deletionTimestamp"):
        rt.release_target(RATELIMITPOLICY, body)
        return None
    spec = rt.admit(RATELIMITPOLICY, RATE_LIMIT_POLICY, body)
    if spec is None:
        return None
    enforcement = spec.enforcement or rt.config.rate_limit.default_enforcement
    if enforcement == "IngressNginx" and spec.target_ref.kind != "Ingress":
        rt.reject(
            RATELIMITPOLICY,
            body,
            "Invalid",
            messages.enforcement_needs_ingress(spec.target_ref.kind),
        )
        return None
    res, target_name = _target(body)
    target = rt.target(RATELIMITPOLICY, body, res, target_name)
    if target is None:
        return None

    owner = Owner.of(body)
    rendered = render_ratelimitpolicy(owner, spec, target, enforcement)
    # Enforcement moved away from IngressNginx (or the target changed): the claim
    # releases our annotations on the Ingress they were on.
    claimed = res if rendered.target_intent is not None else None
    body = rt.claim_target(RATELIMITPOLICY, body, claimed, target_name)
    try:
        changed = [rt.ensure_child(owner, obj, MANAGER)[1] for obj in rendered.children]
        deleted = rt.prune(owner, (CONFIGMAP,), rendered.children)
        if rendered.target_intent is not None:
            changed.append(rt.ensure(rendered.target_intent, MANAGER, APPLIED)[1])
    except Taken as exc:
        rt.reject(RATELIMITPOLICY, body, "Conflicted", str(exc))
        return None
    except KubeError as exc:
        rt.apply_failed(RATELIMITPOLICY, body, exc, also=("Enforced",))  # raises if retryable
        return None
    if any(changed) or deleted:
        rt.event(body, "Applied", f"{enforcement}: {rendered.message}")
    ready_reason = "Reconciled" if rendered.enforced else rendered.reason
    rt.write_status(
        RATELIMITPOLICY,
        body,
        [
            ACCEPTED,
            Condition("Enforced", rendered.enforced, rendered.reason, rendered.message),
            Condition("Ready", rendered.enforced, ready_reason, rendered.message),
        ],
    )
    return None


CONTROLLER = Controller(
    RATELIMITPOLICY, reconcile, owns=(CONFIGMAP,), targets=(DEPLOYMENT, INGRESS)
)
