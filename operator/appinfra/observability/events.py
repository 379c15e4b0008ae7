"""Kubernetes Events on appinfra resources, posted through kopf's event poster.

kopf batches and posts them in the background; from a worker thread the call is
handed to the operator's loop thread-safely. Messages never include secret values:
callers pass names, reasons and counts only.
"""

from __future__ import annotations

import logging
from typing import Any, cast

import kopf

log = logging.getLogger(__name__)


def emit(body: dict[str, Any], reason: str, message: str, *, warning: bool = False) -> None:
    try:
        kind = "Warning" if warning else "Normal"
        target = kopf.Body(cast(kopf.RawBody, body))
        kopf.event(target, type=kind, reason=reason, message=message)
    except LookupError:
        # Outside a running operator (offline tools, unit tests): nothing to post to.
        log.debug("event not posted (no operator context): %s %s", reason, message)
