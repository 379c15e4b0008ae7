"""The winner rule for several resources of one kind on one target: the oldest
(creationTimestamp) wins, and a tie in that second goes to the smaller name."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from appinfra.kube.conflicts import effective, precedence

Obj = dict[str, Any]


def _obj(name: str, created: str) -> Obj:
    return {"kind": "HealthPolicy", "metadata": {"name": name, "creationTimestamp": created}}


def test_the_oldest_wins_even_when_its_name_sorts_last() -> None:
    older = _obj("zulu", "2026-11-30T08:00:00Z")
    newer = _obj("alpha", "2026-11-30T08:00:01Z")
    assert effective([older, newer]) is older
    assert effective([newer, older]) is older


def test_time_order_holds_across_minutes_hours_days_and_years() -> None:
    # Text order equals time order for the API server's fixed RFC 3339 format.
    stamps = ["2025-12-31T23:59:59Z", "2026-01-01T00:00:00Z", "2026-01-01T00:00:59Z",
              "2026-01-01T00:01:00Z", "2026-01-01T09:00:00Z", "2026-01-01T10:00:00Z",
              "2026-01-02T00:00:00Z"]  # fmt: skip
    objs = [_obj(f"n{9 - i}", stamp) for i, stamp in enumerate(stamps)]  # names sort backwards
    for i in range(len(objs)):
        assert effective(objs[i:]) is objs[i]


def test_a_tie_on_creation_time_goes_to_the_smaller_name() -> None:
    same = "2026-11-30T08:00:00Z"
    a, b, c = _obj("a", same), _obj("b", same), _obj("c", same)
    assert effective([c, b, a]) is a
    assert effective([b, c]) is b


def test_every_input_order_gives_the_same_winner() -> None:
    # Each operator process (and each reconcile) sees the rivals in its own order; all
    # must agree, or two resources would each believe they won.
    objs = [
        _obj("m", "2026-11-30T08:00:02Z"),
        _obj("b", "2026-11-30T08:00:01Z"),
        _obj("a", "2026-11-30T08:00:01Z"),
        _obj("z", "2026-11-30T08:00:00Z"),
    ]
    winners = {effective(list(order))["metadata"]["name"] for order in itertools.permutations(objs)}
    assert winners == {"z"}
    assert sorted(objs, key=precedence) == [objs[3], objs[2], objs[1], objs[0]]


def test_a_lone_resource_is_its_own_winner_and_none_is_an_error() -> None:
    only = _obj("only", "2026-11-30T08:00:00Z")
    assert effective([only]) is only
    with pytest.raises(ValueError):
        effective([])
