"""Which Secret a SecretBinding may write (by creationPolicy: its own, one it created
and orphaned, or one whose owner opted in to Merge), and whether that Secret still
holds what the binding wrote (its HMAC, remembered so the check costs no GET)."""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, field

from appinfra.api.names import (
    MANAGED_BY,
    MANAGED_BY_US,
    MERGE_OPT_IN,
    OWNER_KIND,
    OWNER_NAME,
    Obj,
)
from appinfra.api.secretbinding import SecretBindingSpec
from appinfra.controller import Runtime
from appinfra.kube.diff import DIGESTS
from appinfra.kube.ownership import (
    PROTECTED_SECRET_TYPES,
    controlled_by,
    controller_uid,
    merge_allowed,
)
from appinfra.kube.resources import SECRET
from appinfra.render.common import Owner
from appinfra.render.secretbinding import secret_hmac


def _managed_by(obj: Obj | None, name: str) -> bool:
    labels = (obj or {}).get("metadata", {}).get("labels") or {}
    return bool(
        labels.get(MANAGED_BY) == MANAGED_BY_US
        and labels.get(OWNER_KIND) == "SecretBinding"
        and labels.get(OWNER_NAME) == name
    )


def write_rule(
    spec: SecretBindingSpec, owner: Owner, secret: str
) -> tuple[Callable[[Obj], bool], str]:
    """Which existing Secret this binding may write (by creationPolicy), and what to do
    when it may not. Owner: one it created (its controller reference). Orphan: one it
    created and labelled (no reference, by design). Merge: one whose owner opted in."""
    policy = spec.target.creation_policy
    if policy == "Merge":
        hint = (
            f"creationPolicy Merge writes into a Secret only with its owner's consent: "
            f"annotate it {MERGE_OPT_IN}: {owner.name} (never possible for Secrets of type "
            f"{', '.join(sorted(PROTECTED_SECRET_TYPES))}), or choose another spec.target.name"
        )
        return (lambda live: merge_allowed(live, owner.name)), hint
    hint = (
        "appinfra never takes it over: choose another spec.target.name, or have its owner "
        f"annotate it {MERGE_OPT_IN}: {owner.name} and set spec.target.creationPolicy: Merge "
        "to write only this binding's keys into it"
    )
    if policy == "Orphan":
        return (
            lambda live: _managed_by(live, owner.name) and controller_uid(live) in (None, owner.uid)
        ), hint
    return (lambda live: controlled_by(live, owner.uid)), hint


Seen = tuple[str, str, str]  # (uid, resourceVersion, secretHMAC) of a Secret


@dataclass
class Matches:
    """Per binding: its Secret's (uid, resourceVersion, secretHMAC) when last known to
    hold what the binding wrote. The cache keeps digests of a Secret's values, not the
    values the HMAC needs: they are read with a GET only when the Secret changed since."""

    seen: dict[tuple[str, str], Seen] = field(default_factory=dict)

    def remember(self, binding: tuple[str, str], secret: Obj, digest: str) -> None:
        meta = secret["metadata"]
        self.seen[binding] = (meta["uid"], meta.get("resourceVersion", ""), digest)

    def live_matches(self, rt: Runtime, body: Obj, live: Obj, status: Obj) -> bool:
        binding = (body["metadata"]["namespace"], body["metadata"]["name"])
        meta = live["metadata"]
        if DIGESTS in live:  # from the cache: no values
            seen = (
                meta.get("uid", ""),
                meta.get("resourceVersion", ""),
                status.get("secretHMAC", ""),
            )
            if self.seen.get(binding) == seen:
                return True
            fresh = rt.kube.get(SECRET, meta["namespace"], meta["name"])
            if fresh is None:
                return False
            live, meta = fresh, fresh["metadata"]
        keys = status.get("syncedKeys") or []
        raw = live.get("data") or {}
        try:
            data = {k: base64.b64decode(raw[k]).decode("utf-8", "surrogateescape") for k in keys}
        except KeyError:
            return False
        if secret_hmac(data, meta["uid"]) != status.get("secretHMAC"):
            return False
        self.remember(binding, live, status["secretHMAC"])
        return True
