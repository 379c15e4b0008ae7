"""May this resource act? Its spec is valid, it is the effective one for its target
(the oldest wins), and the target exists. Otherwise Accepted=False says why."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from appinfra.api.base import ApiModel
from appinfra.api.kinds import Kind
from appinfra.api.names import Obj
from appinfra.api.validation import parse_spec
from appinfra.controller.status import Status
from appinfra.kube.conflicts import effective
from appinfra.kube.resources import Resource
from appinfra.kube.targets import target_of
from appinfra.render import messages

SpecT = TypeVar("SpecT", bound=ApiModel)


class Admission(Status):
    def admit(
        self,
        res: Resource,
        kind: Kind[SpecT, Any],
        body: Obj,
        *,
        check: Callable[[SpecT], str | None] | None = None,
        hint: str = "",
    ) -> SpecT | None:
        """The parsed spec if it is valid and this resource is the effective one for its
        target; otherwise Accepted=False (Invalid or Conflicted) is reported and None.

        `check`: the kind's own validation against the operator's state (an Invalid
        message, or None). `hint`: added to the Conflicted message. A resource whose
        spec names no target has no rivals."""
        spec, problems = parse_spec(kind, body)
        invalid = "; ".join(map(str, problems)) if spec is None else check and check(spec)
        if spec is None or invalid:
            self.reject(res, body, "Invalid", str(invalid))
            return None
        rival = None if getattr(spec, "target_ref", True) is None else self.rival_message(res, body)
        if rival:
            self.reject(res, body, "Conflicted", rival + hint)
            return None
        return spec

    def winner(self, res: Resource, body: Obj) -> Obj:
        """The effective resource for its target: the oldest, ties broken by name."""
        namespace = body["metadata"]["namespace"]
        rivals = [body]
        for _, name in self.targets.attached(target_of(body), res.kind):
            rival = self.store.get(res, namespace, name)
            if rival is not None and not rival["metadata"].get("deletionTimestamp"):
                rivals.append(rival)
        return effective(rivals)

    def rival_message(self, res: Resource, body: Obj) -> str | None:
        """None if `body` is the effective resource for its target, else why it is not."""
        _, kind, name = target_of(body)
        winner = self.winner(res, body)
        if winner["metadata"]["name"] == body["metadata"]["name"]:
            return None
        return (
            f"{body['kind']} {winner['metadata']['name']} already targets {kind} "
            f"{name} (the oldest wins); delete one of them or point this one elsewhere"
        )

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
                messages.target_not_found(target.kind, name, namespace),
            )
        return live
