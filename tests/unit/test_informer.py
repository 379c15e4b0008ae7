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


LIST_BODY = {
    "kind": "ConfigMapList",
    "apiVersion": "v1",
    "metadata": {"resourceVersion": "42", "continue": "tok"},
    "items": [
        {"metadata": {"name": "a", "namespace": "n"},
         "data": {"k": 'br]ack}et"s {[\\ \u00e9\u4e2d'}},
        {"metadata": {"name": "b", "namespace": "n"}, "data": {"big": "x" * 300_000},
         "nested": [[{}], [], {"l": [1, 2.5, True, None]}]},
        {"metadata": {"name": "c", "namespace": "n"}},
    ],
}  # fmt: skip


def read_list(body: bytes, size: int) -> tuple[list[object], object]:
    from appinfra.kube.informer import ListReader

    reader = ListReader()
    items: list[object] = []
    for cut in range(0, len(body), size):
        items.extend(reader.feed(body[cut : cut + size]))
    items.extend(reader.close())
    return items, reader.head


def test_a_list_response_is_parsed_item_by_item_whatever_the_chunks() -> None:
    for indent in (None, 2):
        body = json.dumps(LIST_BODY, indent=indent, ensure_ascii=False).encode()
        for size in (1, 7, 4096, 65536, len(body)):
            if size == 1 and indent is None:
                size = 3  # byte by byte takes long with the 300 kB item; still splits UTF-8
            items, head = read_list(body, size)
            assert items == LIST_BODY["items"], (indent, size)
            assert head == {k: v for k, v in LIST_BODY.items() if k != "items"}


def test_items_after_metadata_null_or_empty() -> None:
    body = b'{"metadata":{"resourceVersion":"1"},"items":null,"kind":"L"}'
    assert read_list(body, 5) == ([], {"metadata": {"resourceVersion": "1"}, "kind": "L"})
    body = b' { "items" : [ ] , "metadata" : { "resourceVersion" : "1" } } '
    assert read_list(body, 2) == ([], {"metadata": {"resourceVersion": "1"}})


def test_each_item_is_handed_over_as_soon_as_it_is_complete() -> None:
    """So no more than one raw item is buffered."""
    from appinfra.kube.informer import ListReader

    reader = ListReader()
    body = json.dumps(LIST_BODY).encode()
    first = json.dumps(LIST_BODY["items"][0]).encode()  # type: ignore[index]
    first_end = body.index(first) + len(first)
    assert reader.feed(body[:first_end]) == [LIST_BODY["items"][0]]  # type: ignore[index]
    assert len(reader._buf) - reader._pos < 10


def test_a_truncated_list_response_raises() -> None:
    import pytest

    body = json.dumps(LIST_BODY).encode()
    for cut in (0, 10, len(body) // 2, len(body) - 1):
        with pytest.raises(ValueError):
            read_list(body[:cut], 4096)
