"""Creating a child without taking anything over (Kube.create_applied) against the real
API server: its fields end up owned by an Apply entry even when another writer changes
the object between the create and the relabel, as a controller writing a new PDB's or
HPA's status does. Left as an Update entry, a field the operator drops later would stay
(a PDB would then hold both minAvailable and maxUnavailable, which the server refuses)."""

from __future__ import annotations

from typing import Any

from appinfra.kube.client import Kube
from appinfra.kube.resources import CONFIGMAP, Resource
from tests.support.kube import Cluster

MANAGER = "appinfra-test"
Obj = dict[str, Any]


class Contended(Kube):
    """A client whose first `contended` relabel patches each lose a race: another writer
    changes the object just before them."""

    def __init__(self, cluster: Cluster, contended: int) -> None:
        super().__init__(cluster.api())
        self.other = Kube(cluster.api())
        self.contended = contended
        self.patches = 0

    def merge_patch(self, res: Resource, namespace: str, name: str, patch: Obj,
                    subresource: str = "") -> Obj:  # fmt: skip
        if "managedFields" in patch.get("metadata", {}) and self.contended > 0:
            self.contended -= 1
            self.patches += 1
            bump = {"metadata": {"annotations": {"other-writer": str(self.patches)}}}
            self.other.merge_patch(res, namespace, name, bump)
        return super().merge_patch(res, namespace, name, patch, subresource=subresource)


def configmap(namespace: str, name: str, data: dict[str, str]) -> Obj:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace}, "data": data}  # fmt: skip


def our_operations(obj: Obj) -> list[str]:
    return [m["operation"] for m in obj["metadata"]["managedFields"] if m["manager"] == MANAGER]


def test_fields_are_applied_even_when_another_writer_races_the_relabel(
    cluster: Cluster, namespace: str
) -> None:
    kube = Contended(cluster, contended=2)
    created = kube.create_applied(CONFIGMAP, configmap(namespace, "raced", {"a": "1", "b": "2"}),
                                  MANAGER)  # fmt: skip
    assert kube.patches == 2  # both races happened, and were survived
    live = kube.get(CONFIGMAP, namespace, "raced")
    assert live is not None and our_operations(live) == ["Apply"], live["metadata"]
    assert created["metadata"]["resourceVersion"] == live["metadata"]["resourceVersion"]
    # The point of the Apply entry: the next apply without "b" removes it.
    kube.apply(CONFIGMAP, configmap(namespace, "raced", {"a": "1"}), MANAGER)
    after = kube.get(CONFIGMAP, namespace, "raced")
    assert after is not None and after["data"] == {"a": "1"}
