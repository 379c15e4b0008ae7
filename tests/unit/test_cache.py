from typing import Any

import pytest

from appinfra.kube.cache import OWNER_KIND, OWNER_NAME, Store, owned_by_appinfra
from appinfra.kube.diff import DIGESTS, LONG, up_to_date, with_hash
from appinfra.kube.resources import CONFIGMAP, DEPLOYMENT, HPA, INGRESS, SECRET, SERVICEPROFILE
from appinfra.render.common import MANAGED_BY, Owner


def obj(rv: str, uid: str = "u1") -> dict[str, object]:
    return {"metadata": {"name": "d", "namespace": "ns", "uid": uid, "resourceVersion": rv}}


def ours(o: dict[str, Any], kind: str = "ServiceProfile", owner: str = "p") -> dict[str, Any]:
    """`o` as a child of ours: owner labels and the controller ownerReference."""
    meta = {
        **o["metadata"],
        "labels": {MANAGED_BY: "appinfra", OWNER_KIND: kind, OWNER_NAME: owner},
        "ownerReferences": [Owner(kind, owner, "ns", "owner-uid").reference],
    }
    return {**o, "metadata": meta}


def test_write_through_never_replaces_a_newer_watched_version() -> None:
    store = Store()
    store.upsert(DEPLOYMENT, obj("11"))  # the watch already delivered a later change
    store.write_through(DEPLOYMENT, obj("10"))  # our write's response arrives late
    assert store.get(DEPLOYMENT, "ns", "d") == obj("11")
    store.write_through(DEPLOYMENT, obj("12"))
    assert store.get(DEPLOYMENT, "ns", "d") == obj("12")


def test_write_through_replaces_a_recreated_object() -> None:
    store = Store()
    store.upsert(DEPLOYMENT, obj("50", uid="old"))
    store.write_through(DEPLOYMENT, obj("3", uid="new"))
    assert store.get(DEPLOYMENT, "ns", "d") == obj("3", uid="new")


def test_watch_events_always_win() -> None:
    store = Store()
    store.upsert(DEPLOYMENT, obj("11"))
    store.upsert(DEPLOYMENT, obj("10"))
    assert store.get(DEPLOYMENT, "ns", "d") == obj("10")


def test_keeps_only_appinfra_managed_fields_where_asked() -> None:
    from appinfra.kube.resources import CONFIGMAP

    managed = [
        {"manager": "kube-controller-manager", "fieldsV1": {"f:status": {}}},
        {"manager": "appinfra-healthpolicy", "fieldsV1": {"f:spec": {}}},
    ]
    live = {**obj("1"), "spec": {"replicas": 1}}
    live["metadata"] = {**live["metadata"], "managedFields": managed}  # type: ignore[dict-item]
    store = Store(keep_managed_fields=(DEPLOYMENT,))
    store.upsert(DEPLOYMENT, live)
    store.upsert(CONFIGMAP, ours(live))
    deployment = store.get(DEPLOYMENT, "ns", "d")
    assert deployment is not None
    assert deployment["metadata"]["managedFields"] == managed[1:]
    assert deployment["spec"] == {"replicas": 1}
    configmap = store.get(CONFIGMAP, "ns", "d")
    assert configmap is not None and "managedFields" not in configmap["metadata"]


def test_readers_get_copies_that_cannot_change_the_cache() -> None:
    store = Store()
    store.upsert(DEPLOYMENT, obj("1"))
    got = store.get(DEPLOYMENT, "ns", "d")
    assert got is not None
    got["metadata"]["resourceVersion"] = "999"
    assert store.get(DEPLOYMENT, "ns", "d") == obj("1")


def test_owner_index_follows_relabelling_and_removal() -> None:
    from appinfra.kube.cache import OWNER_KIND, OWNER_NAME

    def child(owner: str, rv: str) -> dict[str, object]:
        labels = {OWNER_KIND: "ServiceProfile", OWNER_NAME: owner}
        return {"metadata": {"name": "c", "namespace": "ns", "uid": "u", "resourceVersion": rv,
                             "labels": labels}}  # fmt: skip

    store = Store()
    store.upsert(DEPLOYMENT, child("a", "1"))
    assert [o["metadata"]["name"] for o in store.owned(DEPLOYMENT, "ns", "ServiceProfile", "a")]
    store.upsert(DEPLOYMENT, child("b", "2"))
    assert store.owned(DEPLOYMENT, "ns", "ServiceProfile", "a") == []
    assert len(store.owned(DEPLOYMENT, "ns", "ServiceProfile", "b")) == 1
    assert store.remove(DEPLOYMENT, "ns", "c") == child("b", "2")
    assert store.owned(DEPLOYMENT, "ns", "ServiceProfile", "b") == []


