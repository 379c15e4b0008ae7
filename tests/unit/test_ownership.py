"""The tenant rule's predicates: who may write an existing object."""

from __future__ import annotations

from typing import Any

import pytest

from appinfra.kube.ownership import controlled_by, controller_uid, merge_allowed

Obj = dict[str, Any]


def _obj(*refs: Obj, type_: str = "Opaque", **annotations: str) -> Obj:
    return {"type": type_, "metadata": {"ownerReferences": list(refs), "annotations": annotations}}


OURS = {"apiVersion": "appinfra.dev/v1alpha1", "kind": "ServiceProfile", "name": "a",
        "uid": "u-1", "controller": True}  # fmt: skip


def test_only_an_appinfra_controller_reference_with_this_uid_counts() -> None:
    assert controlled_by(_obj(OURS), "u-1")
    assert not controlled_by(_obj(OURS), "u-2")
    assert not controlled_by(_obj({**OURS, "controller": False}), "u-1")
    assert not controlled_by(_obj({**OURS, "apiVersion": "apps/v1"}), "u-1")
    assert not controlled_by(_obj(), "u-1")
    assert not controlled_by(_obj(OURS), "")  # offline rendering has no uid
    assert controller_uid(_obj({"apiVersion": "apps/v1", "uid": "x", "controller": True})) is None


@pytest.mark.parametrize(
    ("annotation", "binding", "allowed"),
    [
        ("db", "db", True),
        ("a, db ,b", "db", True),
        ("dbx", "db", False),
        ("", "db", False),
        (None, "db", False),
    ],
)
def test_merge_needs_the_secret_owner_to_name_the_binding(
    annotation: str | None, binding: str, allowed: bool
) -> None:
    extra = {} if annotation is None else {"appinfra.dev/merge-from": annotation}
    assert merge_allowed(_obj(**extra), binding) is allowed


@pytest.mark.parametrize(
    "type_",
    ["kubernetes.io/service-account-token", "helm.sh/release.v1", "bootstrap.kubernetes.io/token"],
)
def test_protected_secret_types_are_never_merged_into(type_: str) -> None:
    assert not merge_allowed(_obj(type_=type_, **{"appinfra.dev/merge-from": "db"}), "db")
