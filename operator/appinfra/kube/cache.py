"""An in-memory copy of watched objects, fed by watch events (kopf's for the appinfra
kinds, kube/informer.py's for targets and children).

Reconciles read from here instead of GETting. A resource type is "primed" once its
informer's first LIST has been loaded: from then on a miss means "no such object
among those the watch covers" and costs nothing. For label-selected types (our
children) that is "no object of ours": a caller that must know about other objects
too (a user's Secret a binding may not adopt, an Orphan Secret, which carries no
ownerReference) still GETs. Before priming,
or for types never primed, a miss is confirmed with a GET, so a reconcile never
mistakes "not cached yet" for "absent", which would cause needless writes.

Children are also indexed by their owner labels, so finding what one resource
owns does not scan every cached object (that scan was the top of the profile at
a thousand resources).

Objects are kept as compressed compact JSON, not as parsed dicts: parsed, an
object takes about nine times its JSON size, which made the cache most of the
operator's memory (11,000 objects: ~150 MiB as dicts, ~16 MiB as JSON, about a
third of that compressed). Each read parses its object afresh (tens of
microseconds), which also means no caller can change the cache by changing what it
was given. managedFields are dropped (they are half of most objects) except
appinfra's own entries on the types whose readers need them, and so is kubectl's
last-applied-configuration annotation.

What a tenant can put here is bounded (issue #12: any namespace can label objects
managed-by=appinfra, and ~350 one-MiB ConfigMaps cached whole killed the operator):

- Children (CHILD_TYPES) are kept only if they carry a controller ownerReference to
  one of the appinfra kinds, matching their owner labels; anything else the label
  selector lets through is dropped (and an object that loses that reference leaves
  the cache). A miss then means "no child of ours", which is exactly what the
  reconcilers need: writes create what is absent and find a foreign object on the
  409. Not checked: that the referenced owner exists or its uid, because children
  are often listed before their owners and a dropped child would cost a create, a
  409 and a GET at every start.
- ConfigMap and Secret values are kept as a digest per key (kube/diff.py), never as
  values: readers only detect change, and a Secret's values do not belong in the
  operator's memory. Readers that need values GET them.
- On every type but the appinfra kinds, strings longer than diff.LONG (annotations,
  env values, commands) are kept as digests: reconcilers read names, selectors,
  probes and status from targets, and only compare the rest.

Store.shrink gives that form; informers apply it in their own thread as objects
arrive, so a LIST page or a watch batch of foreign objects never reaches the loop.
"""

from __future__ import annotations

import json
import re
import threading
import zlib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from appinfra.api.names import API_VERSION, GROUP, KINDS, OWNER_KIND, OWNER_NAME, Obj
from appinfra.kube.diff import LONG, PAYLOAD, digest_payload, shorten
from appinfra.kube.resources import (
    CONFIGMAP,
    HPA,
    NETWORKPOLICY,
    PDB,
    PODMONITOR,
    PROMETHEUSRULE,
    SECRET,
    SERVICEMONITOR,
    Resource,
)

Key = tuple[str, str]  # (namespace, name)
OwnerKey = tuple[str, str, str]  # (namespace, owner kind, owner name)

OUR_MANAGERS = "appinfra"  # field managers whose managedFields entries are kept
# `kubectl apply` (client-side) copies the whole manifest into this annotation, which
# doubles such objects; nothing here reads it.
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"

CHILD_TYPES = frozenset(
    {CONFIGMAP, SECRET, HPA, NETWORKPOLICY, PDB, SERVICEMONITOR, PODMONITOR, PROMETHEUSRULE}
)
PAYLOAD_TYPES = frozenset({CONFIGMAP, SECRET})
OWNER_KINDS = frozenset(KINDS)
# A JSON string literal longer than LONG (escapes counted as one character): objects
# without one skip the walk that shortens them.
_LONG_STRING = re.compile(rb'"(?:[^"\\]|\\.){%d}' % (LONG + 1))


def _owner_of(obj: Obj) -> OwnerKey | None:
    meta = obj.get("metadata", {})
    labels = meta.get("labels") or {}
    kind, name = labels.get(OWNER_KIND), labels.get(OWNER_NAME)
    return (meta.get("namespace", ""), kind, name) if kind and name else None


def owned_by_appinfra(obj: Obj) -> bool:
    """Whether `obj` has a controller ownerReference to an appinfra resource, the
    one its owner labels name (the owner index goes by the labels)."""
    meta = obj.get("metadata") or {}
    labels = meta.get("labels") or {}
    for ref in meta.get("ownerReferences") or ():
        if (
            ref.get("controller") is True
            and ref.get("apiVersion") == API_VERSION
            and ref.get("kind") in OWNER_KINDS
            and labels.get(OWNER_KIND) == ref.get("kind")
            and labels.get(OWNER_NAME) == ref.get("name")
        ):
            return True
    return False


@dataclass(frozen=True, slots=True)
class _Entry:
    uid: str
    resource_version: str
    owner: OwnerKey | None
    blob: bytes  # the object as compact JSON, zlib-compressed (fastest level)

    def obj(self) -> Obj:
        parsed: Obj = json.loads(zlib.decompress(self.blob))
        return parsed