def test_drops_kubectls_last_applied_annotation() -> None:
    from appinfra.kube.cache import LAST_APPLIED

    live = obj("1")
    live["metadata"] = {**live["metadata"],  # type: ignore[dict-item]
                        "annotations": {LAST_APPLIED: "{...}", "team": "shop"}}  # fmt: skip
    store = Store()
    store.upsert(DEPLOYMENT, live)
    cached = store.get(DEPLOYMENT, "ns", "d")
    assert cached is not None and cached["metadata"]["annotations"] == {"team": "shop"}


def test_a_change_of_last_applied_alone_is_not_meaningful() -> None:
    from appinfra.controller.changes import meaningful_change as _meaningful_change
    from appinfra.kube.cache import LAST_APPLIED

    def version(annotations: dict[str, str]) -> dict[str, object]:
        return {"metadata": {"name": "d", "generation": 1, "annotations": annotations}}

    cached = version({"team": "shop"})  # what the cache holds: no last-applied
    assert not _meaningful_change(cached, version({LAST_APPLIED: "{...}", "team": "shop"}))
    assert _meaningful_change(cached, version({LAST_APPLIED: "{...}", "team": "web"}))


# --- what a tenant can put in the cache (issue #12) -------------------------------


def foreign(**meta: Any) -> dict[str, Any]:
    """A tenant's object carrying our managed-by label (which anyone can set)."""
    labels = {MANAGED_BY: "appinfra", OWNER_KIND: "ServiceProfile", OWNER_NAME: "p"}
    return {"metadata": {"name": "c", "namespace": "ns", "uid": "u", "resourceVersion": "1",
                         "labels": labels, **meta}, "data": {"k": "x" * 1000}}  # fmt: skip


@pytest.mark.parametrize(
    "refs",
    [
        [],  # the label alone
        [{**Owner("ServiceProfile", "p", "ns", "u").reference, "controller": False}],
        [{**Owner("ServiceProfile", "p", "ns", "u").reference, "apiVersion": "apps/v1"}],
        [{**Owner("ServiceProfile", "p", "ns", "u").reference, "kind": "Deployment"}],
        # the reference names another owner than the labels (the owner index's key)
        [Owner("ServiceProfile", "other", "ns", "u").reference],
        [Owner("SecretBinding", "p", "ns", "u").reference],
    ],
)
def test_children_without_our_controller_reference_are_never_cached(
    refs: list[dict[str, Any]],
) -> None:
    store = Store()
    cm = foreign(ownerReferences=refs)
    assert not owned_by_appinfra(cm)
    assert store.shrink(CONFIGMAP, cm) is None
    assert store.upsert(CONFIGMAP, cm) is None
    store.write_through(CONFIGMAP, cm)
    assert store.get(CONFIGMAP, "ns", "c") is None and store.count(CONFIGMAP) == 0
    assert store.owned(CONFIGMAP, "ns", "ServiceProfile", "p") == []


def test_a_child_that_loses_our_reference_leaves_the_cache() -> None:
    store = Store()
    child = ours(foreign())
    store.upsert(HPA, child)
    assert store.count(HPA) == 1 and len(store.owned(HPA, "ns", "ServiceProfile", "p")) == 1
    previous = store.upsert(HPA, foreign())  # the user removed the ownerReference
    assert previous is not None and previous["metadata"]["labels"][OWNER_NAME] == "p"
    assert store.count(HPA) == 0 and store.owned(HPA, "ns", "ServiceProfile", "p") == []


def test_targets_and_appinfra_kinds_need_no_reference() -> None:
    store = Store()
    store.upsert(DEPLOYMENT, obj("1"))
    store.upsert(SERVICEPROFILE, obj("1"))
    assert store.count(DEPLOYMENT) == store.count(SERVICEPROFILE) == 1


