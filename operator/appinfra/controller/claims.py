"""Fields on a target appinfra does not own: which target holds ours (noted on the
resource), the finalizer that keeps them from being orphaned, and their release."""

from __future__ import annotations

from appinfra.api.names import FINALIZER, TARGET_CLAIM, Obj
from appinfra.controller.writes import Writes
from appinfra.kube.resources import BY_KIND, Resource
from appinfra.kube.targets import target_ref
from appinfra.render.common import Owner


class Claims(Writes):
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
            self._release_claim(body)
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
            _, kind, name = target_ref(body)
            return f"{kind}/{name}"
        return None

    def claimed_target(self, body: Obj) -> tuple[Resource, str] | None:
        """The claimed target as (resource type, name), if there is one we know."""
        kind, _, name = (self.claimed(body) or "").partition("/")
        target = BY_KIND.get(kind)
        return (target, name) if target is not None and name else None

    def _release_claim(self, body: Obj) -> None:
        """Release our fields on the claimed target. Only the resource named in the
        target's `appinfra.dev/<kind>` annotation releases: the field manager is per
        kind, so a Conflicted loser releasing would strip the winner's fields."""
        claimed = self.claimed_target(body)
        if claimed is None:
            return
        target, name = claimed
        owner = Owner.of(body)
        if names(self.read(target, owner.namespace, name), owner):
            self.release(target, owner.namespace, name, owner.field_manager)

    def release_target(self, res: Resource, body: Obj) -> None:
        """On deletion: give back our fields on the target we shaped, then let go."""
        meta = body["metadata"]
        if FINALIZER not in (meta.get("finalizers") or []):
            return
        self._release_claim(body)
        finalizers = [f for f in meta.get("finalizers") or [] if f != FINALIZER]
        patch = {"metadata": {"finalizers": finalizers, "resourceVersion": meta["resourceVersion"]}}
        self.kube.merge_patch(res, meta["namespace"], meta["name"], patch)


def names(target: Obj | None, owner: Owner) -> bool:
    """Whether `target`'s `appinfra.dev/<kind>` annotation names `owner`: it is the
    resource of its kind whose fields the target holds."""
    annotations = (target or {}).get("metadata", {}).get("annotations") or {}
    return bool(annotations.get(owner.target_annotation) == owner.name)
