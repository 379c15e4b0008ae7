"""Running reconciles: one work queue per kind (which owns every retry and its backoff),
each reconcile in its logging context, timed and counted, and a failure nobody
reported yet made visible in the resource's status."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Hashable
from typing import cast

from appinfra.config import Tuning
from appinfra.controller.declaration import Controller, Key
from appinfra.controller.runtime import Runtime
from appinfra.kube.client import KubeError
from appinfra.kube.conditions import Condition
from appinfra.kube.workqueue import Requeue, TemporaryError, WorkQueue
from appinfra.observability.logging import reconciling
from appinfra.observability.metrics import RECONCILE_DURATION, RECONCILE_TOTAL

log = logging.getLogger("appinfra")


def work_queue(rt: Runtime, controller: Controller, tuning: Tuning) -> WorkQueue:
    """The queue of `controller`'s kind. Grouped by namespace: one namespace's slow
    reconciles leave workers for the others."""
    kind = controller.kind

    def in_context(namespace: str, name: str) -> Requeue | None:
        with reconciling(kind, namespace, name):
            started = time.monotonic()
            try:
                result = controller.reconcile(rt, namespace, name)
            except TemporaryError as exc:  # already in status: only logged
                log.warning("reconcile failed, will retry: %s", exc)
                raise
            except KubeError as exc:
                # Logged here, inside the context, so the line names the resource.
                log.warning("reconcile failed, will retry: %s", exc)
                _report(rt, controller, namespace, name, exc)
                raise
            except Exception:
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

    return WorkQueue(
        run,
        workers=tuning.workers,
        backoff=controller.backoff(tuning),
        group=lambda key: cast(Key, key)[0],
    )


def _report(rt: Runtime, controller: Controller, namespace: str, name: str, exc: KubeError) -> None:
    """Make an API refusal visible on the resource (best effort: it may be the status
    write itself that is refused). Conflicts are routine and only retried."""
    if exc.conflict:
        return
    body = rt.store.get(controller.resource, namespace, name)
    if body is None:
        return
    message = f"the API server refused a request, retrying: {exc}"
    try:
        rt.write_status(controller.resource, body, [Condition("Ready", False, "APIError", message)])
    except KubeError as again:
        log.warning("could not report the failure in status either: %s", again)
