"""Machinery every kind's reconciler shares: the cache, the queues, applying only
what changed, removing what is no longer wanted, conflicts, status and Events.

One `Runtime` per operator process, created at start-up. Reconcilers are plain
synchronous functions (the kubernetes client blocks) run in worker threads.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from appinfra.api.base import ApiModel
from appinfra.api.kinds import Kind
from appinfra.api.operatorconfig import OperatorConfig
from appinfra.api.validation import parse_spec
from appinfra.kube.cache import Store
from appinfra.kube.client import Kube, KubeError, Obj
from appinfra.kube.conditions import ACCEPTED, Condition, merge_conditions
from appinfra.kube.conflicts import effective
from appinfra.kube.diff import APPLIED_ANNOTATION, up_to_date, with_hash
from appinfra.kube.ownership import controlled_by
from appinfra.kube.resources import BY_KIND, DEPLOYMENT, Resource
from appinfra.kube.targets import TargetIndex
from appinfra.kube.workqueue import Requeue, WorkQueue
from appinfra.observability import events
from appinfra.observability.logging import reconciling
from appinfra.observability.metrics import RECONCILE_DURATION, RECONCILE_TOTAL
from appinfra.providers.registry import Providers
from appinfra.render.common import Owner

log = logging.getLogger("appinfra")

FINALIZER = "appinfra.dev/release"
# On our own resource: `<Kind>/<name>` of the target whose fields it wrote.
TARGET_CLAIM = "appinfra.dev/target"

Key = tuple[str, str]  # (namespace, name)
ReconcileFn = Callable[["Runtime", str, str], Requeue | None]
SpecT = TypeVar("SpecT", bound=ApiModel)


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


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Runtime:
    kube: Kube
    providers: Providers
    config: OperatorConfig = field(default_factory=OperatorConfig)
    # Deployments keep managedFields: HealthPolicy reads which probes our manager owns.
    store: Store = field(default_factory=lambda: Store(keep_managed_fields=(DEPLOYMENT,)))
    targets: TargetIndex = field(default_factory=TargetIndex)
    queues: dict[str, WorkQueue] = field(default_factory=dict)

    # --- scheduling -------------------------------------------------------

    def register(self, kind: str, reconcile: ReconcileFn, workers: int) -> None:
        def in_context(namespace: str, name: str) -> Requeue | None:
            with reconciling(kind, namespace, name):
                started = time.monotonic()
                try:
                    result = reconcile(self, namespace, name)
                except Exception as exc:
                    # Logged here, inside the context, so the line names the resource.
                    if isinstance(exc, KubeError):
                        log.warning("reconcile failed, will retry: %s", exc)
                        self._report_api_error(kind, namespace, name, exc)
                    else:
                        log.exception("reconcile failed, will retry")
                    raise
                log.debug("reconciled in %.3fs", time.monotonic() - started)
                return result

        async def run(key: Hashable) -> Requeue | None:
            namespace, name = cast(Key, key)
            with RECONCILE_DURATION.labels(kind).time():
                try:
                    result = await asyncio.to_thread(in_context, namespace, name)
                except Exception:
                    RECONCILE_TOTAL.labels(kind, "error").inc()
                    raise
            RECONCILE_TOTAL.labels(kind, "success").inc()
            return result

        # Grouped by namespace: one namespace's slow reconciles leave workers for others.
        self.queues[kind] = WorkQueue(run, workers=workers, group=lambda key: cast(Key, key)[0])

    def _report_api_error(self, kind: str, namespace: str, name: str, exc: KubeError) -> None:
        """Make an API refusal visible on the resource (best effort: it may be the
        status write itself that is refused). Conflicts are routine and only retried;
        a failure the handler already reported (apply_failed) keeps its message."""
        if exc.conflict or exc.reported:
            return
        res = BY_KIND[kind]
        body = self.store.get(res, namespace, name)
        if body is None:
            return
        message = f"the API server refused a request, retrying: {exc}"
        try:
            self.write_status(res, body, [Condition("Ready", False, "APIError", message)])
        except KubeError as again:
            log.warning("could not report the failure in status either: %s", again)

    def enqueue(self, kind: str, namespace: str, name: str, after: float = 0) -> None:
        queue = self.queues.get(kind)
        if queue is not None:
            queue.add((namespace, name), after)

    # --- reading ----------------------------------------------------------

    def read(self, res: Resource, namespace: str, name: str) -> Obj | None:
        """From the cache. A miss for a type primed at start-up means "absent"; otherwise
        it is confirmed with a GET (cheap, and never a write). A GET result is not
        cached: only watches fill the cache, so nothing unwatched is served stale."""
        obj = self.store.get(res, namespace, name)
        if obj is None and not self.store.primed(res):
            obj = self.kube.get(res, namespace, name)
        return obj

    def owned(self, res: Resource, owner: Owner) -> list[Obj]:
        """Cached children of `owner` of one resource type (watched by label selector)."""
        return self.store.owned(res, owner.namespace, owner.kind, owner.name)

    # --- writing ----------------------------------------------------------

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
            try:
                out = self.kube.create_applied(res, intent, manager)
            except KubeError as exc:
                if not exc.already_exists:
                    raise
                # Not in the cache (only our own children are) but there: whose is it?
                live = self.kube.get(res, namespace, name)
                if live is None:
                    raise  # deleted again meanwhile: the retry creates it
            else:
                self.store.write_through(res, out)
                return out, True
        if not (mine(live) if mine else controlled_by(live, owner.uid)):
            raise Taken(res.kind, name, owner, hint)
        # The uid makes the apply a precondition on this very object: if it was deleted
        # and someone else's took its name since we read it, the server refuses (409).
        if uid := live["metadata"].get("uid"):
            intent = {**intent, "metadata": {**intent["metadata"], "uid": uid}}
        return self._apply_changed(intent, manager, annotation, live)

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

    def claim_target(self, res: Resource, body: Obj, target: Resource | None, name: str) -> Obj:
        """Call before writing fields on a target we do not own (None: this reconcile
        writes none). Keeps the finalizer exactly while a target holds our fields, and
        notes on the resource which target that is, so that a changed targetRef (or a
        section that stopped writing there) releases the old target's fields first."""
        meta = body["metadata"]
        wanted = f"{target.kind}/{name}" if target is not None else None
        previous = self.claimed(body)
        finalizers = [f for f in meta.get("finalizers") or [] if f != FINALIZER]
        if wanted:
            finalizers.append(FINALIZER)
        noted = (meta.get("annotations") or {}).get(TARGET_CLAIM)
        if noted == wanted and finalizers == list(meta.get("finalizers") or []):
            return body
        if previous and previous != wanted:
            self._release_claim(body, previous)
        patch = {
            "metadata": {
                "finalizers": finalizers,
                "annotations": {TARGET_CLAIM: wanted},
                "resourceVersion": meta["resourceVersion"],
            }
        }
        out = self.kube.merge_patch(res, meta["namespace"], meta["name"], patch)
        self.store.write_through(res, out)
        return out

    def claimed(self, body: Obj) -> str | None:
        """`<Kind>/<name>` of the target holding our fields, if any. Resources from before
        the note existed hold the finalizer only: their target is the one in the spec."""
        meta = body["metadata"]
        noted = (meta.get("annotations") or {}).get(TARGET_CLAIM)
        if noted:
            return str(noted)
        if FINALIZER in (meta.get("finalizers") or []):
            _, kind, name = target_key(body)
            return f"{kind}/{name}"
        return None

    def _release_claim(self, body: Obj, claim: str) -> None:
        """Release our fields on the claimed target. Only the resource named in the
        target's `appinfra.dev/<kind>` annotation releases: the field manager is per
        kind, so a Conflicted loser releasing would strip the winner's fields."""
        kind, _, name = claim.partition("/")
        target = BY_KIND.get(kind)
        if target is None or not name:
            return
        owner = Owner.of(body)
        live = self.read(target, owner.namespace, name)
        annotations = (live or {}).get("metadata", {}).get("annotations") or {}
        if annotations.get(owner.target_annotation) == owner.name:
            self.release(target, owner.namespace, name, owner.field_manager)

    def write_status(
        self, res: Resource, body: Obj, conditions: list[Condition], **fields: Any
    ) -> bool:
        """Patch status only if a reader would see a difference. Returns whether it wrote."""
        meta = body["metadata"]
        old = body.get("status") or {}
        generation = int(meta.get("generation", 0))
        new: Obj = {
            "observedGeneration": generation,
            "conditions": merge_conditions(
                old.get("conditions", []), conditions, generation, now()
            ),
            **fields,
        }
        if all(old.get(k) == v for k, v in new.items()):
            return False
        out = self.kube.merge_patch(
            res, meta["namespace"], meta["name"], {"status": new}, subresource="status"
        )
        self.store.write_through(res, out)
        return True

    # --- conflicts ----------------------------------------------------------

    def winner(self, res: Resource, body: Obj) -> Obj:
        """The effective resource for its target: the oldest, ties broken by name."""
        namespace = body["metadata"]["namespace"]
        rivals = [body]
        for _, name in self.targets.attached((namespace, *target_key(body)[1:]), res.kind):
            rival = self.store.get(res, namespace, name)
            if rival is not None and not rival["metadata"].get("deletionTimestamp"):
                rivals.append(rival)
        return effective(rivals)

    def reject(self, res: Resource, body: Obj, reason: str, message: str) -> None:
        """Accepted=False (and so not Ready) with an actionable message; an Event on change."""
        changed = self.write_status(
            res,
            body,
            [
                Condition("Accepted", False, reason, message),
                Condition("Ready", False, reason, message),
            ],
        )
        if changed:
            self.event(body, reason, message, warning=True)

    def admit(self, res: Resource, kind: Kind[SpecT, Any], body: Obj) -> SpecT | None:
        """The parsed spec if it is valid and this resource is the effective one for its
        target; otherwise Accepted=False (Invalid or Conflicted) is reported and None."""
        spec, problems = parse_spec(kind, body)
        if spec is None:
            self.reject(res, body, "Invalid", "; ".join(map(str, problems)))
            return None
        rival = self.rival_message(res, body)
        if rival:
            self.reject(res, body, "Conflicted", rival)
            return None
        return spec

    def target(self, res: Resource, body: Obj, target: Resource, name: str) -> Obj | None:
        """The live target, or None after reporting TargetNotFound (a target watch or the
        resync brings the resource back when it appears)."""
        namespace = body["metadata"]["namespace"]
        live = self.read(target, namespace, name)
        if live is None:
            self.reject(
                res,
                body,
                "TargetNotFound",
                f"{target.kind} {name} not found in namespace {namespace}; "
                "it will be configured as soon as it is created",
            )
        return live

    def apply_failed(
        self, res: Resource, body: Obj, exc: KubeError, also: tuple[str, ...] = ()
    ) -> None:
        """Report a refused write: Ready (and the `also` condition types) False, an Event."""
        message = f"applying failed: {exc.message}"
        failed = [Condition(t, False, "ApplyFailed", message) for t in (*also, "Ready")]
        self.write_status(res, body, [ACCEPTED, *failed])
        exc.reported = True
        self.event(body, "ApplyFailed", message, warning=True)

    def rival_message(self, res: Resource, body: Obj) -> str | None:
        """None if `body` is the effective resource for its target, else why it is not."""
        target = target_key(body)
        winner = self.winner(res, body)
        if winner["metadata"]["name"] == body["metadata"]["name"]:
            return None
        return (
            f"{body['kind']} {winner['metadata']['name']} already targets {target[1]} "
            f"{target[2]} (the oldest wins); delete one of them or point this one elsewhere"
        )

    def release_target(self, res: Resource, body: Obj) -> None:
        """On deletion: give back our fields on the target we shaped, then let go."""
        meta = body["metadata"]
        if FINALIZER not in (meta.get("finalizers") or []):
            return
        claim = self.claimed(body)
        if claim:
            self._release_claim(body, claim)
        finalizers = [f for f in meta.get("finalizers") or [] if f != FINALIZER]
        patch = {"metadata": {"finalizers": finalizers, "resourceVersion": meta["resourceVersion"]}}
        self.kube.merge_patch(res, meta["namespace"], meta["name"], patch)

    def event(self, body: Obj, reason: str, message: str, warning: bool = False) -> None:
        events.emit(self.kube, body, reason, message, warning=warning)


def describe_changes(changed: list[str], deleted: list[str]) -> str:
    parts = []
    if changed:
        parts.append("applied " + ", ".join(changed))
    if deleted:
        parts.append("deleted " + ", ".join(deleted))
    return "; ".join(parts)


def target_key(body: Obj) -> tuple[str, str, str]:
    ref = (body.get("spec") or {}).get("targetRef") or {}
    return (str(ref.get("group", "apps")), str(ref.get("kind", "Deployment")), str(ref.get("name")))
