"""appinfra_resource_condition: one series per condition of each resource, the current
status only, bounded label values, and nothing left once the resource is gone."""

from __future__ import annotations

import tracemalloc
from typing import Any

import pytest
from prometheus_client import REGISTRY

from appinfra.kube.conditions import TYPES, Condition
from appinfra.observability import readiness

METRIC = "appinfra_resource_condition"


def _body(*conditions: tuple[str, str]) -> dict[str, Any]:
    return {"status": {"conditions": [{"type": t, "status": s} for t, s in conditions]}}


def _series(name: str) -> dict[tuple[str, str], float]:
    """(condition, status) -> value, for the resource `name` in namespace shop."""
    return {
        (s.labels["condition"], s.labels["status"]): s.value
        for metric in REGISTRY.collect()
        if metric.name == METRIC
        for s in metric.samples
        if s.labels["namespace"] == "shop" and s.labels["name"] == name
    }


def test_each_condition_has_one_series_with_its_current_status() -> None:
    healthy = _body(("Accepted", "True"), ("Ready", "True"), ("Synced", "True"))
    readiness.observe("SecretBinding", "shop", "db", healthy)
    assert _series("db") == {("Accepted", "True"): 1, ("Ready", "True"): 1, ("Synced", "True"): 1}
    failing = _body(("Accepted", "True"), ("Ready", "False"), ("Synced", "False"))
    readiness.observe("SecretBinding", "shop", "db", failing)
    # The old status's series goes: never a True and a False at once.
    assert _series("db") == {("Accepted", "True"): 1, ("Ready", "False"): 1, ("Synced", "False"): 1}
    readiness.observe("SecretBinding", "shop", "db", None)  # deleted
    assert _series("db") == {}
    readiness.observe("SecretBinding", "shop", "db", None)  # a second DELETED: no error


def test_a_resource_without_a_ready_condition_is_ready_unknown() -> None:
    readiness.observe("ServiceProfile", "shop", "new", {"metadata": {}})
    assert _series("new") == {("Ready", "Unknown"): 1}
    readiness.observe("ServiceProfile", "shop", "new", _body(("Ready", "True")))
    assert _series("new") == {("Ready", "True"): 1}
    readiness.observe("ServiceProfile", "shop", "new", None)
    assert _series("new") == {}


def test_only_the_operators_condition_types_and_statuses_are_exported() -> None:
    """Anyone with access to the status subresource can write anything there: a thousand
    made-up types must not become a thousand series."""
    made_up = [(f"Made{i}", "True") for i in range(1000)]
    odd = _body(*made_up, ("Healthy", "Maybe"), ("Healthy", "Yes"), ("Ready", "False"))
    readiness.observe("HealthPolicy", "shop", "odd", odd)
    assert _series("odd") == {("Ready", "False"): 1}
    readiness.observe("HealthPolicy", "shop", "odd", None)


def test_the_operator_can_only_write_condition_types_the_metric_knows() -> None:
    for condition_type in TYPES:
        Condition(condition_type, True, "Reason")
    with pytest.raises(ValueError, match="TYPES"):
        Condition("Monitored", True, "Reason")


def test_a_thousand_resources_of_each_kind_cost_little_memory() -> None:
    """The operator's memory budget is measured at 1,000 resources of each kind (README
    Performance): their series must not take a noticeable share of it. A labelled Gauge
    (an object and a lock per series) took 10 MB here; the collector keeps one tuple each."""
    types = {"ServiceProfile": (), "SecretBinding": ("Synced",),
             "HealthPolicy": ("Enforced", "Healthy"), "RateLimitPolicy": ("Enforced",)}  # fmt: skip
    events = [
        (kind, f"team-{i % 50}", f"resource-{i}",
         _body(("Accepted", "True"), ("Ready", "True"), *((t, "True") for t in own)))
        for kind, own in types.items()
        for i in range(1000)
    ]  # fmt: skip
    tracemalloc.start(50)  # frames enough to see this test in every allocation's stack
    try:
        for kind, namespace, name, body in events:
            readiness.observe(kind, namespace, name, body)
        # Only what this test's calls allocated: in a full run, other tests' threads
        # (servers, informers) allocate during this window too.
        snapshot = tracemalloc.take_snapshot().filter_traces(
            [tracemalloc.Filter(True, __file__, all_frames=True)]
        )
        used = sum(stat.size for stat in snapshot.statistics("filename"))
    finally:
        tracemalloc.stop()
        for kind, namespace, name, _ in events:
            readiness.observe(kind, namespace, name, None)
    assert used < 2_000_000, f"{used / 1e6:.1f} MB for 4,000 resources"
