"""The informer's pure parts: relist diffs and watch-stream line splitting."""

from __future__ import annotations

import json

from appinfra.kube.informer import relist_events, split_lines


def item(namespace: str, name: str, rv: str = "1") -> dict[str, object]:
    return {"metadata": {"namespace": namespace, "name": name, "resourceVersion": rv}}


def test_a_relist_delivers_every_item_and_deletes_what_is_gone() -> None:
    cached = [("a", "kept"), ("a", "gone"), ("b", "gone")]
    events = relist_events(cached, [item("a", "kept", "7"), item("a", "new")])
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "kept"),
        ("ADDED", "new"),
        ("DELETED", "gone"),
        ("DELETED", "gone"),
    ]
    assert {e["object"]["metadata"]["namespace"] for e in events if e["type"] == "DELETED"} == {
        "a",
        "b",
    }


def test_a_first_list_deletes_nothing() -> None:
    assert [e["type"] for e in relist_events([], [item("a", "x")])] == ["ADDED"]


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
