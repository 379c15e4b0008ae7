"""ServiceProfile: config, autoscaling, network, rollout, disruption and monitoring for one
Deployment."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from appinfra.api.base import ApiModel, Rule
from appinfra.api.common import ConditionStatus, DeploymentRef, Status
from appinfra.api.formats import (
    AbsolutePath,
    DataKey,
    DNSSubdomain,
    FreeForm,
    IntOrPercent,
    ListSet,
    OptionalDNSSubdomain,
    VariableName,
)
from appinfra.api.monitoring import MonitoringSpec


class ConfigMapRef(ApiModel):
    """A ConfigMap in the same namespace."""

    name: DNSSubdomain = Field(description="Name of the ConfigMap.")


class VariablesSource(ApiModel):
    """Where to read interpolation variables from."""

    config_map_ref: ConfigMapRef = Field(description="A ConfigMap whose keys become variables.")


class ConfigSpec(ApiModel):
    """Configuration rendered into a ConfigMap and injected into the target's containers."""

    name: OptionalDNSSubdomain = Field(
        default="",
        description='Name of the rendered ConfigMap; empty means "<metadata.name>-config".',
    )
    data: dict[DataKey, str] = Field(
        default_factory=dict,
        max_length=1024,
        description="Key/value pairs; values interpolate ${VAR} and ${VAR:default}, and $${ "
        "is a literal ${.",
    )
    files: dict[DataKey, str] = Field(
        default_factory=dict,
        max_length=256,
        description="File name to Jinja2 template (sandboxed, undefined names are errors); "
        "the template context is the variables.",
    )
    variables: dict[VariableName, str] = Field(
        default_factory=dict,
        max_length=1024,
        description="Variables for interpolation and templates; they win over variablesFrom.",
    )
    variables_from: list[VariablesSource] = Field(
        default_factory=list,
        max_length=16,
        description="Sources of variables; later entries win over earlier ones.",
    )
    inject: Literal["EnvFrom", "Volume", "None"] = Field(
        default="EnvFrom",
        description="How containers see the ConfigMap: EnvFrom (environment variables), "
        "Volume (files under mountPath) or None.",
    )
    mount_path: AbsolutePath | None = Field(
        default=None, description="Directory the ConfigMap is mounted at; required for Volume."
    )
    rollout_on_change: bool = Field(
        default=True,
        description="Restart the pods when the rendered content changes (pod-template "
        "annotation appinfra.dev/config-hash).",
    )

    rules = (
        Rule(
            cel="self.inject != 'Volume' || has(self.mountPath)",
            message="mountPath is required when inject is Volume",
            holds=lambda c: c.inject != "Volume" or c.mount_path is not None,
            field="mountPath",
            reason="FieldValueRequired",
        ),
    )


class UtilizationTarget(ApiModel):
    """A resource utilisation target for the autoscaler."""

    average_utilization: int = Field(
        ge=1,
        le=1000,
        description="Target average utilisation across pods, in percent of the request.",
    )


class AutoscalingSpec(ApiModel):
    """A HorizontalPodAutoscaler (autoscaling/v2) for the target."""

    min_replicas: int = Field(default=1, ge=1, description="Lower bound on the replica count.")
    max_replicas: int = Field(ge=1, description="Upper bound on the replica count.")
    cpu: UtilizationTarget | None = Field(default=None, description="CPU utilisation target.")
    memory: UtilizationTarget | None = Field(default=None, description="Memory utilisation target.")
    behavior: FreeForm | None = Field(
        default=None,
        description="Scaling behavior, passed through as autoscaling/v2 "
        "HorizontalPodAutoscalerBehavior.",
    )

    rules = (
        Rule(
            cel="!has(self.minReplicas) || self.minReplicas <= self.maxReplicas",
            message="minReplicas must be less than or equal to maxReplicas",
            holds=lambda a: a.min_replicas <= a.max_replicas,
            field="minReplicas",
        ),
    )


class NetworkSpec(ApiModel):
    """A NetworkPolicy selecting the target's pods."""

    policy_types: Annotated[list[Literal["Ingress", "Egress"]], ListSet()] = Field(
        default=["Ingress"],
        min_length=1,
        max_length=2,
        description="Directions the policy restricts: Ingress, Egress or both.",
    )
    ingress: list[FreeForm] = Field(
        default_factory=list,
        description="Allowed incoming traffic: native networking.k8s.io/v1 "
        "NetworkPolicyIngressRule objects.",
    )
    egress: list[FreeForm] = Field(
        default_factory=list,
        description="Allowed outgoing traffic: native networking.k8s.io/v1 "
        "NetworkPolicyEgressRule objects.",
    )
    allow_dns: bool = Field(
        default=True,
        alias="allowDNS",
        description="With Egress, also allow UDP and TCP port 53 to kube-dns.",
    )


