"""Decide whether a server-side apply would change anything, without sending it.

A no-op apply is still a write request. To send zero writes when nothing changed
we compare the intent with the live object first:

- every field of the intent must already hold the same value in the live object
  (extra live fields are fine: defaults, or other managers' fields), and
- the hash of the intent must equal the one recorded at the last apply (the
  `appinfra.dev/applied` annotation), because fields we applied before and since
  dropped from the intent are still ours, and only a new apply removes them.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

APPLIED_ANNOTATION = "appinfra.dev/applied"

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
    return recorded == wanted and contains(live, intent)
