"""Kubernetes Events on appinfra resources (what `kubectl describe` shows).

Posted with the operator's own client from a small background pool, so posting
never delays a reconcile. Posting is best effort: a failed Event is logged and
never fails a reconcile, and when the API server is slower than reconciles
produce Events, the backlog is bounded (MAX_PENDING) and the excess dropped and
counted (appinfra_events_dropped_total). A queued Event keeps only what it
needs from the resource (its reference), never the whole body. Messages never
include secret values: callers pass names, reasons and counts only.

Repeats are aggregated as client-go's event recorder does: the same (object,
type, reason, message) posted again patches the existing Event's `count` and
`lastTimestamp` instead of creating another one, so a failure retried with
backoff is one line in `kubectl describe` ("x12 over 5m"), not twelve. The series
are remembered in a bounded LRU (MAX_SERIES, as client-go's 4096); a series whose
Event is gone (the API server's event TTL, one hour by default) starts again at
count 1. `reportingInstance` is the pod (POD_NAME, set by the chart through the
Downward API; the hostname otherwise) and `reportingComponent` (core/v1's name
for events.k8s.io's reportingController) is REPORTING_CONTROLLER.
"""

from __future__ import annotations

import datetime
import logging
import os
import secrets
import socket
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from appinfra.api.names import GROUP
from appinfra.kube.client import Kube, KubeError
from appinfra.kube.resources import EVENT
from appinfra.observability.metrics import EVENTS_DROPPED

log = logging.getLogger(__name__)

COMPONENT = "appinfra"
REPORTING_CONTROLLER = f"{GROUP}/operator"
"""A qualified name, as events.k8s.io requires of reportingController."""
MAX_INSTANCE = 128
"""The API server's limit on reportingInstance."""
MAX_MESSAGE = 1024
MAX_PENDING = 1000
"""Events queued or being posted at most; more are dropped (each is at most a few hundred
bytes, so the backlog stays well under a megabyte)."""
MAX_SERIES = 4096
"""Event series remembered for aggregation (client-go's LRU size); each holds its key
(at most MAX_MESSAGE + a few names) and the Event's name: a few megabytes at most."""


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


def reporting_instance() -> str:
    """The pod posting (the chart sets POD_NAME from the Downward API), else the host."""
    return (os.environ.get("POD_NAME") or socket.gethostname() or COMPONENT)[:MAX_INSTANCE]


SeriesKey = tuple[str, ...]


@dataclass
class _Series:
    """One aggregated Event: its name once created, and how often it was posted."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    name: str = ""
    count: int = 0


class _SeriesCache:
    """A bounded LRU of series by key. Each series has its own lock, so the two poster
    threads never create two Events for one series, nor serialize unrelated ones."""

    def __init__(self, size: int):
        self.size = size
        self._lock = threading.Lock()
        self._items: OrderedDict[SeriesKey, _Series] = OrderedDict()

    def get(self, key: SeriesKey) -> _Series:
        with self._lock:
            series = self._items.get(key)
            if series is None:
                series = self._items[key] = _Series()
                while len(self._items) > self.size:
                    self._items.popitem(last=False)  # an evicted series starts again at 1
            else:
                self._items.move_to_end(key)
            return series

    def __len__(self) -> int:
        return len(self._items)


_series = _SeriesCache(MAX_SERIES)


def _key(ref: InvolvedObject, reason: str, message: str, kind: str) -> SeriesKey:
    # As client-go's getEventKey: the object (not its resourceVersion, which changes with
    # every status write), type, reason and message; the instance is always this process.
    return (ref.api_version, ref.kind, ref.namespace, ref.name, ref.uid, kind, reason, message)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _post(kube: Kube, ref: InvolvedObject, reason: str, message: str, warning: bool) -> None:
    message = message[:MAX_MESSAGE]
    kind = "Warning" if warning else "Normal"
    series = _series.get(_key(ref, reason, message, kind))
    with series.lock:
        stamp = _now()
        if series.name:
            try:
                patch = {"count": series.count + 1, "lastTimestamp": stamp}
                kube.merge_patch(EVENT, ref.namespace, series.name, patch)
                series.count += 1
                return
            except KubeError as exc:
                if not exc.not_found:
                    log.warning(
                        "could not count Event %s on %s/%s: %s", reason, ref.kind, ref.name, exc
                    )
                    return
                # The Event expired (event TTL) or was deleted: a new series.
        name = f"{ref.name}.{secrets.token_hex(8)}"
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": ref.namespace},
            "involvedObject": ref.to_api(),
            "reason": reason,
            "message": message,
            "type": kind,
            "source": {"component": COMPONENT},
            "reportingComponent": REPORTING_CONTROLLER,
            "reportingInstance": reporting_instance(),
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        try:
            kube.create(EVENT, ref.namespace, event)
        except KubeError as exc:
            log.warning("could not post Event %s on %s/%s: %s", reason, ref.kind, ref.name, exc)
            return
        series.name, series.count = name, 1
