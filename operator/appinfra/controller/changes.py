"""A watch event applied to the cache and the target index, and the questions every
reconciler's event mapping asks of it: was it our own write, did anything that can
affect a render change?"""

from __future__ import annotations

from dataclasses import dataclass

from appinfra.api.names import Obj
from appinfra.kube.cache import LAST_APPLIED, Store
from appinfra.kube.diff import DIGESTS
from appinfra.kube.resources import OURS, Resource
from appinfra.kube.targets import Target, TargetIndex, target_of

_MEANINGFUL = ("generation", "labels", "deletionTimestamp")


@dataclass(frozen=True)
class Change:
    """One event of `res`: the object, its previous cached version, and for appinfra's own
    kinds the target it named before and names now (None: none, or gone)."""

    res: Resource
    gone: bool  # DELETED
    old: Obj | None
    obj: Obj
    echo: bool  # the event of our own write, whose response the cache already holds
    old_target: Target | None = None
    new_target: Target | None = None

    @property
    def namespace(self) -> str:
        return str(self.obj["metadata"]["namespace"])

    @property
    def name(self) -> str:
        return str(self.obj["metadata"]["name"])

    @property
    def meaningful(self) -> bool:
        """Deleted, or changed in spec or metadata (not status only)."""
        return self.gone or meaningful_change(self.old, self.obj)


def record(store: Store, targets: TargetIndex, res: Resource, event: dict[str, object]) -> Change:
    """Apply a watch event to the cache (and, for our kinds, to the target index)."""
    obj: Obj = event["object"]  # type: ignore[assignment]
    meta = obj["metadata"]
    gone = event["type"] == "DELETED"
    if gone:
        # A relist reports deletions it did not watch by name only: use what was cached.
        old = store.remove(res, meta["namespace"], meta["name"])
        change = Change(res, True, old, old or obj, False)
    elif (version := meta.get("resourceVersion")) and store.version(
        res, meta["namespace"], meta["name"]
    ) == version:
        change = Change(res, False, None, obj, True)  # the cache already holds this version
    else:
        change = Change(res, False, store.upsert(res, obj), obj, False)
    if res not in OURS.values():
        return change
    new_target = None if gone else target_of(obj)
    old_target = targets.set(res.kind, meta["namespace"], meta["name"], new_target)
    return Change(res, gone, change.old, change.obj, change.echo, old_target, new_target)


def meaningful_change(old: Obj | None, new: Obj) -> bool:
    """A change that can affect what we render: spec or metadata, not status."""
    if old is None:
        return True
    o, n = old["metadata"], new["metadata"]
    if any(o.get(k) != n.get(k) for k in _MEANINGFUL):
        return True
    # The cache drops kubectl's last-applied annotation; compare the rest.
    return _annotations(o) != _annotations(n)


def _annotations(meta: Obj) -> dict[str, str]:
    return {k: v for k, v in (meta.get("annotations") or {}).items() if k != LAST_APPLIED}


def child_changed(old: Obj | None, new: Obj) -> bool:
    """A change that may be drift from what we applied: metadata, spec (generation) or a
    ConfigMap's or Secret's data (cached as digests). Not a controller's status update
    (the HPA and disruption controllers write one for every new HPA and PDB): at a
    thousand profiles those were most of the operator's reconciles, every one a no-op."""
    if old is None or meaningful_change(old, new):
        return True
    if old["metadata"].get("ownerReferences") != new["metadata"].get("ownerReferences"):
        return True
    return any(old.get(k) != new.get(k) for k in ("data", "binaryData", "immutable", DIGESTS))
