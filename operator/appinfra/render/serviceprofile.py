"""ServiceProfile -> ConfigMap, HPA, NetworkPolicy, PDB, ServiceMonitor or PodMonitor, and
the target Deployment's fields.

Pure: the live Deployment, the variablesFrom ConfigMaps' data and the Services that may
front the pods come in as arguments; nothing here reads the cluster, the clock or
randomness.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from appinfra.api.names import CONFIG_HASH, Obj
from appinfra.api.serviceprofile import (
    AutoscalingSpec,
    ConfigSpec,
    DisruptionSpec,
    NetworkSpec,
    RolloutSpec,
    ServiceProfileSpec,
)
from appinfra.render.common import Owner, child, content_hash, target_intent
from appinfra.render.interpolate import interpolate
from appinfra.render.monitoring import monitoring_service, render_monitor, service_problem
from appinfra.render.templates import render_template

CONFIG_VOLUME = "appinfra-config"

# kube-dns in kube-system, selected the way every distribution labels it.
_DNS_PEER = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
}
_DNS_RULE = {
    "to": [_DNS_PEER],
    "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
}


@dataclass
class Rendered:
    """What one ServiceProfile asks for."""

    children: list[Obj] = field(default_factory=list)
    deployment: Obj | None = None  # the apply intent for the target's fields
    replica_range: str | None = None
    # Apart from `children`: its CRD may be missing, and then only it is left out.
    monitor: Obj | None = None  # the ServiceMonitor or PodMonitor
    monitor_problem: str | None = None  # why there is none although monitoring is set


def config_map_name(owner: Owner, spec: ConfigSpec) -> str:
    return spec.name or f"{owner.name}-config"


def merged_variables(spec: ConfigSpec, sources: Sequence[Mapping[str, str]]) -> dict[str, str]:
    """variablesFrom in order (later wins), then `variables` over all."""
    out: dict[str, str] = {}
    for source in sources:
        out.update(source)
    out.update(spec.variables)
    return out


def render_config(owner: Owner, spec: ConfigSpec, sources: Sequence[Mapping[str, str]]) -> Obj:
    """The ConfigMap; raises MissingVariables or TemplateError (nothing partial)."""
    variables = merged_variables(spec, sources)
    data = interpolate(spec.data, variables)
    for name, source in spec.files.items():
        data[name] = render_template(
            f"config.files.{name}", source, variables, tenant=owner.namespace
        )
    return child(owner, "v1", "ConfigMap", config_map_name(owner, spec), data=data)


def render_autoscaling(owner: Owner, spec: AutoscalingSpec, target: str) -> Obj:
    metrics = [
        {
            "type": "Resource",
            "resource": {
                "name": resource,
                "target": {"type": "Utilization", "averageUtilization": t.average_utilization},
            },
        }
        for resource, t in (("cpu", spec.cpu), ("memory", spec.memory))
        if t is not None
    ]
    hpa_spec: Obj = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
        "minReplicas": spec.min_replicas,
        "maxReplicas": spec.max_replicas,
    }
    if metrics:
        hpa_spec["metrics"] = metrics
    if spec.behavior:
        hpa_spec["behavior"] = spec.behavior
    return child(owner, "autoscaling/v2", "HorizontalPodAutoscaler", owner.name, spec=hpa_spec)


def render_network(owner: Owner, spec: NetworkSpec, selector: Obj) -> Obj:
    np_spec: Obj = {"podSelector": selector, "policyTypes": list(spec.policy_types)}
    if "Ingress" in spec.policy_types:
        np_spec["ingress"] = list(spec.ingress)
    if "Egress" in spec.policy_types:
        egress = list(spec.egress)
        if spec.allow_dns:
            egress.append(_DNS_RULE)
        np_spec["egress"] = egress
    return child(owner, "networking.k8s.io/v1", "NetworkPolicy", owner.name, spec=np_spec)


def render_disruption(owner: Owner, spec: DisruptionSpec, selector: Obj) -> Obj:
    pdb_spec: Obj = {"selector": selector}
    if spec.min_available is not None:
        pdb_spec["minAvailable"] = spec.min_available
    if spec.max_unavailable is not None:
        pdb_spec["maxUnavailable"] = spec.max_unavailable
    return child(owner, "policy/v1", "PodDisruptionBudget", owner.name, spec=pdb_spec)


def _rollout_fields(spec: RolloutSpec) -> Obj:
    out: Obj = {}
    rolling = {
        k: v
        for k, v in (("maxSurge", spec.max_surge), ("maxUnavailable", spec.max_unavailable))
        if v is not None
    }
    if rolling:
        out["strategy"] = {"type": "RollingUpdate", "rollingUpdate": rolling}
    for key, value in (
        ("minReadySeconds", spec.min_ready_seconds),
        ("progressDeadlineSeconds", spec.progress_deadline_seconds),
        ("revisionHistoryLimit", spec.revision_history_limit),
    ):
        if value is not None:
            out[key] = value
    return out


def _containers(deployment: Obj) -> list[str]:
    spec = deployment.get("spec", {}).get("template", {}).get("spec", {})
    return [c["name"] for c in spec.get("containers", [])]


def render_deployment_fields(
    owner: Owner,
    deployment: Obj,
    config: ConfigSpec | None,
    config_map: Obj | None,
    rollout: RolloutSpec | None,
) -> Obj:
    """The apply intent for the fields this profile owns on the target Deployment.

    Never `spec.replicas`: with autoscaling the HPA owns it, without it the user does.
    """
    meta = deployment["metadata"]
    spec: Obj = _rollout_fields(rollout) if rollout else {}
    pod_spec: Obj = {}
    pod_annotations: dict[str, str] = {}
    if config is not None and config_map is not None:
        cm_name = config_map["metadata"]["name"]
        containers: list[Obj] = [{"name": name} for name in _containers(deployment)]
        if config.inject == "EnvFrom":
            for c in containers:
                c["envFrom"] = [{"configMapRef": {"name": cm_name}}]
        elif config.inject == "Volume":
            pod_spec["volumes"] = [{"name": CONFIG_VOLUME, "configMap": {"name": cm_name}}]
            for c in containers:
                c["volumeMounts"] = [
                    {"name": CONFIG_VOLUME, "mountPath": config.mount_path, "readOnly": True}
                ]
        if config.inject != "None":
            pod_spec["containers"] = containers
        if config.rollout_on_change:
            pod_annotations[CONFIG_HASH] = content_hash(config_map["data"])
    template: Obj = {}
    if pod_annotations:
        template["metadata"] = {"annotations": pod_annotations}
    if pod_spec:
        template["spec"] = pod_spec
    if template:
        spec["template"] = template
    return target_intent(owner, meta["name"], spec)


def render_serviceprofile(
    owner: Owner,
    spec: ServiceProfileSpec,
    deployment: Obj,
    variable_sources: Sequence[Mapping[str, str]] = (),
    services: Sequence[Obj] = (),
) -> Rendered:
    """Everything the profile asks for; raises MissingVariables / TemplateError.

    `services`: the Services the monitor may go through (see monitoring_service)."""
    selector: Obj = deployment.get("spec", {}).get("selector") or {}
    out = Rendered()
    config_map = None
    if spec.config is not None:
        config_map = render_config(owner, spec.config, variable_sources)
        out.children.append(config_map)
    if spec.autoscaling is not None:
        out.children.append(render_autoscaling(owner, spec.autoscaling, spec.target_ref.name))
        out.replica_range = f"{spec.autoscaling.min_replicas}-{spec.autoscaling.max_replicas}"
    if spec.network is not None:
        out.children.append(render_network(owner, spec.network, selector))
    if spec.disruption is not None:
        out.children.append(render_disruption(owner, spec.disruption, selector))
    if spec.monitoring is not None:
        service = monitoring_service(spec.monitoring, deployment, services)
        problem = service_problem(spec.monitoring, service, spec.target_ref.name, owner.namespace)
        if problem is None:
            out.monitor = render_monitor(owner, spec.monitoring, deployment, service)
        out.monitor_problem = problem
    out.deployment = render_deployment_fields(
        owner, deployment, spec.config, config_map, spec.rollout
    )
    return out


def variables_from_names(spec: ServiceProfileSpec) -> list[str]:
    """Names of the ConfigMaps the profile reads variables from, in order."""
    if spec.config is None:
        return []
    return [src.config_map_ref.name for src in spec.config.variables_from]
