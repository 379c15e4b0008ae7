"""Kubernetes Events on appinfra resources (what `kubectl describe` shows).

Posted with the operator's own client from a small background pool, so posting
never delays a reconcile. Posting is best effort: a failed Event is logged and
never fails a reconcile, and when the API server is slower than reconciles
produce Events, the backlog is bounded (MAX_PENDING) and the excess dropped and
counted (appinfra_events_dropped_total). A queued Event keeps only what it
needs from the resource (its reference), never the whole body. Messages never
include secret values: callers pass names, reasons and counts only.
"""

from __future__ import annotations

import datetime
import logging
import secrets
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from appinfra.kube.client import Kube, KubeError
from appinfra.kube.resources import EVENT
from appinfra.observability.metrics import EVENTS_DROPPED

log = logging.getLogger(__name__)

COMPONENT = "appinfra"
MAX_MESSAGE = 1024
MAX_PENDING = 1000
"""Events queued or being posted at most; more are dropped (each is at most a few hundred
bytes, so the backlog stays well under a megabyte)."""


# Two threads: Events are a side channel and must not slow reconciles down, nor pile
# up threads when the API server is slow.
_POSTER = ThreadPoolExecutor(max_workers=2, thread_name_prefix="appinfra-events")
_pending = threading.BoundedSemaphore(MAX_PENDING)


@dataclass(frozen=True)
class InvolvedObject:
    """The fields of a resource an Event refers to it by (core/v1 ObjectReference)."""

    api_version: str
    kind: str
    name: str
    namespace: str
    uid: str
    resource_version: str

    @classmethod
    def of(cls, body: dict[str, Any]) -> InvolvedObject:
        meta = body["metadata"]
        return cls(
            api_version=body["apiVersion"],
            kind=body["kind"],
            name=meta["name"],
            namespace=meta["namespace"],
            uid=meta.get("uid", ""),
            resource_version=meta.get("resourceVersion", ""),
        )

    def to_api(self) -> dict[str, str]:
        return {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "name": self.name,
            "namespace": self.namespace,
            "uid": self.uid,
            "resourceVersion": self.resource_version,
        }


def emit(kube: Kube, body: dict[str, Any], reason: str, message: str, *, warning: bool) -> None:
    """Queue an Event for posting; returns at once. Dropped (and counted) when MAX_PENDING
    Events are already waiting."""
    if not _pending.acquire(blocking=False):
        EVENTS_DROPPED.inc()
        return
    try:
        _POSTER.submit(
            _post_and_release, kube, InvolvedObject.of(body), reason, message[:MAX_MESSAGE], warning
        )
    except BaseException:
        _pending.release()
        raise


def _post_and_release(
    kube: Kube, ref: InvolvedObject, reason: str, message: str, warning: bool
) -> None:
    try:
        _post(kube, ref, reason, message, warning)
    finally:
        _pending.release()


def _post(kube: Kube, ref: InvolvedObject, reason: str, message: str, warning: bool) -> None:
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": f"{ref.name}.{secrets.token_hex(8)}",
            "namespace": ref.namespace,
        },
        "involvedObject": ref.to_api(),
        "reason": reason,
        "message": message[:MAX_MESSAGE],
        "type": "Warning" if warning else "Normal",
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "reportingInstance": COMPONENT,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }
    try:
        kube.create(EVENT, ref.namespace, event)
    except KubeError as exc:
        log.warning("could not post Event %s on %s/%s: %s", reason, ref.kind, ref.name, exc)
