"""SecretBinding: keys from an external secret store synced into a Kubernetes Secret."""

from __future__ import annotations

import ipaddress
from typing import Annotated, Literal

from pydantic import AwareDatetime, Field

from appinfra.api.base import ApiModel, Rule
from appinfra.api.common import DeploymentRef, Status
from appinfra.api.formats import (
    DURATION,
    DataKey,
    DNSSubdomain,
    Duration,
    Format,
    ListMap,
    OptionalDNSSubdomain,
    exact_duration,
)

_VERSION = "Version of the remote secret; 0 or unset means the latest."

MIN_REFRESH = "10s"
MAX_REFRESH = "8760h"
MAX_SYNCED_KEYS = 1024
"""Keys one binding may write: status.syncedKeys lists them and holds at most this many."""


def refresh_in_bounds(interval: str) -> bool:
    """ "0" (sync once) or MIN_REFRESH..MAX_REFRESH: a shorter interval reads the store and
    patches status many times a second; a longer one overflows date arithmetic."""
    if interval == "0":
        return True
    return exact_duration(MIN_REFRESH) <= exact_duration(interval) <= exact_duration(MAX_REFRESH)


# The pattern guard keeps CEL's duration() away from strings the schema's pattern already
# refuses (that error is reported on its own); see formats.DURATION.
_REFRESH_CEL = (
    "!has(self.refreshInterval) || self.refreshInterval == '0'"
    f" || !self.refreshInterval.matches(r'{DURATION.pattern}')"
    f" || (duration(self.refreshInterval) >= duration('{MIN_REFRESH}')"
    f" && duration(self.refreshInterval) <= duration('{MAX_REFRESH}'))"
)


class RemoteRef(ApiModel):
    """One value in the store."""

    key: str = Field(
        min_length=1,
        max_length=1024,
        description="Path of the secret in the store; must start with the store's keyPrefix.",
    )
    property: str | None = Field(
        default=None,
        max_length=253,
        description="Property of the remote secret to read; unset means the whole value.",
    )
    version: int | None = Field(default=None, ge=0, description=_VERSION)


class SecretData(ApiModel):
    """One key of the target Secret and where its value comes from."""

    secret_key: DataKey = Field(description="Key in the target Secret.")
    remote_ref: RemoteRef = Field(description="The remote value to copy.")


class RemoteKey(ApiModel):
    """A remote secret read as a whole."""

    key: str = Field(
        min_length=1,
        max_length=1024,
        description="Path of the secret in the store; must start with the store's keyPrefix.",
    )
    version: int | None = Field(default=None, ge=0, description=_VERSION)


class DataFromSource(ApiModel):
    """A remote secret whose every property becomes a key of the target Secret."""

    extract: RemoteKey = Field(description="The remote secret to extract every property of.")


class SecretTemplate(ApiModel):
    """How the target Secret is shaped from the fetched keys."""

    data: dict[DataKey, str] = Field(
        default_factory=dict,
        max_length=1024,
        description="Key to Jinja2 template (sandboxed); the context is the fetched keys.",
    )
    labels: dict[str, str] = Field(
        default_factory=dict, description="Labels added to the target Secret."
    )
    annotations: dict[str, str] = Field(
        default_factory=dict, description="Annotations added to the target Secret."
    )


class SecretTarget(ApiModel):
    """The Kubernetes Secret the binding writes."""

    name: OptionalDNSSubdomain = Field(
        default="", description="Name of the Secret; empty means the binding's metadata.name."
    )
    type: str = Field(
        default="Opaque", min_length=1, max_length=253, description="Type of the Secret."
    )
    creation_policy: Literal["Owner", "Merge", "Orphan"] = Field(
        default="Owner",
        description="Owner: create and own the Secret, refusing one that exists unmanaged; "
        "Merge: write only this binding's keys into an existing Secret; Orphan: create it "
        "without an owner so it survives the binding.",
    )
    deletion_policy: Literal["Retain", "Delete"] = Field(
        default="Retain",
        description="What to do with the Secret's keys when the remote secret is gone: "
        "Retain keeps the last good data, Delete removes them.",
    )
    template: SecretTemplate | None = Field(
        default=None, description="Templates for the Secret's data, labels and annotations."
    )


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


