"""HealthPolicy: probes and graceful shutdown for a Deployment's containers, and a verdict."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field

from appinfra.api.alerts import AlertsSpec
from appinfra.api.base import ApiModel, Rule
from appinfra.api.common import DeploymentRef, Status
from appinfra.api.formats import DNSLabel, FreeForm, ListSet

_HANDLERS = ("httpGet", "tcpSocket", "grpc", "exec")


class Probe(ApiModel):
    """A core/v1 Probe, passed through; only the handler choice and timings are checked here.

    Unknown fields are kept rather than rejected so newer core/v1 Probe fields
    work without a new appinfra release; the API server validates the whole
    probe when it lands on the Deployment.
    """

    model_config = ConfigDict(extra="allow")

    http_get: FreeForm | None = Field(default=None, description="HTTP GET handler (core/v1).")
    tcp_socket: FreeForm | None = Field(default=None, description="TCP socket handler (core/v1).")
    grpc: FreeForm | None = Field(default=None, description="gRPC health handler (core/v1).")
    exec: FreeForm | None = Field(default=None, description="Command handler (core/v1).")
    initial_delay_seconds: int | None = Field(
        default=None, ge=0, description="Seconds after start before the first probe."
    )
    period_seconds: int | None = Field(default=None, ge=1, description="Seconds between probes.")
    timeout_seconds: int | None = Field(default=None, ge=1, description="Seconds per attempt.")
    success_threshold: int | None = Field(
        default=None, ge=1, description="Consecutive successes to count as passing."
    )
    failure_threshold: int | None = Field(
        default=None, ge=1, description="Consecutive failures to count as failing."
    )
    termination_grace_period_seconds: int | None = Field(
        default=None, ge=1, description="Grace period when this probe fails and kills the pod."
    )

    rules = (
        Rule(
            cel=" + ".join(f"(has(self.{name}) ? 1 : 0)" for name in _HANDLERS) + " == 1",
            message="set exactly one handler: httpGet, tcpSocket, grpc or exec",
            holds=lambda p: [p.http_get, p.tcp_socket, p.grpc, p.exec].count(None) == 3,
        ),
    )


class GracefulShutdown(ApiModel):
    """How pods stop: a preStop sleep so endpoints drain, then the grace period."""

    pre_stop_sleep_seconds: int | None = Field(
        default=None,
        ge=0,
        description="Seconds the preStop hook sleeps so load balancers stop sending traffic.",
    )
    termination_grace_period_seconds: int | None = Field(
        default=None, ge=0, description="Pod terminationGracePeriodSeconds."
    )

    rules = (
        Rule(
            cel="!has(self.preStopSleepSeconds) || !has(self.terminationGracePeriodSeconds)"
            " || self.preStopSleepSeconds < self.terminationGracePeriodSeconds",
            message="preStopSleepSeconds must be less than terminationGracePeriodSeconds",
            holds=lambda g: (
                g.pre_stop_sleep_seconds is None
                or g.termination_grace_period_seconds is None
                or g.pre_stop_sleep_seconds < g.termination_grace_period_seconds
            ),
            field="preStopSleepSeconds",
        ),
    )


class HealthPolicySpec(ApiModel):
    """Probes and shutdown behaviour for the target's containers."""

    target_ref: DeploymentRef = Field(description="The Deployment whose containers get probes.")
    mode: Literal["Default", "Override"] = Field(
        default="Default",
        description="Default: add a probe only where a container has none of that kind; "
        "Override: replace the container's probe.",
    )
    containers: Annotated[list[DNSLabel], ListSet()] = Field(
        default_factory=list,
        max_length=64,
        description="Names of the containers to shape; empty means every (non-init) container.",
    )
    liveness: Probe | None = Field(default=None, description="Liveness probe (core/v1 Probe).")
    readiness: Probe | None = Field(default=None, description="Readiness probe (core/v1 Probe).")
    startup: Probe | None = Field(default=None, description="Startup probe (core/v1 Probe).")
    graceful_shutdown: GracefulShutdown | None = Field(
        default=None, description="preStop sleep and termination grace period."
    )
    alerts: AlertsSpec | None = Field(
        default=None,
        description='PrometheusRule "<name>" (monitoring.coreos.com/v1): SLO burn-rate and '
        "workload alerts for the target; needs the Prometheus Operator's CRDs.",
    )

    rules = (
        Rule(
            cel="has(self.liveness) || has(self.readiness) || has(self.startup)"
            " || has(self.gracefulShutdown) || has(self.alerts)",
            message="set at least one of liveness, readiness, startup, gracefulShutdown or alerts",
            holds=lambda s: any(
                part is not None
                for part in (s.liveness, s.readiness, s.startup, s.graceful_shutdown, s.alerts)
            ),
        ),
    )


class ReplicaCounts(ApiModel):
    """Replica counts copied from the target Deployment's status."""

    desired: int = Field(default=0, ge=0, description="spec.replicas of the target.")
    updated: int = Field(default=0, ge=0, description="Pods running the current template.")
    ready: int = Field(default=0, ge=0, description="Pods passing readiness.")
    available: int = Field(default=0, ge=0, description="Pods ready for minReadySeconds.")


class HealthPolicyStatus(Status):
    """Observed state of a HealthPolicy and the target's health."""

    replicas: ReplicaCounts | None = Field(
        default=None, description="Replica counts of the target Deployment."
    )
