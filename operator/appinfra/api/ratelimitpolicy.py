"""RateLimitPolicy: request limits enforced by ingress-nginx, envoy ratelimit or the app itself."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from appinfra.api.base import ApiModel, Rule
from appinfra.api.common import PolicyTargetRef, Status
from appinfra.api.formats import DNSLabel, HeaderName, IPOrCIDR, ListSet, UrlPathPrefix

Enforcement = Literal["IngressNginx", "EnvoyRateLimit", "ConfigMap"]
HttpMethod = Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


class ClientIP(ApiModel):
    """Count requests per client IP address."""


class LimitKey(ApiModel):
    """What requests are counted by; set exactly one."""

    client_ip: ClientIP | None = Field(
        default=None, alias="clientIP", description="Per client IP address: {}."
    )
    header: HeaderName | None = Field(
        default=None, description="Per value of this request header, e.g. x-api-key."
    )

    rules = (
        Rule(
            cel="has(self.clientIP) != has(self.header)",
            message="set exactly one of clientIP or header",
            holds=lambda k: (k.client_ip is None) != (k.header is None),
        ),
    )


class RequestMatch(ApiModel):
    """Which requests a limit applies to; unset fields match everything."""

    path_prefix: UrlPathPrefix | None = Field(
        default=None, description="Only requests whose path starts with this prefix."
    )
    methods: Annotated[list[HttpMethod], ListSet()] = Field(
        default_factory=list,
        max_length=7,
        description="Only requests with one of these HTTP methods; empty means any.",
    )


class Limit(ApiModel):
    """One named limit: so many requests per unit of time."""

    # A bound far above any real limit, far below what nginx (thousandths in 64 bits,
    # times the burst multiplier) and envoy ratelimit can hold.
    requests: int = Field(ge=1, le=1_000_000_000, description="Requests allowed per unit.")
    unit: Literal["Second", "Minute", "Hour", "Day"] = Field(
        default="Second", description="Time unit: Second, Minute, Hour or Day."
    )
    burst: int | None = Field(
        default=None, ge=0, le=1_000_000_000, description="Extra requests allowed in a short burst."
    )
    by: LimitKey | None = Field(
        default=None, description="What requests are counted by; unset means all together."
    )
    when: RequestMatch | None = Field(
        default=None, description="Which requests this limit applies to; unset means all."
    )


class RateLimitPolicySpec(ApiModel):
    """Request limits for an Ingress, Service or Deployment."""

    target_ref: PolicyTargetRef = Field(description="The object the limits apply to.")
    enforcement: Enforcement | None = Field(
        default=None,
        description="How limits are enforced: IngressNginx (annotations on the target "
        "Ingress), EnvoyRateLimit (ConfigMap for envoyproxy/ratelimit) or ConfigMap (for an "
        "in-app limiter). Unset means the operator's rateLimit.defaultEnforcement.",
    )
    limits: dict[DNSLabel, Limit] = Field(
        min_length=1,
        max_length=32,
        description="Named limits; names are DNS labels such as default or writes.",
    )
    allowlist: list[IPOrCIDR] = Field(
        default_factory=list,
        max_length=64,
        description="Client IPs or CIDR ranges never limited.",
    )

    rules = (
        Rule(
            cel="!has(self.enforcement) || self.enforcement != 'IngressNginx'"
            " || self.targetRef.kind == 'Ingress'",
            message="enforcement IngressNginx needs a targetRef of kind Ingress "
            "(group networking.k8s.io)",
            holds=lambda s: s.enforcement != "IngressNginx" or s.target_ref.kind == "Ingress",
            field="enforcement",
        ),
    )


class RateLimitPolicyStatus(Status):
    """Observed state of a RateLimitPolicy."""
