"""Reading through the cache: what the watches hold, a GET only where they cannot tell."""

from __future__ import annotations

from appinfra.api.names import Obj
from appinfra.controller.base import RuntimeBase
from appinfra.kube.resources import Resource
from appinfra.render.common import Owner


class Reads(RuntimeBase):
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
