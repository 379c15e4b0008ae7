"""Metadata every rendered object carries: our labels and a controller ownerReference."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from appinfra.api.names import (
    API_VERSION,
    MANAGED_BY,
    MANAGED_BY_US,
    OWNER_KIND,
    OWNER_NAME,
    Obj,
    field_manager,
    target_annotation,
)


@dataclass(frozen=True)
class Owner:
    """The appinfra resource that owns what is rendered from it."""

    kind: str
    name: str
    namespace: str
    uid: str

    @classmethod
    def of(cls, body: Obj) -> Owner:
        meta = body["metadata"]
        return cls(body["kind"], meta["name"], meta["namespace"], meta.get("uid", ""))

    @property
    def labels(self) -> dict[str, str]:
        return {MANAGED_BY: MANAGED_BY_US, OWNER_KIND: self.kind, OWNER_NAME: self.name}

    @property
    def reference(self) -> Obj:
        return {
            "apiVersion": API_VERSION,
            "kind": self.kind,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }

    @property
    def target_annotation(self) -> str:
        """`appinfra.dev/<kind-lowercase>`, set on the target so readers see who shapes it."""
        return target_annotation(self.kind)

    @property
    def field_manager(self) -> str:
        return field_manager(self.kind)


def child(owner: Owner, api_version: str, kind: str, name: str, **fields: Any) -> Obj:
    """A complete object owned by `owner`: labels, ownerReference, then `fields`."""
    meta: Obj = {
        "name": name,
        "namespace": owner.namespace,
        "labels": owner.labels,
    }
    if owner.uid:  # offline rendering has no uid; the operator always does
        meta["ownerReferences"] = [owner.reference]
    return {"apiVersion": api_version, "kind": kind, "metadata": meta, **fields}


def target_intent(
    owner: Owner,
    name: str,
    spec: Obj | None = None,
    *,
    api_version: str = "apps/v1",
    kind: str = "Deployment",
    annotations: dict[str, str] | None = None,
) -> Obj:
    """The server-side-apply intent for an object we shape but do not own: our
    `appinfra.dev/<kind>` annotation (plus `annotations`) and, if any, our `spec` fields."""
    intent: Obj = {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {
            "name": name,
            "namespace": owner.namespace,
            "annotations": {**(annotations or {}), owner.target_annotation: owner.name},
        },
    }
    if spec:
        intent["spec"] = spec
    return intent


def content_hash(data: Any) -> str:
    """A stable digest of non-secret content (config): changes iff the content changes."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]
