"""Which of several appinfra resources of one kind on one target is the effective one.

Pure, so the rule users rely on ("the oldest wins") is unit-tested apart from the cache
and the target index that find the rivals (controller.Runtime.winner).
"""

from __future__ import annotations

from collections.abc import Iterable

from appinfra.api.names import Obj


def precedence(obj: Obj) -> tuple[str, str]:
    """Sort key: creationTimestamp, then name.

    The API server writes creationTimestamp as RFC 3339 UTC with whole seconds
    ("2026-11-30T08:00:00Z"), so text order is time order. Two resources created in the
    same second tie on it; names are unique per kind and namespace, so the name settles
    every tie the same way in every operator process, whatever order the rivals come in.
    """
    meta = obj["metadata"]
    return str(meta.get("creationTimestamp") or ""), str(meta["name"])


def effective(rivals: Iterable[Obj]) -> Obj:
    """The winner among resources of one kind naming one target: the oldest, ties broken
    by the smaller name. Raises ValueError when there are no rivals at all."""
    return min(rivals, key=precedence)
