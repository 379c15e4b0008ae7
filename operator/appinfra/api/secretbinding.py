"""SecretBinding: keys from an external secret store synced into a Kubernetes Secret."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AwareDatetime, Field

from appinfra.api.base import ApiModel, Rule
from appinfra.api.common import DeploymentRef, Status
from appinfra.api.formats import (
    DURATION,
    DataKey,
    DNSSubdomain,
    Duration,
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

    rules = (
        Rule(
            cel="(has(self.data) && size(self.data) > 0)"
            " || (has(self.dataFrom) && size(self.dataFrom) > 0)",
            message="set at least one entry in data or dataFrom",
            holds=lambda s: bool(s.data or s.data_from),
            field="data",
            reason="FieldValueRequired",
        ),
        Rule(
            cel=_REFRESH_CEL,
            message=f'must be "0" (sync once) or between {MIN_REFRESH} and {MAX_REFRESH}',
            holds=lambda s: refresh_in_bounds(s.refresh_interval),
            field="refreshInterval",
        ),
    )


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
