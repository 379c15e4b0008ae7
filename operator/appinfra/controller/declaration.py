"""What a reconciler declares about itself, next to its reconcile function, in the
manner of kubebuilder's SetupWithManager: the kind it reconciles (For), the children
it creates (Owns), the targets it shapes or reads, and any other watch with its own
event-to-key mapping. The manager (appinfra/manager.py) only wires these up."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from appinfra.api.names import OWNER_KIND, OWNER_NAME, Obj
from appinfra.config import Tuning
from appinfra.controller.changes import Change, child_changed
from appinfra.controller.runtime import Runtime
from appinfra.kube.backoff import Backoff
from appinfra.kube.resources import Resource
from appinfra.kube.workqueue import Requeue

Key = tuple[str, str]  # (namespace, name)
ReconcileFn = Callable[[Runtime, str, str], Requeue | None]
KeysFn = Callable[[Runtime, Change], Iterable[Key]]
"""An event-to-key mapping: which resources of the declaring kind a change concerns."""


@dataclass(frozen=True)
class Watch:
    resource: Resource
    keys: KeysFn


@dataclass(frozen=True)
class Controller:
    resource: Resource  # the kind reconciled (For)
    reconcile: ReconcileFn
    owns: tuple[Resource, ...] = ()  # children, found by their owner labels
    targets: tuple[Resource, ...] = ()  # what spec.targetRef may name
    # Reconcile on every change of the target, status included (not only spec/metadata).
    follows_target_status: bool = False
    watches: tuple[Watch, ...] = ()  # anything else, with its own mapping
    backoff: Callable[[Tuning], Backoff] = field(default=lambda _: Backoff())
    # Runs before our fields on the target are released (on deletion, and by uninstall).
    before_release: Callable[[Runtime, Obj], None] | None = None

    @property
    def kind(self) -> str:
        return self.resource.kind

    def all_watches(self) -> Iterator[Watch]:
        """Every (resource, mapping) this controller needs, its own kind first."""
        yield Watch(self.resource, self._own)
        for res in self.targets:
            yield Watch(res, self._target)
        for res in self.owns:
            yield Watch(res, self._child)
        yield from self.watches

    def _own(self, rt: Runtime, change: Change) -> Iterator[Key]:
        """Our own writes and status-only changes need no reconcile of the resource
        itself. A change of target or a deletion may hand the old target to a rival
        that was Conflicted: those reconcile too."""
        if change.gone or (not change.echo and change.meaningful):
            yield change.namespace, change.name
        old = change.old_target
        if old is not None and (old != change.new_target or _deleting(change)):
            for _, rival in rt.targets.attached(old, self.kind):
                yield change.namespace, rival

    def _target(self, rt: Runtime, change: Change) -> Iterator[Key]:
        if change.echo or not (change.meaningful or self.follows_target_status):
            return
        target = (change.namespace, change.res.kind, change.name)
        for _, name in rt.targets.attached(target, self.kind):
            yield change.namespace, name

    def _child(self, rt: Runtime, change: Change) -> Iterator[Key]:
        """A child changed or went away: its owner reconciles (and repairs drift). An
        object that is not (or no longer) our child arrives as DELETED by name (the
        informer's transform): if it was cached, its former owner reconciles."""
        if change.echo or not (change.gone or child_changed(change.old, change.obj)):
            return
        labels = change.obj["metadata"].get("labels") or {}
        if labels.get(OWNER_KIND) == self.kind and labels.get(OWNER_NAME):
            yield change.namespace, labels[OWNER_NAME]


def _deleting(change: Change) -> bool:
    return bool(change.obj["metadata"].get("deletionTimestamp"))


def same_target(kind: str) -> KeysFn:
    """A mapping for watching other appinfra kinds: the resources of `kind` on the
    target the changed one names (or named), for every change, status included."""

    def keys(rt: Runtime, change: Change) -> Iterator[Key]:
        for target in {change.old_target, change.new_target} - {None}:
            assert target is not None
            for _, name in rt.targets.attached(target, kind):
                yield change.namespace, name

    return keys
