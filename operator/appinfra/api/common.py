"""Pieces every kind shares: the target reference, conditions and the common status."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AwareDatetime, Field

from appinfra.api.base import ApiModel, Rule
from appinfra.api.formats import DNSSubdomain, ListMap

_TARGET_NAME = "Name of the target object, in the same namespace as this resource."


class DeploymentRef(ApiModel):
    """The Deployment this resource applies to, in the same namespace."""

    group: Literal["apps"] = Field(default="apps", description="API group of the target: apps.")
    kind: Literal["Deployment"] = Field(
        default="Deployment", description="Kind of the target: Deployment (v1alpha1)."
    )
    name: DNSSubdomain = Field(description=_TARGET_NAME)


_GROUP_OF_KIND = {"Ingress": "networking.k8s.io", "Service": "", "Deployment": "apps"}


class PolicyTargetRef(ApiModel):
    """The object a rate limit policy attaches to: an Ingress, a Service or a Deployment."""

    group: Literal["networking.k8s.io", "", "apps"] = Field(
        default="apps",
        description='API group of the target: networking.k8s.io for Ingress, "" (core) for '
        "Service, apps for Deployment.",
    )
    kind: Literal["Ingress", "Service", "Deployment"] = Field(
        default="Deployment", description="Kind of the target: Ingress, Service or Deployment."
    )
    name: DNSSubdomain = Field(description=_TARGET_NAME)

    rules = (
        Rule(
            cel="(self.kind == 'Ingress' && self.group == 'networking.k8s.io')"
            " || (self.kind == 'Service' && self.group == '')"
            " || (self.kind == 'Deployment' && self.group == 'apps')",
            message='group must match kind: networking.k8s.io for Ingress, "" for Service, '
            "apps for Deployment",
            holds=lambda ref: _GROUP_OF_KIND[ref.kind] == ref.group,
            field="group",
        ),
    )


TargetRef = DeploymentRef | PolicyTargetRef
"""Any kind's target reference; both carry group, kind and name."""

ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(ApiModel):
    """One aspect of the resource's current state (metav1.Condition)."""

    type: str = Field(
        description="Type of condition in CamelCase, e.g. Accepted, Ready, Synced.",
        max_length=316,
        pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
        r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$",
    )
    status: ConditionStatus = Field(description="Status of the condition: True, False or Unknown.")
    observed_generation: int | None = Field(
        default=None,
        ge=0,
        description="The .metadata.generation the condition was set based upon.",
    )
    last_transition_time: AwareDatetime = Field(
        description="Last time the condition changed from one status to another."
    )
    reason: str = Field(
        description="Programmatic identifier of the condition's last transition, in CamelCase.",
        min_length=1,
        max_length=1024,
        pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
    )
    message: str = Field(
        default="",
        max_length=32768,
        description="Human readable details of the transition: what is wrong and what to do.",
    )


class Status(ApiModel):
    """Status fields every kind reports."""

    observed_generation: int | None = Field(
        default=None,
        ge=0,
        description="The .metadata.generation the operator last reconciled.",
    )
    conditions: Annotated[list[Condition], ListMap("type")] = Field(
        default_factory=list,
        max_length=16,
        description="Latest observations of the resource's state: Accepted, Ready and the "
        "kind's own condition types.",
    )
