"""`appinfra render` for ServiceProfile, HealthPolicy and RateLimitPolicy: each follows
its reconciler in handlers/ step by step (admit, find the target, render, what is
written), with the cluster replaced by the -f documents.

The problem messages are the operator's, word for word; the e2e test
tests/e2e/test_render_matches_operator.py compares them with what the operator writes
to status, so the two cannot drift apart unnoticed.
"""

from __future__ import annotations

from appinfra.api.kinds import HEALTH_POLICY, RATE_LIMIT_POLICY, SERVICE_PROFILE
from appinfra.api.names import Obj, field_manager
from appinfra.api.serviceprofile import ServiceProfileSpec
from appinfra.api.validation import parse_spec
from appinfra.render import messages
from appinfra.render.common import Owner
from appinfra.render.healthpolicy import render_healthpolicy
from appinfra.render.interpolate import MissingVariables
from appinfra.render.offline_inputs import Inputs, Outcome, Written
from appinfra.render.ratelimitpolicy import render_ratelimitpolicy
from appinfra.render.serviceprofile import render_serviceprofile, variables_from_names
from appinfra.render.templates import TemplateError

OWNED = "created and owned (deleted with its owner)"
ALERTS_NOTE = (
    "the PrometheusRule needs the Prometheus Operator's CRDs in the cluster (without them "
    f"the HealthPolicy is Accepted=False, reason {messages.CRD_NOT_INSTALLED}); whether the "
    "platform's Prometheus selects it depends on its ruleSelector (spec.alerts.ruleLabels)"
)


def target_not_found(kind: str, name: str, namespace: str) -> tuple[str, str]:
    return "TargetNotFound", messages.target_not_found(kind, name, namespace)


def _target(out: Outcome, inputs: Inputs, owner: Owner, kind: str, name: str) -> Obj | None:
    """The target among the documents, or None after reporting TargetNotFound."""
    found = inputs.find(kind, owner.namespace, name)
    if found is None:
        out.fail(*target_not_found(kind, name, owner.namespace))
        out.notes.append(f"pass the {kind} {name} manifest with -f to render against it")
    return found


def _applied(owner: Owner, intent: Obj) -> Written:
    how = f"fields applied to {intent['kind']} {intent['metadata']['name']} by server-side "
    return Written(intent, how + f"apply as {field_manager(owner.kind)}")


def render_serviceprofile_doc(doc: Obj, owner: Owner, inputs: Inputs) -> Outcome:
    out = Outcome()
    spec, problems = parse_spec(SERVICE_PROFILE, doc)
    if spec is None:
        return out.fail("Invalid", "; ".join(map(str, problems)))
    deployment = _target(out, inputs, owner, "Deployment", spec.target_ref.name)
    if deployment is None:
        return out
    sources: list[dict[str, str]] = []
    for index, cm_name in enumerate(variables_from_names(spec)):
        cm = inputs.find("ConfigMap", owner.namespace, cm_name)
        if cm is None:
            message = messages.variables_source_missing(index, cm_name, owner.namespace)
            return out.fail("Invalid", message)
        sources.append(dict(cm.get("data") or {}))
    services = inputs.all_of("Service", owner.namespace)
    try:
        rendered = render_serviceprofile(owner, spec, deployment, sources, services)
    except MissingVariables as exc:
        return out.fail("Invalid", messages.variables_missing(exc.names))
    except TemplateError as exc:
        return out.fail("Invalid", f"spec.{exc}")
    out.written.extend(Written(obj, OWNED) for obj in rendered.children)
    if spec.monitoring is not None:
        _monitoring(out, spec, rendered.monitor, rendered.monitor_problem)
    if rendered.deployment is not None:
        out.written.append(_applied(owner, rendered.deployment))
    return out


def _monitoring(
    out: Outcome, spec: ServiceProfileSpec, monitor: Obj | None, problem: str | None
) -> None:
    """The monitor, and what offline rendering cannot know: the Services of the cluster
    (only those among the documents are seen) and whether the Prometheus Operator's CRDs
    are installed."""
    target = spec.target_ref.name
    if problem is not None:
        out.fail(messages.SERVICE_NOT_FOUND, problem)
        out.notes.append("spec.monitoring: pass the Service manifest with -f to render against it")
        return
    assert monitor is not None
    out.written.append(Written(monitor, OWNED))
    if monitor["kind"] == "PodMonitor" and spec.monitoring and spec.monitoring.kind == "Auto":
        out.notes.append(
            f"spec.monitoring: a PodMonitor, as no Service among the documents selects the "
            f"pods of Deployment {target}; in the cluster, a Service that does makes it a "
            "ServiceMonitor (pass it with -f to see that)"
        )
    out.notes.append(
        f"spec.monitoring: the {monitor['kind']} needs the Prometheus Operator's CRDs in the "
        "cluster; without them the profile is Accepted=False (CRDNotInstalled) and the rest "
        "is applied"
    )


def render_healthpolicy_doc(doc: Obj, owner: Owner, inputs: Inputs) -> Outcome:
    out = Outcome()
    spec, problems = parse_spec(HEALTH_POLICY, doc)
    if spec is None:
        return out.fail("Invalid", "; ".join(map(str, problems)))
    deployment = _target(out, inputs, owner, "Deployment", spec.target_ref.name)
    if deployment is None:
        return out
    # The manifest has no managedFields: rendered as the first apply, when no probe of
    # the Deployment is appinfra's yet.
    rendered = render_healthpolicy(owner, spec, deployment)
    if rendered.problems:
        return out.fail("Invalid", "; ".join(rendered.problems))
    # In the operator's order: the probes first, then the PrometheusRule of `alerts`.
    out.written.append(_applied(owner, rendered.deployment))
    out.written.extend(Written(obj, OWNED) for obj in rendered.children)
    if rendered.children:
        out.notes.append(ALERTS_NOTE)
    return out


def render_ratelimitpolicy_doc(doc: Obj, owner: Owner, inputs: Inputs) -> Outcome:
    out = Outcome()
    spec, problems = parse_spec(RATE_LIMIT_POLICY, doc)
    if spec is None:
        return out.fail("Invalid", "; ".join(map(str, problems)))
    enforcement = spec.enforcement or inputs.config.rate_limit.default_enforcement
    if enforcement == "IngressNginx" and spec.target_ref.kind != "Ingress":
        return out.fail("Invalid", messages.enforcement_needs_ingress(spec.target_ref.kind))
    target = _target(out, inputs, owner, spec.target_ref.kind, spec.target_ref.name)
    if target is None:
        return out
    rendered = render_ratelimitpolicy(owner, spec, target, enforcement)
    out.written.extend(Written(obj, OWNED) for obj in rendered.children)
    if rendered.target_intent is not None:
        out.written.append(_applied(owner, rendered.target_intent))
    if not rendered.enforced:
        out.fail(rendered.reason, rendered.message)
    elif not spec.enforcement:
        out.notes.append(f"enforcement {enforcement}: the operator configuration's default")
    return out
