"""What the admission webhook decides about a SecretBinding, ServiceProfile or
HealthPolicy: the problems CEL cannot see, each worded exactly as the resource's status
would word it (the same functions produce both), so that `kubectl apply` fails at once
with the message the user would otherwise find later in status.

A denial is only for what is certain to fail: an unknown store, a forbidden key, a
template that does not compile, a child name held by an object appinfra does not own.
A second resource on one target is a warning (the oldest wins; a user may be
replacing one with the other). Nothing here writes; it reads the operator's cache,
its configuration and, for objects the cache does not hold, the API server.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from appinfra.api.kinds import HEALTH_POLICY, RATE_LIMIT_POLICY, SECRET_BINDING, SERVICE_PROFILE
from appinfra.api.names import Obj
from appinfra.api.validation import parse_spec
from appinfra.controller import Runtime
from appinfra.controller.writes import Taken
from appinfra.handlers.secretbinding.secret import write_rule
from appinfra.kube.ownership import controlled_by
from appinfra.kube.resources import (
    CONFIGMAP,
    HEALTHPOLICY,
    HPA,
    NETWORKPOLICY,
    PDB,
    PODMONITOR,
    PROMETHEUSRULE,
    RATELIMITPOLICY,
    SECRET,
    SECRETBINDING,
    SERVICEMONITOR,
    SERVICEPROFILE,
    Resource,
)
from appinfra.providers.base import ProviderError
from appinfra.render import messages
from appinfra.render.common import Owner
from appinfra.render.secretbinding import checked_keys, lifetime_key, target_name
from appinfra.render.serviceprofile import config_map_name
from appinfra.render.templates import compile_problem

# The API server stamps creationTimestamp (and uid) before validating admission; should a
# request come without, the resource is the newest of all.
_NEWEST = "9999-12-31T23:59:59Z"


@dataclass
class Verdict:
    denied: str | None = None  # the status message of the first certain failure
    warnings: list[str] = field(default_factory=list)


def _as_created(body: Obj) -> Obj:
    if body["metadata"].get("creationTimestamp"):
        return body
    out = copy.deepcopy(body)
    out["metadata"]["creationTimestamp"] = _NEWEST
    return out


def _rival(rt: Runtime, res: Resource, body: Obj, hint: str = "") -> list[str]:
    message = rt.rival_message(res, _as_created(body))
    return [message + hint] if message else []


def _taken(rt: Runtime, res: Resource, owner: Owner, name: str) -> str | None:
    """Taken's message if an object of `res` called `name` exists and is not this
    resource's child. The cache holds appinfra's children only: a miss is confirmed
    with a GET (an update of a resource whose children exist costs none)."""
    live = rt.store.get(res, owner.namespace, name) or rt.kube.get(res, owner.namespace, name)
    if live is None or controlled_by(live, owner.uid):
        return None
    return str(Taken(res.kind, name, owner))


def check_secretbinding(rt: Runtime, body: Obj) -> Verdict:
    spec, _ = parse_spec(SECRET_BINDING, body)
    if spec is None:
        return Verdict()  # the schema's business; status reports the rest
    namespace = body["metadata"]["namespace"]
    # A binding with no consumer Deployment has no target, hence no rivals (as in admit).
    hint = " (one binding can hold many keys)"
    rivals = [] if spec.target_ref is None else _rival(rt, SECRETBINDING, body, hint)
    verdict = Verdict(warnings=rivals)
    names = rt.providers.store_names()
    if spec.store not in names:
        verdict.denied = messages.store_not_configured(spec.store, names)
        return verdict
    for key in checked_keys(spec):
        refused = rt.providers.check_access(spec.store, namespace, key)
        if refused:
            verdict.denied = refused
            return verdict
    lifetime = lifetime_key(spec)
    if lifetime is not None:
        try:  # pki and dynamic need a store that issues (vault); nothing is sent
            rt.providers.leases(spec.store, namespace, lifetime)
        except ProviderError as exc:
            verdict.denied = str(exc)
            return verdict
    template = spec.target.template
    for key, source in (template.data if template is not None else {}).items():
        problem = compile_problem(f"spec.target.template.data.{key}", source, tenant=namespace)
        if problem:
            verdict.denied = problem
            return verdict
    owner = Owner.of(body)
    secret_name = target_name(spec, owner.name)
    mine, hint = write_rule(spec, owner, secret_name)
    live = rt.store.get(SECRET, namespace, secret_name) or rt.kube.get(
        SECRET, namespace, secret_name
    )
    if live is not None and not mine(live):
        verdict.denied = str(Taken("Secret", secret_name, owner, hint))
    return verdict


def check_serviceprofile(rt: Runtime, body: Obj) -> Verdict:
    spec, _ = parse_spec(SERVICE_PROFILE, body)
    if spec is None:
        return Verdict()
    verdict = Verdict(warnings=_rival(rt, SERVICEPROFILE, body))
    owner = Owner.of(body)
    children: list[tuple[Resource, str]] = []
    if spec.config is not None:
        for name, source in spec.config.files.items():
            # status says f"spec.{TemplateError}" for a profile's templates
            problem = compile_problem(f"config.files.{name}", source, tenant=owner.namespace)
            if problem:
                verdict.denied = f"spec.{problem}"
                return verdict
        children.append((CONFIGMAP, config_map_name(owner, spec.config)))
    if spec.autoscaling is not None:
        children.append((HPA, owner.name))
    if spec.network is not None:
        children.append((NETWORKPOLICY, owner.name))
    if spec.disruption is not None:
        children.append((PDB, owner.name))
    # The monitor's kind is certain only when set (Auto depends on the Services of the
    # namespace, which admission does not list); while its CRD is absent there is nothing
    # to hold the name, and status reports the CRD.
    monitor = {"ServiceMonitor": SERVICEMONITOR, "PodMonitor": PODMONITOR}.get(
        spec.monitoring.kind if spec.monitoring else ""
    )
    if monitor is not None and rt.apis.available(monitor):
        children.append((monitor, owner.name))
    for res, name in children:
        taken = _taken(rt, res, owner, name)
        if taken:
            verdict.denied = taken
            return verdict
    return verdict


def check_healthpolicy(rt: Runtime, body: Obj) -> Verdict:
    spec, _ = parse_spec(HEALTH_POLICY, body)
    if spec is None:
        return Verdict()
    verdict = Verdict(warnings=_rival(rt, HEALTHPOLICY, body))
    # The PrometheusRule's name held by someone else's object; a missing CRD is left to
    # status (the probes still apply, and the rule follows once the CRD is installed).
    if spec.alerts is not None and rt.apis.available(PROMETHEUSRULE):
        owner = Owner.of(body)
        verdict.denied = _taken(rt, PROMETHEUSRULE, owner, owner.name)
    return verdict


def check_ratelimitpolicy(rt: Runtime, body: Obj) -> Verdict:
    spec, _ = parse_spec(RATE_LIMIT_POLICY, body)
    return Verdict() if spec is None else Verdict(warnings=_rival(rt, RATELIMITPOLICY, body))


CHECKS = {
    SECRETBINDING.kind: check_secretbinding,
    SERVICEPROFILE.kind: check_serviceprofile,
    HEALTHPOLICY.kind: check_healthpolicy,
    RATELIMITPOLICY.kind: check_ratelimitpolicy,
}
RESOURCES = (SECRETBINDING, SERVICEPROFILE, HEALTHPOLICY, RATELIMITPOLICY)
