"""An in-memory copy of watched objects, fed by kopf's watch events (an informer).

Reconciles read from here instead of GETting. A resource type is "primed" once a
LIST of it has been loaded at start-up: from then on a miss means "no such object
among those the watch covers" and costs nothing. For label-selected types (our
children) that is "no object of ours": a caller that must know about unlabelled
objects too (a user's Secret a binding may not adopt) still GETs. Before priming,
or for types never primed, a miss is confirmed with a GET, so a reconcile never
mistakes "not cached yet" for "absent", which would cause needless writes.

Children are also indexed by their owner labels, so finding what one resource
owns does not scan every cached object (that scan was the top of the profile at
a thousand resources).
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

from appinfra.kube.resources import Resource

Obj = dict[str, Any]
Key = tuple[str, str]  # (namespace, name)
OwnerKey = tuple[str, str, str]  # (namespace, owner kind, owner name)

OWNER_KIND = "appinfra.dev/owner-kind"
OWNER_NAME = "appinfra.dev/owner-name"


def _owner_of(obj: Obj) -> OwnerKey | None:
    meta = obj.get("metadata", {})
    labels = meta.get("labels") or {}
    kind, name = labels.get(OWNER_KIND), labels.get(OWNER_NAME)
    return (meta.get("namespace", ""), kind, name) if kind and name else None


class Store:
    def __init__(self, keep_managed_fields: Iterable[Resource] = ()) -> None:
        self._lock = threading.Lock()
        self._objects: dict[Resource, dict[Key, Obj]] = defaultdict(dict)
        self._owned: dict[Resource, defaultdict[OwnerKey, set[str]]] = defaultdict(
            lambda: defaultdict(set)
        )
        self._primed: set[Resource] = set()
        # managedFields are the bulk of most objects; only some readers need them.
        self._keep_managed_fields = frozenset(keep_managed_fields)

    def _put(self, res: Resource, obj: Obj) -> None:
        meta = obj.get("metadata", {})
        if res not in self._keep_managed_fields and "managedFields" in meta:
            meta = {k: v for k, v in meta.items() if k != "managedFields"}
            obj = {**obj, "metadata": meta}
        key = (meta.get("namespace", ""), meta["name"])
        old = self._objects[res].get(key)
        if old is not None and (owner := _owner_of(old)) is not None:
            self._owned[res][owner].discard(key[1])
        self._objects[res][key] = obj
        if (owner := _owner_of(obj)) is not None:
            self._owned[res][owner].add(key[1])

    def upsert(self, res: Resource, obj: Obj) -> Obj | None:
        """From a watch event (events arrive in order, so the latest always wins).
        Returns the previous version."""
        meta = obj.get("metadata", {})
        with self._lock:
            old = self._objects[res].get((meta.get("namespace", ""), meta["name"]))
            self._put(res, obj)
            return old

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
            self._put(res, obj)

    def remove(self, res: Resource, namespace: str, name: str) -> Obj | None:
        with self._lock:
            old = self._objects[res].pop((namespace, name), None)
            if old is not None and (owner := _owner_of(old)) is not None:
                self._owned[res][owner].discard(name)
            return old

    def prime(self, res: Resource, items: Iterable[Obj]) -> None:
        """Load a complete LIST: from now on a miss for `res` means the object is absent."""
        with self._lock:
            for obj in items:
                meta = obj.get("metadata", {})
                if (meta.get("namespace", ""), meta["name"]) not in self._objects[res]:
                    self._put(res, obj)
            self._primed.add(res)

    def primed(self, res: Resource) -> bool:
        return res in self._primed

    def get(self, res: Resource, namespace: str, name: str) -> Obj | None:
        with self._lock:
            return self._objects[res].get((namespace, name))

    def owned(self, res: Resource, namespace: str, kind: str, name: str) -> list[Obj]:
        """Cached objects of `res` labelled as owned by (kind, name) in `namespace`."""
        with self._lock:
            names = sorted(self._owned[res].get((namespace, kind, name), ()))
            return [self._objects[res][(namespace, n)] for n in names]

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
