"""Kubernetes Events on appinfra resources (what `kubectl describe` shows).

Posted with the operator's own client: synchronous from the worker thread, so an
Event is in the API server by the time status says what happened. Posting is best
effort: a failed Event is logged and never fails a reconcile. Messages never
include secret values: callers pass names, reasons and counts only.
"""

from __future__ import annotations

import datetime
import logging
import secrets
from typing import Any

from appinfra.kube.client import Kube, KubeError
from appinfra.kube.resources import EVENT

log = logging.getLogger(__name__)

COMPONENT = "appinfra"
MAX_MESSAGE = 1024


def emit(kube: Kube, body: dict[str, Any], reason: str, message: str, *, warning: bool) -> None:
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
