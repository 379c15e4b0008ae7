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
