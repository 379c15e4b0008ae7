"""An in-memory copy of watched objects, fed by kopf's watch events (an informer).

Reconciles read from here instead of GETting; a miss falls back to a GET so a
reconcile that runs before the initial listing finished never mistakes "not
cached yet" for "absent" (which would cause needless writes at start-up).
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

from appinfra.kube.resources import Resource

Obj = dict[str, Any]
Key = tuple[str, str]  # (namespace, name)


class Store:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._objects: dict[Resource, dict[Key, Obj]] = defaultdict(dict)

    def upsert(self, res: Resource, obj: Obj) -> None:
        """From a watch event: events arrive in order, so the latest always wins."""
        meta = obj.get("metadata", {})
        key = (meta.get("namespace", ""), meta["name"])
        with self._lock:
            self._objects[res][key] = obj

    def write_through(self, res: Resource, obj: Obj) -> None:
        """From our own write's response, unless a newer version already came by watch.

        The response can lose a race with the watch event of a later change (the
        controller-manager updating status right after our apply); overwriting that
        would leave the cache one version behind until the next event. Kubernetes
        calls resourceVersions opaque, but every etcd3-backed server issues them from
        etcd's increasing revision; anything else is simply overwritten.
        """
        meta = obj.get("metadata", {})
        key = (meta.get("namespace", ""), meta["name"])
        with self._lock:
            current = self._objects[res].get(key)
            if current is not None and _newer(current, obj):
                return
            self._objects[res][key] = obj

    def remove(self, res: Resource, namespace: str, name: str) -> None:
        with self._lock:
            self._objects[res].pop((namespace, name), None)

    def get(self, res: Resource, namespace: str, name: str) -> Obj | None:
        with self._lock:
            return self._objects[res].get((namespace, name))

    def contains(self, res: Resource, namespace: str, name: str) -> bool:
        with self._lock:
            return (namespace, name) in self._objects[res]

    def select(self, res: Resource, where: Callable[[Obj], bool]) -> list[Obj]:
        with self._lock:
            objs: Iterable[Obj] = list(self._objects[res].values())
        return [o for o in objs if where(o)]

    def count(self, res: Resource) -> int:
        with self._lock:
            return len(self._objects[res])


def _newer(a: Obj, b: Obj) -> bool:
    """Whether `a` is a strictly later version of the same object than `b`."""
    ma, mb = a.get("metadata", {}), b.get("metadata", {})
    if ma.get("uid") != mb.get("uid"):
        return False
    try:
        return int(ma.get("resourceVersion", "")) > int(mb.get("resourceVersion", ""))
    except ValueError:
        return False
