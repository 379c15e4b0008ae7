"""Which appinfra resources name which target: the index behind conflict resolution,
status.policies and "the target changed, reconcile whoever points at it".

Kept from watch events; reconcilers read it from worker threads, hence the lock.
"""

from __future__ import annotations

import threading
from collections import defaultdict

from appinfra.api.names import Obj

Target = tuple[str, str, str]  # (namespace, kind, name)
Policy = tuple[str, str]  # (kind, name); the namespace is the target's


def target_ref(body: Obj) -> tuple[str, str, str]:
    """(group, kind, name) of an appinfra resource's spec.targetRef, with its defaults."""
    ref = (body.get("spec") or {}).get("targetRef") or {}
    return (str(ref.get("group", "apps")), str(ref.get("kind", "Deployment")), str(ref.get("name")))


def target_of(body: Obj) -> Target:
    """The index key of the target `body` names: (namespace, kind, name)."""
    _, kind, name = target_ref(body)
    return (body["metadata"]["namespace"], kind, name)


class TargetIndex:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_target: defaultdict[Target, set[Policy]] = defaultdict(set)
        self._target_of: dict[tuple[str, str, str], Target] = {}

    def set(self, kind: str, namespace: str, name: str, target: Target | None) -> Target | None:
        """Record `target` (None: the resource is gone). Returns the previous target."""
        key = (kind, namespace, name)
        with self._lock:
            old = self._target_of.get(key)
            if old == target:
                return old
            if old is not None:
                self._by_target[old].discard((kind, name))
                if not self._by_target[old]:
                    del self._by_target[old]
            if target is None:
                self._target_of.pop(key, None)
            else:
                self._target_of[key] = target
                self._by_target[target].add((kind, name))
            return old

    def attached(self, target: Target, kind: str | None = None) -> list[Policy]:
        """The resources naming `target` (optionally of one kind), sorted."""
        with self._lock:
            found = self._by_target.get(target, set())
            return sorted(p for p in found if kind is None or p[0] == kind)
