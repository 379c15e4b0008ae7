"""metav1.Condition bookkeeping: lastTransitionTime moves only when status flips."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

TYPES = ("Accepted", "Ready", "Synced", "Enforced", "Healthy")
"""Every condition type the operator writes (Accepted, Ready and the kinds' own). The
per-resource metric (observability/readiness.py) exports only these, so its label values
stay bounded whatever else a status holds: a new type must be added here first."""


@dataclass(frozen=True)
class Condition:
    type: str
    status: bool
    reason: str
    message: str = ""

    def __post_init__(self) -> None:
        if self.type not in TYPES:  # a programming error: every test writing it fails
            raise ValueError(f"condition type {self.type!r} is not in kube.conditions.TYPES")


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
