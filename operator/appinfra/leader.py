"""Leader election on a coordination.k8s.io/v1 Lease, as client-go does it.

Every replica watches (so its cache is warm), but only the Lease holder runs the
reconcile workers: a standby sends no writes. Expiry is judged by the local clock
since the Lease record last changed (not by the holder's timestamps), so clock
skew between nodes cannot hand the Lease to two replicas. A holder that cannot
renew before the Lease expires stops leading at once; on SIGTERM it releases the
Lease, so a standby takes over within one retry period instead of a lease duration.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from appinfra.kube.client import Kube, KubeError
from appinfra.kube.resources import Resource
from appinfra.observability.metrics import LEADER

log = logging.getLogger("appinfra.leader")

LEASE = Resource("coordination.k8s.io", "v1", "leases", "Lease")


def _micro_now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class LeaseConfig:
    namespace: str
    name: str
    identity: str
    duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0


class LeaderElector:
    def __init__(
        self, kube: Kube, config: LeaseConfig, clock: Callable[[], float] = time.monotonic
    ):
        self.kube = kube
        self.cfg = config
        self.clock = clock
        self.leading = False
        self._observed: tuple[str, str] | None = None  # (holder, renewTime) last seen
        self._observed_at = 0.0
        self._last_renew = 0.0

    # --- one attempt (blocking; run in a thread) -------------------------------

    def try_acquire_or_renew(self) -> bool:
        cfg = self.cfg
        now = _micro_now()
        mine: dict[str, Any] = {
            "holderIdentity": cfg.identity,
            "leaseDurationSeconds": int(cfg.duration),
            "renewTime": now,
        }
        try:
            lease = self.kube.get(LEASE, cfg.namespace, cfg.name)
            if lease is None:
                body = {
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": {"name": cfg.name, "namespace": cfg.namespace},
                    "spec": {**mine, "acquireTime": now, "leaseTransitions": 0},
                }
                self.kube.create(LEASE, cfg.namespace, body)
                return True
            spec = lease.get("spec") or {}
            holder = spec.get("holderIdentity") or ""
            record = (holder, str(spec.get("renewTime")))
            if record != self._observed:
                self._observed, self._observed_at = record, self.clock()
            expired = self.clock() - self._observed_at > float(
                spec.get("leaseDurationSeconds") or cfg.duration
            )
            if holder and holder != cfg.identity and not expired:
                return False
            if holder != cfg.identity:
                mine["acquireTime"] = now
                mine["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
            lease["spec"] = {**spec, **mine}
            self.kube.request(
                "PUT", LEASE.path(cfg.namespace, cfg.name), body=lease, resource="leases"
            )  # resourceVersion in the body: a concurrent winner makes this a 409
            return True
        except KubeError as exc:
            log.warning("leader election: %s", exc)
            return False

    def release(self) -> None:
        """Give the Lease up now (on shutdown), if we hold it."""
        if not self.leading:
            return
        try:
            lease = self.kube.get(LEASE, self.cfg.namespace, self.cfg.name)
            if lease and (lease.get("spec") or {}).get("holderIdentity") == self.cfg.identity:
                lease["spec"].update(
                    {"holderIdentity": "", "leaseDurationSeconds": 1, "renewTime": _micro_now()}
                )
                self.kube.request(
                    "PUT", LEASE.path(self.cfg.namespace, self.cfg.name), body=lease,
                    resource="leases",
                )  # fmt: skip
                log.info("released the leader lease %s/%s", self.cfg.namespace, self.cfg.name)
        except KubeError as exc:
            log.warning("could not release the leader lease: %s", exc)
        self._set(False)

    def _set(self, leading: bool) -> None:
        self.leading = leading
        LEADER.set(1 if leading else 0)

    # --- the loop ----------------------------------------------------------------

    async def run(
        self,
        on_started: Callable[[], Awaitable[None]],
        on_stopped: Callable[[], Awaitable[None]],
    ) -> None:
        """Acquire, then renew every retry period; call the hooks on every transition."""
        self._set(False)
        while True:
            ok = await asyncio.to_thread(self.try_acquire_or_renew)
            now = self.clock()
            if ok:
                self._last_renew = now
                if not self.leading:
                    log.info("became the leader (lease %s/%s)", self.cfg.namespace, self.cfg.name)
                    self._set(True)
                    await on_started()
            elif self.leading and now - self._last_renew > self.cfg.renew_deadline:
                log.error("lost the leader lease: could not renew within the deadline")
                self._set(False)
                await on_stopped()
            await asyncio.sleep(self.cfg.retry_period)
