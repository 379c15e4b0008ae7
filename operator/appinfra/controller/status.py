"""What users see: status conditions (written only when they change) and Events."""

from __future__ import annotations

import datetime
from typing import Any, NoReturn

from appinfra.api.names import Obj
from appinfra.controller.claims import Claims
from appinfra.kube.client import KubeError
from appinfra.kube.conditions import ACCEPTED, Condition, merge_conditions
from appinfra.kube.resources import Resource
from appinfra.kube.workqueue import TemporaryError
from appinfra.observability import events


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Status(Claims):
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

    def apply_failed(
        self, res: Resource, body: Obj, exc: KubeError, also: tuple[str, ...] = ()
    ) -> None:
        """Report a refused write: Ready (and the `also` condition types) False, an Event.
        Then raises TemporaryError, unless the server refused the object itself
        (exc.invalid): the same request cannot succeed, so it returns, and the
        resource is tried again when its spec changes (or at the resync)."""
        message = f"applying failed: {exc.message}"
        failed = [Condition(t, False, "ApplyFailed", message) for t in (*also, "Ready")]
        self.write_status(res, body, [ACCEPTED, *failed])
        self.event(body, "ApplyFailed", message, warning=True)
        if not exc.invalid:
            retry(message, exc)

    def event(self, body: Obj, reason: str, message: str, warning: bool = False) -> None:
        events.emit(self.kube, body, reason, message, warning=warning)


def retry(message: str, cause: Exception | None = None) -> NoReturn:
    """Fail this reconcile, already reported: the work queue retries with backoff."""
    # Never chained to an exception being handled: a library's text stays out of logs.
    raise TemporaryError(message) from cause


def describe_changes(changed: list[str], deleted: list[str]) -> str:
    parts = []
    if changed:
        parts.append("applied " + ", ".join(changed))
    if deleted:
        parts.append("deleted " + ", ".join(deleted))
    return "; ".join(parts)