# A Vault API path: segments of letters, digits, '-', '_' and '.', no empty segment and no
# leading or trailing '/'. Narrow on purpose: it is sent in a URL, after the keyPrefix check.
VAULT_PATH = Format(
    r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*(/[A-Za-z0-9_-][A-Za-z0-9_.-]*)*$",
    512,
    "a Vault path such as database/creds/shop-app: segments of letters, digits, '-', '_' "
    "and '.' (not first), separated by '/'",
)
VAULT_NAME = Format(
    r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*$",
    128,
    "a Vault role name: letters, digits, '-', '_' and '.' (not first)",
)
HOST_NAME = Format(
    r"^(\*\.)?[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?)*$",
    253,
    "a DNS name such as api.shop.svc or *.shop.example (letters, digits, '-' and '.')",
)
IP_ADDRESS = Format(
    r"^[0-9a-fA-F:.]+$", 45, "an IP address such as 10.0.0.7 or ::1", extra_check=_is_ip
)
VaultPath = Annotated[str, VAULT_PATH]
VaultName = Annotated[str, VAULT_NAME]
HostName = Annotated[str, HOST_NAME]
IPAddress = Annotated[str, IP_ADDRESS]

MIN_LIFETIME = "5s"
"""The shortest certificate ttl a binding may ask for: shorter ones renew many times a
second once jitter and clock skew are counted."""
MAX_LIFETIME = "8760h"
_RENEW_PERCENT = (
    "Renew when this share of the lifetime has passed (10-90), jittered per binding by up "
    "to a tenth of the lifetime earlier, so bindings issued together do not renew together."
)


def _duration_cel(field: str, low: str, high: str) -> str:
    return (
        f"!has(self.{field}) || !self.{field}.matches(r'{DURATION.pattern}')"
        f" || (duration(self.{field}) >= duration('{low}')"
        f" && duration(self.{field}) <= duration('{high}'))"
    )


def _duration_in(value: str | None, low: str, high: str) -> bool:
    if value is None:
        return True
    return exact_duration(low) <= exact_duration(value) <= exact_duration(high)


class PkiSource(ApiModel):
    """A certificate issued by a Vault/OpenBao PKI role, renewed before it expires."""

    mount: VaultPath = Field(description="Path where the PKI secrets engine is mounted.")
    role: VaultName = Field(
        description="PKI role to issue from; the request goes to <mount>/issue/<role>, which "
        "must start with the store's keyPrefix."
    )
    common_name: HostName = Field(description="Common name of the certificate.")
    alt_names: list[HostName] = Field(
        default_factory=list, max_length=32, description="DNS subject alternative names."
    )
    ip_sans: list[IPAddress] = Field(
        default_factory=list,
        max_length=32,
        alias="ipSANs",
        description="IP subject alternative names.",
    )
    ttl: Duration | None = Field(
        default=None,
        description=f"Requested lifetime, between {MIN_LIFETIME} and {MAX_LIFETIME}; unset "
        "means the role's. The role's max_ttl may cut it short.",
    )
    renew_before: Duration | None = Field(
        default=None,
        description="Renew this long before notAfter (instead of renewPercent); must be "
        "shorter than the lifetime, or the certificate renews at renewPercent.",
    )
    renew_percent: int = Field(default=67, ge=10, le=90, description=_RENEW_PERCENT)
    revoke_on_delete: bool = Field(
        default=False,
        description="Revoke the current certificate when the binding is deleted (a "
        "finalizer holds the deletion until OpenBao answered).",
    )

    rules = (
        Rule(
            cel=_duration_cel("ttl", MIN_LIFETIME, MAX_LIFETIME),
            message=f"must be between {MIN_LIFETIME} and {MAX_LIFETIME}",
            holds=lambda s: _duration_in(s.ttl, MIN_LIFETIME, MAX_LIFETIME),
            field="ttl",
        ),
        Rule(
            cel=_duration_cel("renewBefore", "1s", MAX_LIFETIME),
            message=f"must be between 1s and {MAX_LIFETIME}",
            holds=lambda s: _duration_in(s.renew_before, "1s", MAX_LIFETIME),
            field="renewBefore",
        ),
    )


