import hashlib

from appinfra.kube.diff import APPLIED_ANNOTATION, contains, intent_hash, up_to_date, with_hash


def test_contains_ignores_extra_live_fields_and_matches_lists_by_name() -> None:
    live = {
        "spec": {
            "containers": [
                {"name": "b", "image": "x", "envFrom": [{"configMapRef": {"name": "c"}}]},
                {"name": "a", "image": "y"},
            ],
            "extra": 1,
        }
    }
    assert contains(
        live,
        {"spec": {"containers": [{"name": "b", "envFrom": [{"configMapRef": {"name": "c"}}]}]}},
    )
    assert not contains(live, {"spec": {"containers": [{"name": "a", "envFrom": []}]}})
    assert not contains(live, {"spec": {"containers": [{"name": "zzz"}]}})


def test_atomic_lists_compare_whole() -> None:
    assert contains({"l": [1, 2]}, {"l": [1, 2]})
    assert not contains({"l": [1, 2, 3]}, {"l": [1, 2]})
    assert not contains({"l": [2, 1]}, {"l": [1, 2]})


def test_up_to_date_needs_same_hash_and_values() -> None:
    intent = with_hash({"metadata": {"name": "x"}, "data": {"a": "1"}})
    live = {
        "metadata": {"name": "x", "annotations": dict(intent["metadata"]["annotations"])},
        "data": {"a": "1"},
    }
    assert up_to_date(live, intent)
    drifted = {**live, "data": {"a": "2"}}
    assert not up_to_date(drifted, intent)
    old_hash = {**live, "metadata": {"name": "x", "annotations": {APPLIED_ANNOTATION: "old"}}}
    assert not up_to_date(old_hash, intent)
    assert not up_to_date(None, intent)


def test_intent_hash_is_stable_under_key_order() -> None:
    assert intent_hash({"a": 1, "b": {"c": 2, "d": 3}}) == intent_hash(
        {"b": {"d": 3, "c": 2}, "a": 1}
    )
    assert intent_hash({"a": 1}) != intent_hash({"a": 2})


def test_per_manager_annotation() -> None:
    intent = with_hash({"metadata": {"name": "d"}}, "appinfra.dev/applied-x")
    assert "appinfra.dev/applied-x" in intent["metadata"]["annotations"]
    assert APPLIED_ANNOTATION not in intent["metadata"]["annotations"]


def test_target_index_tracks_moves_and_deletions() -> None:
    from appinfra.kube.targets import TargetIndex

    index = TargetIndex()
    a = ("ns", "Deployment", "a")
    b = ("ns", "Deployment", "b")
    assert index.set("ServiceProfile", "ns", "p", a) is None
    index.set("HealthPolicy", "ns", "h", a)
    assert index.attached(a) == [("HealthPolicy", "h"), ("ServiceProfile", "p")]
    assert index.attached(a, "ServiceProfile") == [("ServiceProfile", "p")]
    assert index.set("ServiceProfile", "ns", "p", b) == a
    assert index.attached(a) == [("HealthPolicy", "h")]
    assert index.set("ServiceProfile", "ns", "p", None) == b
    assert index.attached(b) == []


def test_a_value_that_looks_like_a_digest_matches_nothing_but_itself() -> None:
    """Digests are keyed per process: a user cannot write a value that the comparison
    takes for the digest of the intent's value."""
    from appinfra.kube.diff import LONG, MARK, digest

    wanted = "x" * (LONG + 1)
    forged = MARK + hashlib.sha256(wanted.encode()).hexdigest()[:32]
    assert not contains({"a": forged}, {"a": wanted})
    assert contains({"a": digest(wanted)}, {"a": wanted})
    assert not contains({"a": digest(wanted)}, {"a": wanted + "y"})
    # Short desired values are never compared by digest.
    assert not contains({"a": digest("short")}, {"a": "short"})


def test_payload_digests_mirror_plain_contains() -> None:
    from appinfra.kube.diff import DIGESTS, digest_payload

    intent = with_hash({"metadata": {"name": "x"}, "data": {}})
    annotations = dict(intent["metadata"]["annotations"])
    # No data at all live vs an intent with empty data: as without digests, not equal.
    live = {"metadata": {"name": "x", "annotations": annotations}}
    assert up_to_date(live, intent) == up_to_date(digest_payload(live), intent) is False
    live = {**live, "data": {}}
    assert digest_payload(live)[DIGESTS] == {"data": {}}
    assert up_to_date(live, intent) and up_to_date(digest_payload(live), intent)
