"""appinfra_resource_condition: each resource's conditions as a metric to alert on, in
the manner of External Secrets' externalsecret_status_condition.

Fed from the watch events of the four kinds (manager.py), not from the status writes:
every status the API server holds is seen (the first LIST at start, the echo of each of
our writes), whichever code path wrote it and whether or not a reconcile has run since a
restart; a DELETED event drops the resource's series. Standby replicas watch too, so
every replica exports the same series (aggregate with max by kind, namespace, name).

Bounded: one series per (resource, condition type), the type limited to the types the
operator writes (kube/conditions.py TYPES) and the status to True/False/Unknown. Only the
current status has a series (External Secrets also keeps a 0 for the other statuses):
a third of the series, and `status="False"` alerts work the same.
"""

from __future__ import annotations

import threading
from typing import Any

from appinfra.kube.conditions import TYPES
from appinfra.observability.metrics import RESOURCE_CONDITION

STATUSES = ("True", "False", "Unknown")
Key = tuple[str, str, str]  # (kind, namespace, name)

_lock = threading.Lock()
_exported: dict[Key, dict[str, str]] = {}  # condition type -> the status exported


def observe(kind: str, namespace: str, name: str, body: dict[str, Any] | None) -> None:
    """The resource as the API server holds it now; None: it is gone."""
    key = (kind, namespace, name)
    new = {} if body is None else _conditions(body)
    with _lock:
        old = _exported.pop(key, {})
        for condition, status in old.items():
            if new.get(condition) != status:
                RESOURCE_CONDITION.remove(kind, namespace, name, condition, status)
        for condition, status in new.items():
            RESOURCE_CONDITION.labels(kind, namespace, name, condition, status).set(1)
        if new:
            _exported[key] = new


def _conditions(body: dict[str, Any]) -> dict[str, str]:
    """Condition type -> status, for the types the operator writes; a resource without a
    Ready condition (not reconciled yet) is Ready Unknown, so it can be alerted on too."""
    found: dict[str, str] = {"Ready": "Unknown"}
    for cond in (body.get("status") or {}).get("conditions") or []:
        if not isinstance(cond, dict):
            continue
        condition, status = cond.get("type"), cond.get("status")
        if condition in TYPES and status in STATUSES:
            found[str(condition)] = str(status)
    return found
