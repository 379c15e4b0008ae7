"""HealthPolicy -> probe and shutdown fields on the target Deployment, its health verdict,
and the PrometheusRule of `alerts` (render/alerts.py).

Pure: the live Deployment comes in as an argument; nothing here reads the
cluster, the clock or randomness.

Default mode and server-side apply. Default adds a probe (or preStop hook) only
where the container has none of its own. Once we have applied it, the live
Deployment *has* that probe, and a naive check would then take our own probe
for the user's and drop it from the intent, and the next apply would remove it
again: a flapping loop. So "the container has its own probe" means "the live
container has it and our field manager does not own it". Ownership comes from
`metadata.managedFields` (see `owned_container_fields`).

Override mode and server-side apply. Apply merges a probe field by field: it
sets the fields the intent names (force takes them from their other owner) and
leaves every other field where it was. So that the policy's probe replaces the
container's whole, Override names every field a probe of that handler can carry:
the ones the policy leaves out get what the API server stores for "unset" (its
defaults, or the zero value that is not stored). Otherwise a user's
`scheme: HTTPS` or `periodSeconds: 7` would live on inside the policy's probe.
The one field that cannot be cleared this way is the probe's own
`terminationGracePeriodSeconds` (a pointer: apply cannot set it to "unset").

A different handler type cannot be replaced. Overriding a user's `tcpSocket`
probe with an `httpGet` one would leave both handlers on the probe (apply never
removes a field another manager owns, force or not), which the API server
rejects. Removing the user's handler would take a non-apply write that strips it
from their field manager, and their next `kubectl apply` or Helm upgrade of the
unchanged manifest would put it back next to ours and be rejected in turn. That
case is reported as a problem naming both handlers instead.

preStop uses the core/v1 `sleep` action (`lifecycle.preStop.sleep.seconds`),
not `exec: [sleep, N]`: the exec form needs a `sleep` binary in the image, and
distroless or scratch images have none, in which case the kubelet records a
failed hook and kills the container at once, without the drain delay the hook
was for. The sleep action runs in the kubelet (beta and on by default since
Kubernetes 1.30, GA in 1.34), so it works for every image.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Set
from dataclasses import dataclass, field
from typing import Any, Literal

from appinfra.api.healthpolicy import HealthPolicySpec, Probe
from appinfra.api.names import Obj
from appinfra.render.alerts import render_alerts
from appinfra.render.common import Owner, target_intent

LIVENESS = "livenessProbe"
READINESS = "readinessProbe"
STARTUP = "startupProbe"
PRE_STOP = "lifecycle.preStop"
"""Container fields this kind sets, as dotted paths inside a container; the second
element of every `ours` pair is one of these four."""

_PROBES = (("liveness", LIVENESS), ("readiness", READINESS), ("startup", STARTUP))
_HANDLERS = ("exec", "httpGet", "tcpSocket", "grpc", "sleep")
# What a probe field the policy leaves out becomes in Override mode: the API server's
# default, or a zero value it does not store (0, "", []). See the module docstring.
_PROBE_UNSET = {
    "initialDelaySeconds": 0,
    "periodSeconds": 10,
    "timeoutSeconds": 1,
    "successThreshold": 1,
    "failureThreshold": 3,
}
_HANDLER_UNSET: dict[str, Obj] = {
    "httpGet": {"host": "", "scheme": "HTTP", "httpHeaders": []},
    "tcpSocket": {"host": ""},
    "grpc": {"service": ""},
}
_DEFAULT_GRACE_SECONDS = 30  # what the API server fills in when the pod spec leaves it unset

Ours = Set[tuple[str, str]]


@dataclass
class HealthRendered:
    """What one HealthPolicy asks for: the apply intent, or why it cannot be applied."""

    deployment: Obj
    problems: list[str] = field(default_factory=list)  # non-empty: apply nothing
    children: list[Obj] = field(default_factory=list)  # the PrometheusRule of `alerts`


def owned_container_fields(deployment: Obj, manager: str) -> set[tuple[str, str]]:
    """(container name, field) pairs that `manager` owns on the live Deployment.

    Read from `metadata.managedFields` (FieldsV1), where a container is keyed
    by `k:{"name":"<name>"}` under `f:spec.f:template.f:spec.f:containers`.
    """
    owned: set[tuple[str, str]] = set()
    for entry in deployment.get("metadata", {}).get("managedFields") or []:
        if entry.get("manager") == manager:
            owned |= _entry_fields(entry)
    return owned


def _entry_fields(entry: Obj) -> set[tuple[str, str]]:
    """The (container name, field) pairs one managedFields entry holds any part of."""
    owned: set[tuple[str, str]] = set()
    fields = entry.get("fieldsV1") or {}
    containers = _descend(fields, "spec", "template", "spec", "containers") or {}
    for key, owned_fields in containers.items():
        if not key.startswith("k:"):
            continue
        name = json.loads(key[2:]).get("name")
        for path in (LIVENESS, READINESS, STARTUP, PRE_STOP):
            if name and _descend(owned_fields, *path.split(".")) is not None:
                owned.add((name, path))
    return owned


def hand_back_intent(deployment: Obj, manager: str) -> Obj | None:
    """What to apply, as another field manager, before `manager` releases its fields:
    the live value of every field of ours that another manager holds a part of.

    That is a probe (or preStop hook) that replaced the container's own: force took the
    values that differed, the user's manager kept the rest. Releasing alone would drop
    exactly the parts we took and leave a mix of both, or a probe without its port or
    handler that the API server rejects, so the deletion could never finish. Applied
    again by a second manager with the same values, the fields stay as they are when our
    manager lets go (the container's own values are gone: the API server keeps none).
    None when there is nothing to hand back.
    """
    entries = deployment.get("metadata", {}).get("managedFields") or []
    ours = owned_container_fields(deployment, manager)
    theirs: set[tuple[str, str]] = set()
    for entry in entries:
        if entry.get("manager") != manager:
            theirs |= _entry_fields(entry)
    pod = deployment.get("spec", {}).get("template", {}).get("spec", {})
    live = {c["name"]: c for c in pod.get("containers") or []}
    intents: dict[str, Obj] = {}
    for name, path in sorted(ours & theirs):
        value = _live_field(live.get(name) or {}, path)
        if value is None:
            continue
        target = intents.setdefault(name, {"name": name})
        *parents, leaf = path.split(".")
        for part in parents:
            target = target.setdefault(part, {})
        target[leaf] = copy.deepcopy(value)
    if not intents:
        return None
    meta = deployment["metadata"]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
        "spec": {"template": {"spec": {"containers": list(intents.values())}}},
    }


def _descend(fields: Any, *names: str) -> Any:
    """The FieldsV1 node at `names` (each an `f:` field), None if the manager owns none."""
    for name in names:
        fields = fields.get(f"f:{name}") if isinstance(fields, dict) else None
    return fields


def _live_field(container: Obj, path: str) -> Obj | None:
    value: Any = container
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value if isinstance(value, dict) else None


def _handler(body: Obj) -> str | None:
    return next((h for h in _HANDLERS if body.get(h) is not None), None)


def whole_probe(body: Obj) -> Obj:
    """`body` with every field it leaves out set to what the API server stores for unset."""
    out = {**_PROBE_UNSET, **body}
    handler = _handler(body)
    if handler in _HANDLER_UNSET:
        out[handler] = {**_HANDLER_UNSET[handler], **body[handler]}
    return out


def _port_problems(where: str, body: Obj, container: Obj) -> Iterator[str]:
    """A named port must be one the container declares; numbers are always fine."""
    declared = {p.get("name") for p in container.get("ports") or [] if p.get("name")}
    for handler in ("httpGet", "tcpSocket"):
        port = (body.get(handler) or {}).get("port")
        if isinstance(port, str) and port not in declared:
            yield (
                f'{where}.{handler}.port: container "{container["name"]}" declares no port '
                f'named "{port}"; name a declared port or use a number'
            )


class _Shaper:
    """Decides, container by container, which of our fields go into the intent."""

    def __init__(self, override: bool, containers: dict[str, Obj], ours: Ours) -> None:
        self.override = override
        self.containers = containers
        self.ours = ours
        self.problems: list[str] = []
        self.intents: dict[str, Obj] = {name: {"name": name} for name in containers}

    def set(self, where: str, name: str, path: str, body: Obj) -> None:
        """Put `body` at `path` of container `name` unless Default mode leaves it to the user."""
        own = _live_field(self.containers[name], path)
        if own is not None and (name, path) not in self.ours:
            if not self.override:
                return
            theirs, mine = _handler(own), _handler(body)
            if theirs is not None and theirs != mine:
                self.problems.append(
                    f'{where}: container "{name}" has its own {path} using {theirs}; server-side '
                    f"apply cannot remove a field another manager owns, so Override with {mine} "
                    f"would leave both handlers and the API server rejects that; use {theirs} in "
                    f"{where} or remove the container's own {path}"
                )
                return
        self.problems.extend(_port_problems(where, body, self.containers[name]))
        target = self.intents[name]
        *parents, leaf = path.split(".")
        for part in parents:
            target = target.setdefault(part, {})
        target[leaf] = body


def render_healthpolicy(
    owner: Owner, spec: HealthPolicySpec, deployment: Obj, ours: Ours | None = None
) -> HealthRendered:
    """The server-side apply intent (manager appinfra-healthpolicy) for the target Deployment.

    `ours`: the (container, field) pairs our manager owns now; by default read
    from the Deployment's managedFields. Those count as unset in Default mode.
    Problems name the spec field and say what to change; when there are any,
    the caller applies nothing.
    """
    meta = deployment["metadata"]
    pod = deployment.get("spec", {}).get("template", {}).get("spec", {})
    live = {c["name"]: c for c in pod.get("containers") or []}
    problems = [
        f'spec.containers: Deployment "{meta["name"]}" has no container "{name}"; its '
        f"containers are {', '.join(live) or 'none'} (init containers are not shaped)"
        for name in spec.containers
        if name not in live
    ]
    selected = {n: c for n, c in live.items() if not spec.containers or n in spec.containers}
    owned = owned_container_fields(deployment, owner.field_manager) if ours is None else ours
    override = spec.mode == "Override"
    shaper = _Shaper(override, selected, owned)
    for attr, path in _PROBES:
        probe: Probe | None = getattr(spec, attr)
        if probe is not None:
            for name in selected:
                body = probe.to_api()
                shaper.set(f"spec.{attr}", name, path, whole_probe(body) if override else body)

    pod_fields: Obj = {}
    shutdown = spec.graceful_shutdown
    if shutdown is not None:
        sleep = shutdown.pre_stop_sleep_seconds
        grace = shutdown.termination_grace_period_seconds
        if sleep:  # 0 means no hook at all: the sleep action rejects 0 on older clusters
            for name in selected:
                shaper.set("spec.gracefulShutdown", name, PRE_STOP, {"sleep": {"seconds": sleep}})
            hooked = any("lifecycle" in c for c in shaper.intents.values())
            live_grace = pod.get("terminationGracePeriodSeconds", _DEFAULT_GRACE_SECONDS)
            if hooked and grace is None and sleep >= live_grace:
                problems.append(
                    f"spec.gracefulShutdown.preStopSleepSeconds: {sleep} is not less than the "
                    f"Deployment's terminationGracePeriodSeconds ({live_grace}), so pods would "
                    "be killed mid-sleep; lower it or set "
                    "gracefulShutdown.terminationGracePeriodSeconds"
                )
        if grace is not None:
            pod_fields["terminationGracePeriodSeconds"] = grace
    problems.extend(shaper.problems)

    containers = [c for c in shaper.intents.values() if len(c) > 1]
    if containers:
        pod_fields["containers"] = containers
    fields = {"template": {"spec": pod_fields}} if pod_fields else None
    children = [] if spec.alerts is None else [render_alerts(owner, spec.alerts, meta["name"])]
    return HealthRendered(target_intent(owner, meta["name"], fields), problems, children)


HealthReason = Literal["Available", "RolloutInProgress", "Unavailable", "ProgressDeadlineExceeded"]

_TIMED_OUT = "ProgressDeadlineExceeded"
_COMPLETE = "NewReplicaSetAvailable"  # Progressing reason once a rollout has finished


@dataclass(frozen=True)
class Verdict:
    """The target's health for the Healthy condition and status.replicas."""

    status: bool
    reason: HealthReason
    message: str
    replicas: dict[str, int]


def health_verdict(deployment: Obj) -> Verdict:
    """Healthy or not, decided the way `kubectl rollout status` decides a Deployment is done.

    kubectl's order: the controller must have observed the current generation;
    a Progressing=False/ProgressDeadlineExceeded condition is a failure; then
    the rollout waits for every replica to be updated, for old replicas to go,
    and for updated replicas to be available. We split kubectl's last wait in
    two: while the controller still reports progress it is RolloutInProgress,
    afterwards (pods that crashed or stopped passing readiness after a finished
    rollout) it is Unavailable.
    """
    spec = deployment.get("spec") or {}
    status = deployment.get("status") or {}
    desired = spec.get("replicas", 1)
    updated = status.get("updatedReplicas", 0)
    total = status.get("replicas", 0)
    ready = status.get("readyReplicas", 0)
    available = status.get("availableReplicas", 0)
    replicas = {"desired": desired, "updated": updated, "ready": ready, "available": available}
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    progressing = conditions.get("Progressing") or {}
    counts = f"{updated} updated, {ready} ready, {available} available of {desired} desired"

    def verdict(reason: HealthReason, message: str) -> Verdict:
        return Verdict(reason == "Available", reason, message, replicas)

    generation = deployment.get("metadata", {}).get("generation", 0)
    observed = status.get("observedGeneration", 0)
    if observed < generation:
        return verdict(
            "RolloutInProgress",
            f"waiting for the deployment controller to observe generation {generation} "
            f"(last observed {observed})",
        )
    if progressing.get("status") == "False" and progressing.get("reason") == _TIMED_OUT:
        return verdict(
            "ProgressDeadlineExceeded",
            f"rollout exceeded spec.progressDeadlineSeconds ({counts}): "
            f"{progressing.get('message', '')}; check the new pods' events and logs "
            "(image, crashes, failing readiness), fix the template or run kubectl rollout undo",
        )
    if updated < desired:
        return verdict("RolloutInProgress", f"{updated} of {desired} replicas updated ({counts})")
    if total > updated:
        return verdict(
            "RolloutInProgress",
            f"{total - updated} old replicas pending termination ({counts})",
        )
    if updated > desired:
        return verdict("RolloutInProgress", f"scaling down to {desired} replicas ({counts})")
    condition = conditions.get("Available") or {}
    if available < desired or condition.get("status") == "False":
        if progressing.get("status") == "True" and progressing.get("reason") != _COMPLETE:
            return verdict(
                "RolloutInProgress",
                f"{available} of {updated} updated replicas available ({counts})",
            )
        detail = (
            f"{available} of {desired} replicas available"
            if available < desired
            else f"Available condition is False: {condition.get('message', '')}"
        )
        return verdict(
            "Unavailable",
            f"{detail} ({counts}); check the pods' events, restarts and readiness probe "
            "failures (kubectl describe pods)",
        )
    if desired == 0:
        return verdict("Available", "scaled to zero replicas")
    return verdict("Available", f"all {desired} replicas updated and available")