@pytest.mark.parametrize("res", [CONFIGMAP, SECRET])
def test_configmap_and_secret_values_are_kept_as_digests(res: Any) -> None:
    store = Store()
    value = "c2VjcmV0" * 10_000  # ~80 KB
    live = ours({**obj("1"), "data": {"a": value, "b": "Zm9v"}, "binaryData": {"c": "AA=="}})
    store.upsert(res, live)
    cached = store.get(res, "ns", "d")
    assert cached is not None
    assert "data" not in cached and "binaryData" not in cached
    assert set(cached[DIGESTS]) == {"data", "binaryData"}
    assert set(cached[DIGESTS]["data"]) == {"a", "b"}
    text = str(cached)
    assert value not in text and "Zm9v" not in text and "AA==" not in text
    assert len(text) < 1000
    # Idempotent: shrinking what the informer already shrank changes nothing.
    assert store.shrink(res, cached) == cached


def test_up_to_date_compares_a_cached_payload_by_digests() -> None:
    """Zero writes on a no-op resync and reverted drift, with only digests cached."""
    store = Store()
    intent = with_hash(ours({"apiVersion": "v1", "kind": "ConfigMap",
                             "metadata": {"name": "d", "namespace": "ns"},
                             "data": {"app.yaml": "x" * 5000, "b": "1"}}))  # fmt: skip
    live = {**intent, "metadata": {**intent["metadata"], "uid": "u", "resourceVersion": "1"}}
    store.upsert(CONFIGMAP, live)
    cached = store.get(CONFIGMAP, "ns", "d")
    assert cached is not None and up_to_date(cached, intent)
    # A user edits one key: drift, so the next reconcile applies (reverts) it.
    store.upsert(CONFIGMAP, {**live, "data": {**live["data"], "b": "2"}})
    assert not up_to_date(store.get(CONFIGMAP, "ns", "d"), intent)
    # A removed key is drift too; an extra key (someone else's field) is not.
    store.upsert(CONFIGMAP, {**live, "data": {"b": "1"}})
    assert not up_to_date(store.get(CONFIGMAP, "ns", "d"), intent)
    store.upsert(CONFIGMAP, {**live, "data": {**live["data"], "extra": "y"}})
    assert up_to_date(store.get(CONFIGMAP, "ns", "d"), intent)
    # An object read with a GET carries values and is compared as before.
    assert up_to_date(live, intent)
    assert not up_to_date({**live, "data": {"app.yaml": "x", "b": "1"}}, intent)


def test_long_strings_of_targets_are_digests_that_still_compare() -> None:
    store = Store()
    big = "v" * (LONG * 100)
    annotations = {"team": "shop", "big": big, "appinfra.dev/limit-whitelist": "w" * (LONG + 1)}
    live = {**obj("1"), "metadata": {**obj("1")["metadata"], "annotations": annotations},  # type: ignore[dict-item]
            "spec": {"rules": [{"host": "h", "huge": [big]}]}}  # fmt: skip
    store.upsert(INGRESS, live)
    cached = store.get(INGRESS, "ns", "d")
    assert cached is not None and big not in str(cached) and len(str(cached)) < 2000
    assert cached["metadata"]["annotations"]["team"] == "shop"
    intent = {"metadata": {"annotations": {"appinfra.dev/limit-whitelist": "w" * (LONG + 1)}}}
    assert up_to_date(cached, intent, "none")
    intent = {"metadata": {"annotations": {"appinfra.dev/limit-whitelist": "w" * (LONG + 2)}}}
    assert not up_to_date(cached, intent, "none")
    assert not up_to_date(cached, {"metadata": {"annotations": {"big": "short"}}}, "none")
    # The appinfra kinds keep their long strings: reconcilers render from them.
    spec = {**obj("1"), "spec": {"config": {"data": {"f": big}}}}
    store.upsert(SERVICEPROFILE, spec)
    assert store.get(SERVICEPROFILE, "ns", "d") == spec


def test_a_change_of_cached_values_is_a_child_change() -> None:
    """Data drift still reaches the owner although only digests are compared."""
    from appinfra.controller.changes import child_changed as _child_changed

    store = Store()
    live = ours({**obj("1"), "metadata": {**obj("1")["metadata"], "generation": 1},  # type: ignore[dict-item]
                 "data": {"a": "1"}})  # fmt: skip
    before = store.shrink(CONFIGMAP, live)
    same = store.shrink(
        CONFIGMAP, {**live, "metadata": {**live["metadata"], "resourceVersion": "2"}}
    )
    edited = store.shrink(CONFIGMAP, {**live, "data": {"a": "2"}})
    assert before is not None and same is not None and edited is not None
    assert not _child_changed(before, same)
    assert _child_changed(before, edited)
