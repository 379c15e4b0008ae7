from appinfra.kube.cache import Store
from appinfra.kube.resources import DEPLOYMENT


def obj(rv: str, uid: str = "u1") -> dict[str, object]:
    return {"metadata": {"name": "d", "namespace": "ns", "uid": uid, "resourceVersion": rv}}


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
    store.upsert(CONFIGMAP, live)
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
    from appinfra.handlers.watches import _meaningful_change
    from appinfra.kube.cache import LAST_APPLIED

    def version(annotations: dict[str, str]) -> dict[str, object]:
        return {"metadata": {"name": "d", "generation": 1, "annotations": annotations}}

    cached = version({"team": "shop"})  # what the cache holds: no last-applied
    assert not _meaningful_change(cached, version({LAST_APPLIED: "{...}", "team": "shop"}))
    assert _meaningful_change(cached, version({LAST_APPLIED: "{...}", "team": "web"}))
