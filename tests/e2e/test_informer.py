"""The informer against a real API server: list, then every change in order, and a
relist that reports what vanished while nobody watched."""

from __future__ import annotations

import json
import queue
import time
from collections.abc import Callable

from appinfra.kube.client import Kube
from appinfra.kube.informer import Event, Informer
from appinfra.kube.resources import CONFIGMAP
from tests.support.kube import Cluster

SELECTOR = "app.kubernetes.io/managed-by=appinfra"


def configmap(namespace: str, name: str, value: str) -> dict[str, object]:
    return {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "labels": {
            "app.kubernetes.io/managed-by": "appinfra"}},
        "data": {"v": value},
    }  # fmt: skip


def test_informer_lists_then_streams_every_change(cluster: Cluster, namespace: str) -> None:
    kube = Kube(cluster.api())
    for name in ("before", "before-2", "before-3"):
        kube.apply(CONFIGMAP, configmap(namespace, name, "1"), "test")
    unlabelled = configmap(namespace, "other", "1")
    unlabelled["metadata"]["labels"] = {}  # type: ignore[index]
    kube.apply(CONFIGMAP, unlabelled, "test")
    seen: queue.Queue[tuple[str, str, str | None, bool]] = queue.Queue()
    batches: list[bool] = []

    def deliver(events: list[Event], complete: bool) -> None:
        batches.append(complete)
        for e in events:
            obj = e["object"]
            seen.put((e["type"], obj["metadata"]["name"], (obj.get("data") or {}).get("v"),
                      complete))  # fmt: skip

    # The cache believes in an object that was deleted while nobody watched.
    informer = Informer(
        kube, CONFIGMAP, deliver, lambda: [(namespace, "ghost")],
        namespace=namespace, label_selector=SELECTOR, page=1,  # three pages
    )  # fmt: skip
    informer.start()
    try:
        listed = [seen.get(timeout=30) for _ in range(4)]
        # A page per object (and maybe an empty last one); the last page also reports the
        # ghost and completes the list.
        assert [event[:3] for event in listed] == [
            ("ADDED", "before", "1"),
            ("ADDED", "before-2", "1"),
            ("ADDED", "before-3", "1"),
            ("DELETED", "ghost", None),
        ]
        assert len(batches) >= 3 and batches[-1] and not any(batches[:-1])
        kube.apply(CONFIGMAP, configmap(namespace, "after", "1"), "test")
        kube.apply(CONFIGMAP, configmap(namespace, "after", "2"), "test")
        kube.delete(CONFIGMAP, namespace, "after")
        streamed = [seen.get(timeout=30) for _ in range(3)]
        assert streamed == [
            ("ADDED", "after", "1", False),
            ("MODIFIED", "after", "2", False),
            ("DELETED", "after", "2", False),
        ]  # watch batches never claim to complete a list
        time.sleep(1)
        assert seen.empty(), "the unlabelled ConfigMap must not be delivered"
    finally:
        informer.stop()


WIDGETS = "widgets.informer.appinfra.test"


def widget_crd() -> dict[str, object]:
    schema = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": WIDGETS},
        "spec": {"group": "informer.appinfra.test", "scope": "Namespaced",
                 "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                 "versions": [{"name": "v1", "served": True, "storage": True,
                               "schema": {"openAPIV3Schema": schema}}]},
    }  # fmt: skip


def test_an_optional_type_is_waited_for_and_followed_when_its_crd_comes_and_goes(
    cluster: Cluster, namespace: str
) -> None:
    """Another project's CRD (the Prometheus Operator's, in the operator): absent at
    start, the informer completes an empty list at once (start-up does not wait) and
    says "not served"; installed later, it says "served" and streams the objects;
    deleted, "not served" again, and the objects are delivered as gone."""
    from appinfra.kube.resources import Resource

    def wait_for(check: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + 30
        while not check():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.1)

    widget = Resource("informer.appinfra.test", "v1", "widgets", "Widget", optional=True)
    kube = Kube(cluster.api())
    served: queue.Queue[bool] = queue.Queue()
    seen: queue.Queue[tuple[str, str, bool]] = queue.Queue()
    cached: set[tuple[str, str]] = set()

    def deliver(events: list[Event], complete: bool) -> None:
        for e in events:
            key = (namespace, e["object"]["metadata"]["name"])
            (cached.discard if e["type"] == "DELETED" else cached.add)(key)
            seen.put((e["type"], key[1], complete))
        if not events:
            seen.put(("EMPTY", "", complete))

    informer = Informer(kube, widget, deliver, lambda: sorted(cached), namespace=namespace,
                        served=served.put, recheck=0.5)  # fmt: skip
    informer.start()
    try:
        assert served.get(timeout=30) is False
        assert seen.get(timeout=30) == ("EMPTY", "", True)  # the list is complete, empty
        cluster.kubectl("apply", "-f", "-", input=json.dumps(widget_crd()))
        cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{WIDGETS}")
        item = {"apiVersion": "informer.appinfra.test/v1", "kind": "Widget",
                "metadata": {"name": "w1", "namespace": namespace}}  # fmt: skip
        cluster.kubectl("apply", "-f", "-", input=json.dumps(item))
        assert served.get(timeout=30) is True  # one change: absent -> served
        wait_for(lambda: (namespace, "w1") in cached, "the Widget listed once served")
        cluster.kubectl("delete", "crd", WIDGETS, "--wait=true")
        wait_for(lambda: not cached, "the objects of a deleted CRD delivered as gone")
        assert served.get(timeout=30) is False
    finally:
        informer.stop()
        cluster.kubectl("delete", "crd", WIDGETS, "--ignore-not-found")
