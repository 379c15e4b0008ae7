"""Prometheus metrics. Labels never carry secret values, only names and outcomes."""

from __future__ import annotations

import contextlib

from prometheus_client import Counter, Gauge, Histogram

# Defined where they are counted, so that kube/ and providers/ import nothing above them;
# listed here so that this module stays the one catalogue of the operator's metrics.
from appinfra.kube.client import API_REQUESTS
from appinfra.observability.readiness import RESOURCE_CONDITION  # a collector: see there
from appinfra.providers.base import BACKEND_REQUESTS

__all__ = ["API_REQUESTS", "BACKEND_REQUESTS", "RESOURCE_CONDITION"]

RECONCILE_TOTAL = Counter(
    "appinfra_reconcile_total", "Reconciles by kind and result.", ["kind", "result"]
)
RECONCILE_DURATION = Histogram(
    "appinfra_reconcile_duration_seconds",
    "Time to reconcile one resource.",
    ["kind"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
MANAGED_OBJECTS = Gauge(
    "appinfra_managed_objects", "Resources of each kind the operator manages.", ["kind"]
)
SECRET_SYNC_TOTAL = Counter(
    "appinfra_secret_sync_total", "SecretBinding syncs by store and result.", ["store", "result"]
)
SECRET_LAST_SUCCESS = Gauge(
    "appinfra_secret_last_success_timestamp_seconds",
    "When each SecretBinding last synced successfully (Unix time).",
    ["namespace", "name"],
)
EVENTS_DROPPED = Counter(
    "appinfra_events_dropped_total",
    "Kubernetes Events not posted because too many were already waiting to be posted.",
)
LEADER = Gauge("appinfra_leader", "1 on the replica that holds the leader lease, else 0.")


PER_BINDING: tuple[Gauge, ...] = (SECRET_LAST_SUCCESS,)
"""Every metric with a series per SecretBinding (labels namespace, name)."""


def forget_secretbinding(namespace: str, name: str) -> None:
    """Drop every per-binding series of a deleted SecretBinding, so that neither the
    registry nor /metrics grows with bindings that no longer exist."""
    for metric in PER_BINDING:
        with contextlib.suppress(KeyError):  # never synced successfully: no series
            metric.remove(namespace, name)
