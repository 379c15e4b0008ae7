"""Writing: apply only what changed, create children without taking anything over,
remove what is no longer rendered. Every write goes through the cache (write-through)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from appinfra.api.names import APPLIED_ANNOTATION, Obj
from appinfra.controller.reads import Reads
from appinfra.kube.client import KubeError
from appinfra.kube.diff import up_to_date, with_hash
from appinfra.kube.ownership import controlled_by
from appinfra.kube.resources import BY_KIND, Resource
from appinfra.render.common import Owner


class Taken(Exception):
    """A child's name is held by an object this resource did not create: reported as
    Accepted=False, reason Conflicted, and the object is left exactly as it is."""

    def __init__(self, kind: str, name: str, owner: Owner, hint: str = ""):
        self.kind, self.name = kind, name
        super().__init__(
            f"{kind} {name} already exists and was not created by this {owner.kind}; "
            + (hint or f"appinfra never modifies it: delete or rename that {kind}, "
               f"or change this {owner.kind} so its {kind} gets another name")
        )  # fmt: skip


class Writes(Reads):
    def ensure(
        self,
        intent: Obj,
        manager: str,
        annotation: str = APPLIED_ANNOTATION,
        live: Obj | None = None,
    ) -> tuple[Obj, bool]:
        """Apply `intent` unless the live object already matches it. Returns (live, changed).

        `live`: the current object when the caller already has it (e.g. from a GET,
        for an object no watch covers)."""
        return self._apply_changed(with_hash(intent, annotation), manager, annotation, live)

    def _apply_changed(
        self, intent: Obj, manager: str, annotation: str, live: Obj | None
    ) -> tuple[Obj, bool]:
        """`ensure` for an intent that already carries its hash."""
        res = BY_KIND[intent["kind"]]
        meta = intent["metadata"]
        if live is None:
            live = self.read(res, meta["namespace"], meta["name"])
        if up_to_date(live, intent, annotation):
            assert live is not None
            return live, False
        out = self.kube.apply(res, intent, manager)
        self.store.write_through(res, out)  # write-through: the next reconcile sees it at once
        return out, True

    def ensure_child(
        self,
        owner: Owner,
        intent: Obj,
        manager: str,
        annotation: str = APPLIED_ANNOTATION,
        *,
        live: Obj | None = None,
        mine: Callable[[Obj], bool] | None = None,
        hint: str = "",
    ) -> tuple[Obj, bool]:
        """Like `ensure`, for an object this resource creates: written only if it is
        absent (then created, never applied: an apply would take over an object made
        in the meantime) or carries `owner`'s controller reference (`mine` decides
        instead where there is none, e.g. an orphaned or merged-into Secret).
        Anything else raises Taken and is never touched."""
        res = BY_KIND[intent["kind"]]
        intent = with_hash(intent, annotation)
        namespace, name = intent["metadata"]["namespace"], intent["metadata"]["name"]
        if live is None:
            live = self.read(res, namespace, name)
        if live is None:
            live, created = self._create(res, intent, manager)
            if created:
                return live, True
        if not (mine(live) if mine else controlled_by(live, owner.uid)):
            raise Taken(res.kind, name, owner, hint)
        # The uid makes the apply a precondition on this very object: if it was deleted
        # and someone else's took its name since we read it, the server refuses (409).
        if uid := live["metadata"].get("uid"):
            intent = {**intent, "metadata": {**intent["metadata"], "uid": uid}}
        return self._apply_changed(intent, manager, annotation, live)

    def _create(self, res: Resource, intent: Obj, manager: str) -> tuple[Obj, bool]:
        """Create `intent`: (it, True); or, if the name was taken meanwhile, (the live
        object, False): it is not in the cache, which holds only our own children, so
        whose it is must be read."""
        meta = intent["metadata"]
        try:
            out = self.kube.create_applied(res, intent, manager)
        except KubeError as exc:
            if not exc.already_exists:
                raise
            live = self.kube.get(res, meta["namespace"], meta["name"])
            if live is None:
                raise  # deleted again meanwhile: the retry creates it
            return live, False
        self.store.write_through(res, out)
        return out, True

    def prune(self, owner: Owner, kinds: Iterable[Resource], keep: Iterable[Obj]) -> list[str]:
        """Delete children of `owner` that are no longer rendered. Returns what went."""
        wanted = {(o["kind"], o["metadata"]["name"]) for o in keep}
        gone = []
        for res in kinds:
            for obj in self.owned(res, owner):
                meta = obj["metadata"]
                if (res.kind, meta["name"]) in wanted or not controlled_by(obj, owner.uid):
                    continue  # labels alone can be copied; the controller reference cannot
                if self.kube.delete(res, meta["namespace"], meta["name"], uid=meta.get("uid")):
                    gone.append(f"{res.kind}/{meta['name']}")
                self.store.remove(res, meta["namespace"], meta["name"])
        return gone

    def release(self, res: Resource, namespace: str, name: str, manager: str) -> None:
        """Give up every field `manager` owns on an object we do not own.

        An apply with an empty intent makes the API server remove exactly the fields
        this manager set, leaving everyone else's.
        """
        if self.read(res, namespace, name) is None:
            return
        empty = {
            "apiVersion": res.api_version,
            "kind": res.kind,
            "metadata": {"name": name, "namespace": namespace},
        }
        out = self.kube.apply(res, empty, manager)
        self.store.write_through(res, out)