class DynamicSource(ApiModel):
    """Credentials with a lease from any Vault/OpenBao engine (database, AWS, RabbitMQ...),
    renewed while the lease is renewable and issued anew before its max TTL."""

    path: VaultPath = Field(
        description="Vault path that returns a lease, e.g. database/creds/shop-app; must "
        "start with the store's keyPrefix."
    )
    method: Literal["GET", "POST"] = Field(
        default="GET",
        description="GET (read, e.g. database/creds) or POST (write, with "
        "parameters, e.g. aws/sts).",
    )
    parameters: dict[VaultName, str] = Field(
        default_factory=dict,
        max_length=32,
        description="Request parameters for method POST (not secret: they are in the spec).",
    )
    renew_percent: int = Field(default=67, ge=10, le=90, description=_RENEW_PERCENT)
    revoke_on_delete: bool = Field(
        default=True,
        description="Revoke the lease when the binding is deleted (a finalizer holds the "
        "deletion until OpenBao answered).",
    )
    revoke_on_reissue: bool = Field(
        default=False,
        description="Revoke the previous lease as soon as the new credentials are written "
        "(issued anew at the max TTL, or because the request in the spec changed). "
        "Off by default: pods still running with the old credentials keep working until they "
        "roll out, and the old lease expires at its max TTL.",
    )

    rules = (
        Rule(
            cel="!has(self.parameters) || size(self.parameters) == 0 || self.method == 'POST'",
            message="parameters are sent with method POST only; set method: POST",
            holds=lambda s: not s.parameters or s.method == "POST",
            field="parameters",
        ),
    )


_SOURCES = "data, dataFrom, pki or dynamic"


def _sources(s: SecretBindingSpec) -> int:
    return sum(1 for used in (s.data or s.data_from, s.pki, s.dynamic) if used)


class SecretBindingSpec(ApiModel):
    """Which remote secrets to sync into which Kubernetes Secret, and how often."""

    store: DNSSubdomain = Field(
        description="Name of a secret store configured in the operator configuration."
    )
    refresh_interval: Duration = Field(
        default="1h",
        description='How often to re-read the store, e.g. "1h", "30m", "90s": between '
        f'{MIN_REFRESH} and {MAX_REFRESH}, or "0" to sync once. Each refresh is jittered.',
    )
    data: Annotated[list[SecretData], ListMap("secretKey")] = Field(
        default_factory=list,
        max_length=256,
        description="Individual keys of the target Secret.",
    )
    data_from: list[DataFromSource] = Field(
        default_factory=list,
        max_length=64,
        description="Remote secrets whose every property becomes a key.",
    )
    target: SecretTarget = Field(
        default_factory=SecretTarget,
        description="The Secret to write.",
        json_schema_extra={"default": {}},
    )
    target_ref: DeploymentRef | None = Field(
        default=None,
        description="Optional consumer Deployment, restarted when the secret changes.",
    )
    rollout_on_change: bool = Field(
        default=True,
        description="Restart the consumer's pods when the data changes (pod-template "
        "annotation appinfra.dev/secret-hash, an HMAC).",
    )
    pki: PkiSource | None = Field(
        default=None,
        description="Issue a certificate from a PKI role into a kubernetes.io/tls Secret "
        "(tls.crt with the chain, tls.key, ca.crt) and renew it before it expires; instead "
        "of data/dataFrom. refreshInterval does not apply: the certificate's lifetime does.",
    )
    dynamic: DynamicSource | None = Field(
        default=None,
        description="Credentials with a lease (every field of the response's data becomes a "
        "key), renewed and issued anew as the lease requires; instead of data/dataFrom. The "
        "lease id is kept in the Secret's key .appinfra-lease-id, so a restart finds it.",
    )

    rules = (
        Rule(
            cel="(has(self.data) && size(self.data) > 0)"
            " || (has(self.dataFrom) && size(self.dataFrom) > 0)"
            " || has(self.pki) || has(self.dynamic)",
            message=f"set one source: {_SOURCES}",
            holds=lambda s: _sources(s) >= 1,
            field="data",
            reason="FieldValueRequired",
        ),
        Rule(
            cel="[(has(self.data) && size(self.data) > 0)"
            " || (has(self.dataFrom) && size(self.dataFrom) > 0),"
            " has(self.pki), has(self.dynamic)].filter(x, x).size() <= 1",
            message="data/dataFrom, pki and dynamic are different sources of one Secret: set "
            "only one (use another SecretBinding for the others)",
            holds=lambda s: _sources(s) <= 1,
            reason="FieldValueForbidden",
        ),
        Rule(
            cel="!(has(self.pki) || has(self.dynamic)) || !has(self.target)"
            " || !has(self.target.creationPolicy) || self.target.creationPolicy == 'Owner'",
            message="pki and dynamic write a Secret the binding owns: remove "
            "target.creationPolicy (Owner)",
            holds=lambda s: not (s.pki or s.dynamic) or s.target.creation_policy == "Owner",
            field="target",
        ),
        Rule(
            cel="!has(self.pki) || !has(self.target) || !has(self.target.type)"
            " || self.target.type in ['Opaque', 'kubernetes.io/tls']",
            message="pki writes a Secret of type kubernetes.io/tls: remove target.type",
            holds=lambda s: s.pki is None or s.target.type in ("Opaque", "kubernetes.io/tls"),
            field="target",
        ),
        Rule(
            cel="!has(self.pki) || !has(self.target) || !has(self.target.template)"
            " || !has(self.target.template.data) || size(self.target.template.data) == 0",
            message="pki writes tls.crt, tls.key and ca.crt only: remove target.template.data",
            holds=lambda s: (
                s.pki is None or s.target.template is None or not s.target.template.data
            ),
            field="target",
        ),
        Rule(
            cel=_REFRESH_CEL,
            message=f'must be "0" (sync once) or between {MIN_REFRESH} and {MAX_REFRESH}',
            holds=lambda s: refresh_in_bounds(s.refresh_interval),
            field="refreshInterval",
        ),
    )


