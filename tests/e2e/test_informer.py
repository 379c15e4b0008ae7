"""The informer against a real API server: list, then every change in order, and a
relist that reports what vanished while nobody watched."""

from __future__ import annotations

import queue
import time

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