class RolloutSpec(ApiModel):
    """Rollout settings written onto the target Deployment."""

    max_surge: IntOrPercent | None = Field(
        default=None, description="Pods above the desired count during a rollout (count or %)."
    )
    max_unavailable: IntOrPercent | None = Field(
        default=None, description="Pods that may be unavailable during a rollout (count or %)."
    )
    min_ready_seconds: int | None = Field(
        default=None, ge=0, description="Seconds a new pod must be ready to count as available."
    )
    progress_deadline_seconds: int | None = Field(
        default=None, ge=1, description="Seconds before a stalled rollout is reported as failed."
    )
    revision_history_limit: int | None = Field(
        default=None, ge=0, description="Old ReplicaSets kept for rollback."
    )

    rules = (
        Rule(
            cel="!has(self.progressDeadlineSeconds) || !has(self.minReadySeconds)"
            " || self.progressDeadlineSeconds > self.minReadySeconds",
            message="progressDeadlineSeconds must be greater than minReadySeconds",
            holds=lambda r: (
                r.progress_deadline_seconds is None
                or r.min_ready_seconds is None
                or r.progress_deadline_seconds > r.min_ready_seconds
            ),
            field="progressDeadlineSeconds",
        ),
    )


class DisruptionSpec(ApiModel):
    """A PodDisruptionBudget for the target's pods; set exactly one of the two fields."""

    min_available: IntOrPercent | None = Field(
        default=None, description="Pods that must stay available during evictions (count or %)."
    )
    max_unavailable: IntOrPercent | None = Field(
        default=None, description="Pods that may be unavailable during evictions (count or %)."
    )

    rules = (
        Rule(
            cel="!(has(self.minAvailable) && has(self.maxUnavailable))",
            message="set only one of minAvailable or maxUnavailable, not both",
            holds=lambda d: d.min_available is None or d.max_unavailable is None,
            field="maxUnavailable",
            reason="FieldValueForbidden",
        ),
        Rule(
            cel="has(self.minAvailable) || has(self.maxUnavailable)",
            message="set one of minAvailable or maxUnavailable",
            holds=lambda d: d.min_available is not None or d.max_unavailable is not None,
            field="minAvailable",
            reason="FieldValueRequired",
        ),
    )


class ServiceProfileSpec(ApiModel):
    """A service's infrastructure around its Deployment; every section is optional."""

    target_ref: DeploymentRef = Field(description="The Deployment this profile shapes.")
    config: ConfigSpec | None = Field(
        default=None, description='Configuration rendered into ConfigMap "<name>-config".'
    )
    autoscaling: AutoscalingSpec | None = Field(
        default=None, description='HorizontalPodAutoscaler "<name>" for the target.'
    )
    network: NetworkSpec | None = Field(
        default=None, description='NetworkPolicy "<name>" for the target\'s pods.'
    )
    rollout: RolloutSpec | None = Field(
        default=None, description="Rollout strategy fields written onto the target Deployment."
    )
    disruption: DisruptionSpec | None = Field(
        default=None, description='PodDisruptionBudget "<name>" for the target\'s pods.'
    )
    monitoring: MonitoringSpec | None = Field(
        default=None,
        description='ServiceMonitor or PodMonitor "<name>" (Prometheus Operator) scraping '
        "the target's pods; needs the Prometheus Operator's CRDs.",
    )


class AttachedPolicy(ApiModel):
    """Another appinfra resource attached to the same target."""

    kind: Literal["HealthPolicy", "RateLimitPolicy", "SecretBinding"] = Field(
        description="Kind of the attached resource."
    )
    name: str = Field(max_length=253, description="Name of the attached resource.")
    ready: ConditionStatus = Field(description="Its Ready condition: True, False or Unknown.")


class ServiceProfileStatus(Status):
    """Observed state of a ServiceProfile."""

    replica_range: str | None = Field(
        default=None,
        max_length=32,
        description='Autoscaling bounds as "min-max" (e.g. "2-10"), for display.',
    )
    policies: list[AttachedPolicy] = Field(
        default_factory=list,
        max_length=64,
        description="HealthPolicy, RateLimitPolicy and SecretBindings attached to the same "
        "target, with their Ready state.",
    )