class Store:
    def __init__(
        self,
        keep_managed_fields: Iterable[Resource] = (),
        children: Iterable[Resource] = CHILD_TYPES,
    ) -> None:
        self._lock = threading.Lock()
        self._objects: dict[Resource, dict[Key, _Entry]] = defaultdict(dict)
        self._owned: dict[Resource, defaultdict[OwnerKey, set[str]]] = defaultdict(
            lambda: defaultdict(set)
        )
        self._primed: set[Resource] = set()
        # Types whose readers need our own managers' managedFields entries.
        self._keep_managed_fields = frozenset(keep_managed_fields)
        # Types cached only as children of an appinfra resource.
        self._children = frozenset(children)

    def shrink(self, res: Resource, obj: Obj) -> Obj | None:
        """What the cache keeps of `obj`, or None if it keeps nothing (not our child).
        Idempotent, thread-safe and pure: informers call it in their threads."""
        shrunk = self._shrink(res, obj)
        return None if shrunk is None else shrunk[0]

    def _shrink(self, res: Resource, obj: Obj) -> tuple[Obj, bytes] | None:
        """shrink(), and the result as compact JSON."""
        if res in self._children and not owned_by_appinfra(obj):
            return None
        meta = obj.get("metadata", {})
        if "managedFields" in meta:
            kept = (
                [
                    m
                    for m in meta["managedFields"] or ()
                    if str(m.get("manager", "")).startswith(OUR_MANAGERS)
                ]
                if res in self._keep_managed_fields
                else []
            )
            meta = {k: v for k, v in meta.items() if k != "managedFields"}
            if kept:
                meta["managedFields"] = kept
            obj = {**obj, "metadata": meta}
        if LAST_APPLIED in (meta.get("annotations") or {}):
            annotations = {k: v for k, v in meta["annotations"].items() if k != LAST_APPLIED}
            meta = {**meta, "annotations": annotations}
            obj = {**obj, "metadata": meta}
        if res in PAYLOAD_TYPES and any(f in obj for f in PAYLOAD):
            obj = digest_payload(obj)
        text = _json(obj)
        if res.group != GROUP and _LONG_STRING.search(text):
            obj = shorten(obj)
            text = _json(obj)
        return obj, text

    def _entry(self, res: Resource, obj: Obj) -> _Entry | None:
        shrunk = self._shrink(res, obj)
        if shrunk is None:
            return None
        kept, text = shrunk
        meta = kept.get("metadata", {})
        blob = zlib.compress(text, 1)
        return _Entry(meta.get("uid", ""), meta.get("resourceVersion", ""), _owner_of(kept), blob)

    def _put(self, res: Resource, entry: _Entry, key: Key) -> _Entry | None:
        old = self._objects[res].get(key)
        if old is not None and old.owner is not None:
            self._owned[res][old.owner].discard(key[1])
        self._objects[res][key] = entry
        if entry.owner is not None:
            self._owned[res][entry.owner].add(key[1])
        return old

    def upsert(self, res: Resource, obj: Obj) -> Obj | None:
        """From a watch event (events arrive in order, so the latest always wins).
        Returns the previous version. An object shrink() keeps nothing of is removed."""
        entry = self._entry(res, obj)
        if entry is None:
            return self.remove(res, *_key(obj))
        with self._lock:
            old = self._put(res, entry, _key(obj))
        return None if old is None else old.obj()

    def write_through(self, res: Resource, obj: Obj) -> None:
        """From our own write's response, unless a newer version already came by watch.

        The response can lose a race with the watch event of a later change (the
        controller-manager updating status right after our apply); overwriting that
        would leave the cache one version behind until the next event. Kubernetes
        calls resourceVersions opaque, but every etcd3-backed server issues them from
        etcd's increasing revision; anything else is simply overwritten.
        """
        key = _key(obj)
        entry = self._entry(res, obj)
        if entry is None:  # e.g. a Merge into a user's Secret: never cached, never stale
            self.remove(res, *key)
            return
        with self._lock:
            current = self._objects[res].get(key)
            if current is not None and _newer(current, entry):
                return
            self._put(res, entry, key)

    def remove(self, res: Resource, namespace: str, name: str) -> Obj | None:
        with self._lock:
            old = self._objects[res].pop((namespace, name), None)
            if old is not None and old.owner is not None:
                self._owned[res][old.owner].discard(name)
        return None if old is None else old.obj()

    def mark_primed(self, res: Resource) -> None:
        """A complete LIST of `res` is loaded: from now on a miss means the object is absent."""
        with self._lock:
            self._primed.add(res)

    def keys(self, res: Resource) -> list[Key]:
        with self._lock:
            return list(self._objects[res])

    def primed(self, res: Resource) -> bool:
        return res in self._primed

    def get(self, res: Resource, namespace: str, name: str) -> Obj | None:
        with self._lock:
            entry = self._objects[res].get((namespace, name))
        return None if entry is None else entry.obj()

    def version(self, res: Resource, namespace: str, name: str) -> str | None:
        """The cached object's resourceVersion, without parsing the object."""
        with self._lock:
            entry = self._objects[res].get((namespace, name))
        return None if entry is None else entry.resource_version

    def owned(self, res: Resource, namespace: str, kind: str, name: str) -> list[Obj]:
        """Cached objects of `res` labelled as owned by (kind, name) in `namespace`."""
        with self._lock:
            names = sorted(self._owned[res].get((namespace, kind, name), ()))
            entries = [self._objects[res][(namespace, n)] for n in names]
        return [e.obj() for e in entries]

    def count(self, res: Resource) -> int:
        with self._lock:
            return len(self._objects[res])


def _key(obj: Obj) -> Key:
    meta = obj.get("metadata", {})
    return (meta.get("namespace", ""), meta["name"])


def _json(obj: Obj) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def _newer(a: _Entry, b: _Entry) -> bool:
    """Whether `a` is a strictly later version of the same object than `b`."""
    if a.uid != b.uid:
        return False
    try:
        return int(a.resource_version) > int(b.resource_version)
    except ValueError:
        return False