class CertificateStatus(ApiModel):
    """The certificate a pki binding wrote, as public facts."""

    serial: str = Field(max_length=128, description="Serial number, colon-separated hex.")
    not_before: AwareDatetime = Field(description="Start of the certificate's validity.")
    not_after: AwareDatetime = Field(description="End of the certificate's validity.")
    renewal_time: AwareDatetime = Field(description="When it will be renewed (jittered).")


class LeaseStatus(ApiModel):
    """The lease of a dynamic binding's credentials; the lease id itself is in the Secret."""

    id_hash: str = Field(
        max_length=64, description="SHA-256 of the lease id (hex), to tell leases apart."
    )
    duration_seconds: int = Field(ge=0, description="Lease duration last granted, in seconds.")
    renewable: bool = Field(description="Whether OpenBao lets the lease be renewed.")
    issue_time: AwareDatetime = Field(description="When these credentials were issued.")
    expire_time: AwareDatetime = Field(description="When the lease ends unless renewed.")
    renewal_time: AwareDatetime = Field(
        description="When it is renewed next, or issued anew when it cannot be renewed."
    )
    renewals: int = Field(ge=0, description="Renewals of this lease so far.")


class SecretBindingStatus(Status):
    """Observed state of a SecretBinding; names only, never values."""

    target_secret: str | None = Field(
        default=None, max_length=253, description="Name of the Secret written."
    )
    last_sync_time: AwareDatetime | None = Field(
        default=None, description="When the store was last read successfully."
    )
    next_sync_time: AwareDatetime | None = Field(
        default=None, description="When the next refresh is due."
    )
    secret_hmac: str | None = Field(
        default=None,
        alias="secretHMAC",
        max_length=128,
        description="HMAC of the synced data, to see a change without revealing values.",
    )
    synced_keys: list[str] = Field(
        default_factory=list, max_length=MAX_SYNCED_KEYS, description="Names of the keys written."
    )
    certificate: CertificateStatus | None = Field(
        default=None, description="The certificate in the Secret (pki); never its key."
    )
    lease: LeaseStatus | None = Field(
        default=None, description="The lease of the credentials in the Secret (dynamic)."
    )
