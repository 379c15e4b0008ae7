"""metav1.Condition bookkeeping: lastTransitionTime moves only when status flips."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Condition:
    type: str
    status: bool
    reason: str
    message: str = ""


ACCEPTED = Condition("Accepted", True, "Accepted", "the spec is valid and effective")


def merge_conditions(
    old: list[dict[str, Any]], new: list[Condition], generation: int, now: str
) -> list[dict[str, Any]]:
    """The new condition list; types not in `new` are kept as they were."""
    previous = {c.get("type"): c for c in old}
    merged: dict[str, dict[str, Any]] = {c["type"]: c for c in old if "type" in c}
    for cond in new:
        status = "True" if cond.status else "False"
        before = previous.get(cond.type) or {}
        changed = before.get("status") != status
        merged[cond.type] = {
            "type": cond.type,
            "status": status,
            "reason": cond.reason,
            "message": cond.message,
            "lastTransitionTime": now if changed else before.get("lastTransitionTime", now),
            "observedGeneration": generation,
        }
    return list(merged.values())
