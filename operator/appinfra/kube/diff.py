"""Decide whether a server-side apply would change anything, without sending it.

A no-op apply is still a write request. To send zero writes when nothing changed
we compare the intent with the live object first:

- every field of the intent must already hold the same value in the live object
  (extra live fields are fine: defaults, or other managers' fields), and
- the hash of the intent must equal the one recorded at the last apply (the
  `appinfra.dev/applied` annotation), because fields we applied before and since
  dropped from the intent are still ours, and only a new apply removes them.

Cached objects hold digests instead of tenant-sized values (kube/cache.py): a
ConfigMap's or Secret's payload as a digest per key under DIGESTS, and any other
string longer than LONG as a marked digest. The comparison digests the intent the
same way, so "the live value equals the intent's" is still decided exactly (up to a
keyed 128-bit hash); an object read with a GET carries its real values and is
compared as it is.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from typing import Any

from appinfra.api.names import APPLIED_ANNOTATION, GROUP

__all__ = ["APPLIED_ANNOTATION"]  # re-exported: the diff's default annotation

PAYLOAD = ("data", "binaryData", "stringData")  # ConfigMap and Secret values
# Where a cached ConfigMap or Secret keeps {field: {key: digest}} instead of PAYLOAD.
# Not a Kubernetes field name (it has a "/"), so it can never clash with one; cached
# objects are only read, never sent back.
DIGESTS = f"{GROUP}/digests"
LONG = 1024  # longer strings of cached objects are kept as digests
MARK = f"{GROUP}/sha256:"
# Keyed per process: the digests exist only in this process's memory, compared only
# with digests made here; keyed, they tell nothing about a Secret's values to anyone
# who sees them (a heap dump), and nobody can craft a value that matches one.
_KEY = os.urandom(32)

# Lists the API server merges by a key (listType=map); others are atomic and compared whole.
_LIST_KEYS = ("name", "containerPort", "mountPath")


def intent_hash(intent: dict[str, Any]) -> str:
    """A stable short hash of an apply intent."""
    canonical = json.dumps(intent, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def with_hash(intent: dict[str, Any], annotation: str = APPLIED_ANNOTATION) -> dict[str, Any]:
    """The intent carrying its own hash, so the next reconcile can compare cheaply.

    On an object several managers apply to (a Deployment), each uses its own annotation.
    """
    digest = intent_hash(intent)
    meta = dict(intent.get("metadata", {}))
    meta["annotations"] = {**meta.get("annotations", {}), annotation: digest}
    return {**intent, "metadata": meta}


def digest(value: str) -> str:
    """A marked, keyed digest standing in for `value` in the cache."""
    mac = hmac.new(_KEY, value.encode("utf-8", "surrogateescape"), hashlib.sha256)
    return MARK + mac.hexdigest()[:32]


def payload_digests(obj: dict[str, Any]) -> dict[str, dict[str, str]]:
    """{field: {key: digest}} for each payload field `obj` has."""
    return {f: {k: digest(str(v)) for k, v in (obj[f] or {}).items()} for f in PAYLOAD if f in obj}


def digest_payload(obj: dict[str, Any]) -> dict[str, Any]:
    """`obj` with its payload fields replaced by their digests (idempotent)."""
    if not any(f in obj for f in PAYLOAD):
        return obj
    out = {k: v for k, v in obj.items() if k not in PAYLOAD}
    out[DIGESTS] = {**(obj.get(DIGESTS) or {}), **payload_digests(obj)}
    return out


def shorten(value: Any) -> Any:
    """`value` with every string longer than LONG replaced by its digest (idempotent:
    a digest is shorter than LONG)."""
    if isinstance(value, str):
        return digest(value) if len(value) > LONG else value
    if isinstance(value, dict):
        return {k: shorten(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shorten(v) for v in value]
    return value


def contains(live: Any, desired: Any) -> bool:
    """True when every field in `desired` has the same value in `live`."""
    if isinstance(desired, dict):
        if not isinstance(live, dict):
            return False
        return all(k in live and contains(live[k], v) for k, v in desired.items())
    if isinstance(desired, list):
        if not isinstance(live, list):
            return False
        key = _merge_key(desired)
        if key is None:
            return len(live) == len(desired) and all(
                contains(a, b) for a, b in zip(live, desired, strict=True)
            )
        by_key = {item.get(key): item for item in live if isinstance(item, dict)}
        return all(contains(by_key.get(item[key]), item) for item in desired)
    if isinstance(live, str) and live.startswith(MARK) and isinstance(desired, str):
        # A cached long string: equal iff the desired one digests the same.
        return live == desired or (len(desired) > LONG and digest(desired) == live)
    return bool(live == desired)


def _merge_key(items: list[Any]) -> str | None:
    if not items or not all(isinstance(i, dict) for i in items):
        return None
    for key in _LIST_KEYS:
        if all(key in i for i in items):
            return key
    return None


def up_to_date(
    live: dict[str, Any] | None, intent: dict[str, Any], annotation: str = APPLIED_ANNOTATION
) -> bool:
    """Would applying `intent` (already carrying its hash) leave `live` unchanged?"""
    if live is None:
        return False
    recorded = live.get("metadata", {}).get("annotations", {}).get(annotation)
    wanted = intent.get("metadata", {}).get("annotations", {}).get(annotation)
    if recorded != wanted:
        return False
    if DIGESTS in live:  # a cached ConfigMap or Secret: compare the payload by digests
        if not contains(live[DIGESTS], payload_digests(intent)):
            return False
        intent = {k: v for k, v in intent.items() if k not in PAYLOAD}
    return contains(live, intent)
