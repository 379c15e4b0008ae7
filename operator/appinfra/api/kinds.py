"""The registry of appinfra kinds: names, models and printer columns, in one place.

The CRD generator, the offline validator and the operator's handlers all look
kinds up here, so adding a field or a column is a change to one module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from appinfra.api.base import ApiModel, Rule
from appinfra.api.common import Status
from appinfra.api.healthpolicy import HealthPolicySpec, HealthPolicyStatus
from appinfra.api.names import GROUP, PLURALS
from appinfra.api.ratelimitpolicy import RateLimitPolicySpec, RateLimitPolicyStatus
from appinfra.api.secretbinding import SecretBindingSpec, SecretBindingStatus
from appinfra.api.serviceprofile import ServiceProfileSpec, ServiceProfileStatus

CATEGORY = "appinfra"

MAX_NAME_LENGTH = 63
"""The longest metadata.name: it becomes the `appinfra.dev/owner-name` label value of every
child (label values are at most 63 characters) and part of annotation keys and field
manager names, which have their own limits."""

NAME_RULE = Rule(
    # Names are immutable, so checking on create is enough; on update (oldSelf set) the
    # rule holds, so an object created before the rule existed can still lose its finalizer.
    cel=f"oldSelf.hasValue() || self.metadata.name.size() <= {MAX_NAME_LENGTH}",
    message=f"metadata.name must be at most {MAX_NAME_LENGTH} characters: it becomes the "
    "appinfra.dev/owner-name label of every object made from this resource",
    holds=lambda name: len(name) <= MAX_NAME_LENGTH,
    optional_old_self=True,
)

SpecT = TypeVar("SpecT", bound=ApiModel)
StatusT = TypeVar("StatusT", bound=Status)


@dataclass(frozen=True)
class PrinterColumn:
    """One `kubectl get` column (a CRD additionalPrinterColumns entry)."""

    name: str
    type: str
    json_path: str
    description: str
    priority: int = 0


def condition_column(name: str, condition: str, description: str) -> PrinterColumn:
    """A column showing the status of one condition type."""
    return PrinterColumn(
        name, "string", f'.status.conditions[?(@.type=="{condition}")].status', description
    )


TARGET = PrinterColumn("Target", "string", ".spec.targetRef.name", "The target object.")
READY = condition_column("Ready", "Ready", "Whether everything asked for is in place.")
REASON = PrinterColumn(
    "Reason",
    "string",
    '.status.conditions[?(@.type=="Ready")].reason',
    "Why the resource is or is not Ready.",
)
AGE = PrinterColumn("Age", "date", ".metadata.creationTimestamp", "Time since creation.")


@dataclass(frozen=True)
class Kind(Generic[SpecT, StatusT]):
    """One custom resource kind and everything generated from it."""

    kind: str
    plural: str
    singular: str
    short_name: str
    description: str
    spec_model: type[SpecT]
    status_model: type[StatusT]
    columns: tuple[PrinterColumn, ...]

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{GROUP}"


SERVICE_PROFILE = Kind(
    kind="ServiceProfile",
    plural=PLURALS["ServiceProfile"],
    singular="serviceprofile",
    short_name="sp",
    description="A service's infrastructure next to its Deployment: config, autoscaling, "
    "network policy, rollout and disruption settings.",
    spec_model=ServiceProfileSpec,
    status_model=ServiceProfileStatus,
    columns=(
        TARGET,
        PrinterColumn(
            "Replicas",
            "string",
            ".status.replicaRange",
            "Autoscaling bounds (min-max).",
        ),
        READY,
        REASON,
        AGE,
    ),
)

SECRET_BINDING = Kind(
    kind="SecretBinding",
    plural=PLURALS["SecretBinding"],
    singular="secretbinding",
    short_name="sb",
    description="Secrets from an external store (Vault/OpenBao, AWS Secrets Manager or "
    "Parameter Store) synced into a Kubernetes Secret and refreshed.",
    spec_model=SecretBindingSpec,
    status_model=SecretBindingStatus,
    columns=(
        PrinterColumn("Store", "string", ".spec.store", "The secret store read from."),
        PrinterColumn("Target Secret", "string", ".status.targetSecret", "The Secret written."),
        condition_column("Synced", "Synced", "Whether the last sync succeeded."),
        PrinterColumn(
            "Last Sync", "date", ".status.lastSyncTime", "Time since the last successful sync."
        ),
        READY,
        REASON,
        PrinterColumn(
            "Target", "string", ".spec.targetRef.name", "The consumer Deployment.", priority=1
        ),
        AGE,
    ),
)

HEALTH_POLICY = Kind(
    kind="HealthPolicy",
    plural=PLURALS["HealthPolicy"],
    singular="healthpolicy",
    short_name="hp",
    description="Probes and graceful shutdown for a Deployment's containers, plus a live "
    "health verdict.",
    spec_model=HealthPolicySpec,
    status_model=HealthPolicyStatus,
    columns=(
        TARGET,
        PrinterColumn("Mode", "string", ".spec.mode", "Default or Override."),
        condition_column("Healthy", "Healthy", "Whether the target is available."),
        PrinterColumn("Available", "integer", ".status.replicas.available", "Available replicas."),
        READY,
        REASON,
        AGE,
    ),
)

RATE_LIMIT_POLICY = Kind(
    kind="RateLimitPolicy",
    plural=PLURALS["RateLimitPolicy"],
    singular="ratelimitpolicy",
    short_name="rlp",
    description="Request rate limits for an Ingress, Service or Deployment, enforced by "
    "ingress-nginx, envoy ratelimit or an in-app limiter.",
    spec_model=RateLimitPolicySpec,
    status_model=RateLimitPolicyStatus,
    columns=(
        TARGET,
        PrinterColumn("Enforcement", "string", ".spec.enforcement", "How limits are enforced."),
        condition_column("Enforced", "Enforced", "Whether every limit is in force."),
        READY,
        REASON,
        AGE,
    ),
)

AnyKind = (
    Kind[ServiceProfileSpec, ServiceProfileStatus]
    | Kind[SecretBindingSpec, SecretBindingStatus]
    | Kind[HealthPolicySpec, HealthPolicyStatus]
    | Kind[RateLimitPolicySpec, RateLimitPolicyStatus]
)

KINDS: tuple[AnyKind, ...] = (SERVICE_PROFILE, SECRET_BINDING, HEALTH_POLICY, RATE_LIMIT_POLICY)

BY_KIND: dict[str, AnyKind] = {kind.kind: kind for kind in KINDS}
