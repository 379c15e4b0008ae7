"""Creating a child without taking anything over (Kube.create_applied) against the real
API server. One apply whose resourceVersion no object can have: the server creates the
object with an Apply entry, or refuses (409) when the name is taken, and the object
that holds it stays exactly as it was. Where a server would not create on such an apply,
a POST and a relabel of its Update entry as Apply: that relabel survives another writer
changing the object in between (as a controller writing a new PDB's or HPA's status
does). Left as an Update entry, a field the operator drops later would stay (a PDB would
then hold both minAvailable and maxUnavailable, which the server refuses)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from appinfra.kube.client import UNMATCHABLE_VERSION, Kube, KubeError
from appinfra.kube.resources import CONFIGMAP, Resource
from tests.support.audit import writes_by
from tests.support.kube import Cluster

MANAGER = "appinfra-test"
ADMIN = "kubernetes-admin"  # the user of the control plane's admin kubeconfig
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
    kube.create_only_apply = False  # the POST-and-relabel path
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


def test_a_child_is_created_by_one_apply_owned_as_applied(
    cluster: Cluster, namespace: str, audit_log: Path
) -> None:
    kube = Kube(cluster.api())
    created = kube.create_applied(CONFIGMAP, configmap(namespace, "fresh", {"a": "1", "b": "2"}),
                                  MANAGER)  # fmt: skip
    assert created["data"] == {"a": "1", "b": "2"}
    assert our_operations(created) == ["Apply"], created["metadata"]
    sent = [(w.verb, w.code) for w in writes_by(audit_log, ADMIN)
            if w.namespace == namespace and w.name == "fresh"]  # fmt: skip
    assert sent == [("patch", 201)]  # one request, and it created the object
    assert kube.create_only_apply
    kube.apply(CONFIGMAP, configmap(namespace, "fresh", {"a": "1"}), MANAGER)
    after = kube.get(CONFIGMAP, namespace, "fresh")
    assert after is not None and after["data"] == {"a": "1"}


def test_a_taken_name_is_refused_and_its_object_left_as_it_was(
    cluster: Cluster, namespace: str
) -> None:
    """The tenant rule at its root: without the precondition the apply would take the
    stranger's ConfigMap over (force=true) and rewrite its data."""
    other = Kube(cluster.api())
    other.create(CONFIGMAP, namespace, configmap(namespace, "theirs", {"a": "theirs"}))
    before = other.get(CONFIGMAP, namespace, "theirs")
    kube = Kube(cluster.api())
    with pytest.raises(KubeError) as refused:
        kube.create_applied(CONFIGMAP, configmap(namespace, "theirs", {"a": "ours"}), MANAGER)
    assert refused.value.already_exists, refused.value
    assert other.get(CONFIGMAP, namespace, "theirs") == before  # resourceVersion included
    assert kube.create_only_apply  # a taken name says nothing about the server


class Refusing(Kube):
    """A client in front of a server that answers a preconditioned apply of an absent
    object with 409 instead of creating it (what create_applied must survive)."""

    def apply(self, res: Resource, obj: Obj, manager: str, *, subresource: str = "") -> Obj:
        if obj["metadata"].get("resourceVersion") == UNMATCHABLE_VERSION:
            raise KubeError(409, "Conflict", "the object has been modified")
        return super().apply(res, obj, manager, subresource=subresource)


def test_a_server_that_will_not_create_on_apply_gets_a_post_and_a_relabel(
    cluster: Cluster, namespace: str
) -> None:
    kube = Refusing(cluster.api())
    created = kube.create_applied(CONFIGMAP, configmap(namespace, "posted", {"a": "1"}), MANAGER)
    assert our_operations(created) == ["Apply"], created["metadata"]
    assert not kube.create_only_apply  # from now on straight to the POST
    second = kube.create_applied(CONFIGMAP, configmap(namespace, "posted-2", {"a": "2"}), MANAGER)
    assert our_operations(second) == ["Apply"]
