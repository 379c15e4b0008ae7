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

A collector over a plain dict rather than a labelled Gauge: a Gauge keeps an object and
a lock per series (about 850 bytes; 10 MiB at 1,000 resources of each kind), this keeps
a tuple per resource and builds the samples only when Prometheus scrapes.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from typing import Any

from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from appinfra.kube.conditions import TYPES

NAME = "appinfra_resource_condition"
LABELS = ("kind", "namespace", "name", "condition", "status")
STATUSES = ("True", "False", "Unknown")
_CANONICAL = {s: s for s in (*TYPES, *STATUSES)}  # one string object per type and status

Key = tuple[str, str, str]  # (kind, namespace, name)
Conditions = tuple[tuple[str, str], ...]  # ((condition type, status), ...)


class ResourceConditions(Collector):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._resources: dict[Key, Conditions] = {}

    def observe(self, kind: str, namespace: str, name: str, body: dict[str, Any] | None) -> None:
        """The resource as the API server holds it now; None: it is gone."""
        key = (kind, sys.intern(namespace), name)
        with self._lock:
            if body is None:
                self._resources.pop(key, None)
            else:
                self._resources[key] = _conditions(body)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            NAME,
            "1 per condition of each appinfra resource, labelled with its current status "
            "(Ready without a Ready condition: Unknown); gone with the resource.",
            labels=LABELS,
        )
        with self._lock:
            resources = list(self._resources.items())
        for (kind, namespace, name), conditions in resources:
            for condition, status in conditions:
                family.add_metric((kind, namespace, name, condition, status), 1)
        yield family

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(NAME, "", labels=LABELS)


def _conditions(body: dict[str, Any]) -> Conditions:
    """(type, status) pairs for the types the operator writes; a resource without a Ready
    condition (not reconciled yet) is Ready Unknown, so it can be alerted on too."""
    found: dict[str, str] = {"Ready": "Unknown"}
    for cond in (body.get("status") or {}).get("conditions") or []:
        if not isinstance(cond, dict):
            continue
        condition, status = cond.get("type"), cond.get("status")
        if condition in TYPES and status in STATUSES:
            found[_CANONICAL[condition]] = _CANONICAL[status]
    return tuple(found.items())


RESOURCE_CONDITION = ResourceConditions()
REGISTRY.register(RESOURCE_CONDITION)
observe = RESOURCE_CONDITION.observe
