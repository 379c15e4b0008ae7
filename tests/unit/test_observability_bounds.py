"""Observability that cannot grow without bound: the Event backlog is capped and holds
references, not resource bodies; a deleted SecretBinding's metric series can be dropped."""

from __future__ import annotations

import gc
import threading
import weakref
from typing import Any

import pytest
from prometheus_client import REGISTRY, generate_latest

from appinfra.observability import events
from appinfra.observability.metrics import SECRET_LAST_SUCCESS, forget_secretbinding


class Body(dict[str, Any]):
    """A resource body that can be weakly referenced, to see whether the queue keeps it."""


class SlowKube:
    """Stands in for the client: `create` blocks until released, like a slow API server."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started = threading.Semaphore(0)
        self.created: list[dict[str, Any]] = []

    def create(self, resource: Any, namespace: str, obj: dict[str, Any]) -> dict[str, Any]:
        self.started.release()
        assert self.release.wait(30)
        self.created.append(obj)
        return obj


def _body(name: str) -> Body:
    big = {"spec": {"data": "x" * 100_000}}  # what a queued body would keep alive
    return Body(
        apiVersion="appinfra.dev/v1alpha1",
        kind="SecretBinding",
        metadata={"name": name, "namespace": "shop", "uid": "u-1", "resourceVersion": "7"},
        **big,
    )


def _dropped() -> float:
    return REGISTRY.get_sample_value("appinfra_events_dropped_total") or 0.0


def test_event_backlog_is_bounded_and_holds_no_bodies(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(events, "_pending", threading.BoundedSemaphore(3))
    kube = SlowKube()
    before = _dropped()
    try:
        first = _body("a")
        events.emit(kube, first, "Synced", "m" * 5000, warning=False)  # type: ignore[arg-type]
        events.emit(kube, _body("b"), "Synced", "ok", warning=False)  # type: ignore[arg-type]
        assert kube.started.acquire(timeout=10) and kube.started.acquire(timeout=10)
        queued = _body("c")
        events.emit(kube, queued, "Failed", "no", warning=True)  # type: ignore[arg-type]
        # Both posters are busy and one Event waits: the bound (3) is reached.
        for name in ("d", "e"):
            events.emit(kube, _body(name), "Synced", "dropped", warning=False)  # type: ignore[arg-type]
        assert _dropped() - before == 2
        # Neither the waiting Event nor the ones being posted keep their resource's body.
        refs = [weakref.ref(first), weakref.ref(queued)]
        del first, queued
        gc.collect()
        assert [ref() for ref in refs] == [None, None]
    finally:
        kube.release.set()
    events._POSTER.submit(lambda: None).result(timeout=10)
    deadline = threading.Event()
    for _ in range(100):
        if len(kube.created) == 3:
            break
        deadline.wait(0.1)
    by_name = {e["involvedObject"]["name"]: e for e in kube.created}
    assert set(by_name) == {"a", "b", "c"}
    assert by_name["c"]["involvedObject"] == {
        "apiVersion": "appinfra.dev/v1alpha1",
        "kind": "SecretBinding",
        "name": "c",
        "namespace": "shop",
        "uid": "u-1",
        "resourceVersion": "7",
    }
    assert by_name["c"]["type"] == "Warning"
    assert len(by_name["a"]["message"]) == events.MAX_MESSAGE
    # Capacity is given back once Events are posted.
    events.emit(kube, _body("f"), "Synced", "ok", warning=False)  # type: ignore[arg-type]
    assert _dropped() - before == 2


def _exposed(namespace: str, name: str) -> bool:
    series = (
        f'appinfra_secret_last_success_timestamp_seconds{{name="{name}",namespace="{namespace}"}}'
    )
    return any(line.startswith(series) for line in generate_latest(REGISTRY).decode().splitlines())


def test_forget_secretbinding_removes_its_series() -> None:
    SECRET_LAST_SUCCESS.labels("shop", "gone").set_to_current_time()
    SECRET_LAST_SUCCESS.labels("shop", "kept").set_to_current_time()
    assert _exposed("shop", "gone")
    forget_secretbinding("shop", "gone")
    assert not _exposed("shop", "gone")
    assert _exposed("shop", "kept")
    forget_secretbinding("shop", "gone")  # twice, or never synced: no error
    forget_secretbinding("shop", "never-synced")
    forget_secretbinding("shop", "kept")
