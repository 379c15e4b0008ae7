"""The informer's pure parts: relist diffs and watch-stream line splitting."""

from __future__ import annotations

import json

from appinfra.kube.informer import split_lines, vanished


def item(namespace: str, name: str, rv: str = "1") -> dict[str, object]:
    return {"metadata": {"namespace": namespace, "name": name, "resourceVersion": rv}}


def test_a_relist_deletes_what_is_gone() -> None:
    cached = [("a", "kept"), ("a", "gone"), ("b", "gone")]
    events = vanished(cached, {("a", "kept"), ("a", "new")})
    assert [(e["type"], e["object"]["metadata"]["namespace"], e["object"]["metadata"]["name"])
            for e in events] == [("DELETED", "a", "gone"), ("DELETED", "b", "gone")]  # fmt: skip


def test_a_first_list_deletes_nothing() -> None:
    assert vanished([], {("a", "x")}) == []


def test_lines_split_across_chunks_are_joined() -> None:
    one = json.dumps({"type": "ADDED", "object": item("a", "x")}).encode()
    two = json.dumps({"type": "DELETED", "object": item("a", "y")}).encode()
    stream = one + b"\n" + two + b"\n"
    lines: list[bytes] = []
    rest = b""
    for cut in range(0, len(stream), 7):  # arbitrary chunk boundaries
        got, rest = split_lines(rest, stream[cut : cut + 7])
        lines.extend(got)
    assert rest == b""
    assert [json.loads(line)["type"] for line in lines] == ["ADDED", "DELETED"]


def test_blank_keepalive_lines_are_skipped() -> None:
    lines, rest = split_lines(b"", b'\n\n{"type":"BOOKMARK"}\n{"ty')
    assert lines == [b'{"type":"BOOKMARK"}'] and rest == b'{"ty'


def test_an_object_the_transform_drops_arrives_as_deleted_by_name() -> None:
    """So a cached child that stops being ours leaves the cache, and a foreign one's
    body (a 1 MiB ConfigMap) never reaches the event loop."""
    from typing import Any

    from appinfra.kube.informer import Informer
    from appinfra.kube.resources import CONFIGMAP

    def keep_small(obj: dict[str, Any]) -> dict[str, Any] | None:
        return None if "big" in obj.get("data", {}) else {**obj, "data": "digest"}

    informer = Informer(None, CONFIGMAP, lambda *_: None, list, transform=keep_small)  # type: ignore[arg-type]
    big = {**item("a", "x", "7"), "data": {"big": "x" * 100_000}}
    event = informer._event(json.dumps({"type": "MODIFIED", "object": big}).encode())
    assert event == {"type": "DELETED", "object": {"metadata": {"namespace": "a", "name": "x"}}}
    assert informer._version == "7"  # still resumes after it
    small = {**item("a", "y", "8"), "data": {"k": "v"}}
    event = informer._event(json.dumps({"type": "ADDED", "object": small}).encode())
    assert event is not None and event["type"] == "ADDED"
    assert event["object"]["data"] == "digest" and event["object"]["kind"] == "ConfigMap"
