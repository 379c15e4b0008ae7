"""Events aggregated like client-go's recorder: a repeat of the same (object, type,
reason, message) counts in one Event; the posting pod is the reportingInstance."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from appinfra.kube.client import KubeError
from appinfra.observability import events
from appinfra.observability.events import InvolvedObject


class FakeKube:
    """Records creates and merge patches; a patch of an unknown Event is a 404."""

    def __init__(self) -> None:
        self.stored: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, str]] = []

    def create(self, resource: Any, namespace: str, obj: dict[str, Any]) -> dict[str, Any]:
        name = obj["metadata"]["name"]
        self.calls.append(("create", name))
        self.stored[name] = dict(obj)
        return obj

    def merge_patch(
        self, resource: Any, namespace: str, name: str, patch: dict[str, Any]
    ) -> dict[str, Any]:
        self.calls.append(("patch", name))
        if name not in self.stored:
            raise KubeError(404, "NotFound", f'events "{name}" not found')
        self.stored[name].update(patch)
        return self.stored[name]


@pytest.fixture(autouse=True)
def fresh_series(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(events, "_series", events._SeriesCache(events.MAX_SERIES))
    monkeypatch.setenv("POD_NAME", "appinfra-7d9f-abcde")
    yield


def ref(name: str = "web", uid: str = "u-1", rv: str = "1") -> InvolvedObject:
    return InvolvedObject("appinfra.dev/v1alpha1", "ServiceProfile", name, "shop", uid, rv)


def post(kube: FakeKube, obj: InvolvedObject, reason: str = "ApplyFailed",
         message: str = "applying failed: forbidden", warning: bool = True) -> None:  # fmt: skip
    events._post(kube, obj, reason, message, warning)  # type: ignore[arg-type]


def test_a_repeat_counts_in_one_event() -> None:
    kube = FakeKube()
    for rv in ("1", "2", "3"):  # status writes change the resourceVersion: still one series
        post(kube, ref(rv=rv))
    assert [c[0] for c in kube.calls] == ["create", "patch", "patch"]
    (event,) = kube.stored.values()
    assert event["count"] == 3
    assert event["firstTimestamp"] <= event["lastTimestamp"]
    assert event["type"] == "Warning" and event["reason"] == "ApplyFailed"


@pytest.mark.parametrize(
    "other",
    [
        {"message": "applying failed: conflict"},
        {"reason": "Invalid"},
        {"warning": False},
    ],
)
def test_a_different_message_reason_or_type_is_a_new_event(other: dict[str, Any]) -> None:
    kube = FakeKube()
    post(kube, ref())
    post(kube, ref(), **other)
    assert [c[0] for c in kube.calls] == ["create", "create"]
    assert sorted(e["count"] for e in kube.stored.values()) == [1, 1]


def test_another_object_or_incarnation_is_a_new_event() -> None:
    kube = FakeKube()
    post(kube, ref())
    post(kube, ref(name="api"))
    post(kube, ref(uid="u-2"))  # deleted and re-created under the same name
    assert [c[0] for c in kube.calls] == ["create"] * 3


def test_an_expired_event_starts_a_new_series() -> None:
    kube = FakeKube()
    post(kube, ref())
    post(kube, ref())
    kube.stored.clear()  # the API server's event TTL ran out
    post(kube, ref())
    post(kube, ref())
    assert [c[0] for c in kube.calls] == ["create", "patch", "patch", "create", "patch"]
    (event,) = kube.stored.values()
    assert event["count"] == 2


def test_a_failed_create_is_not_counted_as_a_series(caplog: pytest.LogCaptureFixture) -> None:
    class Refusing(FakeKube):
        def create(self, resource: Any, namespace: str, obj: dict[str, Any]) -> dict[str, Any]:
            raise KubeError(403, "Forbidden", "events is forbidden")

    post(Refusing(), ref())
    kube = FakeKube()
    post(kube, ref())
    assert [c[0] for c in kube.calls] == ["create"]
    assert "could not post Event ApplyFailed" in caplog.text


def test_reporting_instance_is_the_pod_and_the_controller_is_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kube = FakeKube()
    post(kube, ref())
    (event,) = kube.stored.values()
    assert event["reportingInstance"] == "appinfra-7d9f-abcde"
    assert event["reportingComponent"] == "appinfra.dev/operator"
    assert event["source"] == {"component": "appinfra"}
    monkeypatch.delenv("POD_NAME")
    monkeypatch.setattr("socket.gethostname", lambda: "laptop")
    assert events.reporting_instance() == "laptop"
    monkeypatch.setenv("POD_NAME", "p" * 300)
    assert len(events.reporting_instance()) == events.MAX_INSTANCE


def test_the_series_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(events, "_series", events._SeriesCache(3))
    kube = FakeKube()
    for name in ("a", "b", "c", "d"):
        post(kube, ref(name=name))
    assert len(events._series) == 3
    post(kube, ref(name="d"))  # recent: counted
    post(kube, ref(name="a"))  # evicted: a new Event, as client-go after its LRU drops it
    assert kube.calls[-2:] == [("patch", kube.calls[3][1]), ("create", kube.calls[-1][1])]


def test_emit_aggregates_through_the_poster_threads() -> None:
    kube = FakeKube()
    body = {"apiVersion": "appinfra.dev/v1alpha1", "kind": "SecretBinding",
            "metadata": {"name": "db", "namespace": "shop", "uid": "u-9"}}  # fmt: skip
    for _ in range(20):
        events.emit(kube, body, "BackendUnavailable", "vault down", warning=True)  # type: ignore[arg-type]
    # Both threads drain the queue; a barrier per thread waits for everything queued before.
    for _ in range(2):
        events._POSTER.submit(lambda: None).result(timeout=10)
    for _ in range(100):
        if len(kube.calls) == 20:
            break
        time.sleep(0.05)
    assert [c[0] for c in kube.calls].count("create") == 1
    (event,) = kube.stored.values()
    assert event["count"] == 20
