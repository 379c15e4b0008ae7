"""Kubernetes Events on appinfra resources (what `kubectl describe` shows).

Posted with the operator's own client from a small background pool, so posting
never delays a reconcile. Posting is best effort: a failed Event is logged and
never fails a reconcile. Messages never include secret values: callers pass
names, reasons and counts only.
"""

from __future__ import annotations

import datetime
import logging
import secrets
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from appinfra.kube.client import Kube, KubeError
from appinfra.kube.resources import EVENT

log = logging.getLogger(__name__)

COMPONENT = "appinfra"
MAX_MESSAGE = 1024


# Two threads: Events are a side channel and must not slow reconciles down, nor pile
# up threads when the API server is slow.
_POSTER = ThreadPoolExecutor(max_workers=2, thread_name_prefix="appinfra-events")


def emit(kube: Kube, body: dict[str, Any], reason: str, message: str, *, warning: bool) -> None:
    """Queue an Event for posting; returns at once."""
    _POSTER.submit(_post, kube, body, reason, message, warning)


def _post(kube: Kube, body: dict[str, Any], reason: str, message: str, warning: bool) -> None:
    meta = body["metadata"]
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": f"{meta['name']}.{secrets.token_hex(8)}",
            "namespace": meta["namespace"],
        },
        "involvedObject": {
            "apiVersion": body["apiVersion"],
            "kind": body["kind"],
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta.get("uid", ""),
            "resourceVersion": meta.get("resourceVersion", ""),
        },
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
        kube.create(EVENT, meta["namespace"], event)
    except KubeError as exc:
        log.warning("could not post Event %s on %s/%s: %s", reason, body["kind"], meta["name"], exc)
