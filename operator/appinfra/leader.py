"""Leader election on a coordination.k8s.io/v1 Lease, as client-go does it.

Every replica watches (so its cache is warm), but only the Lease holder runs the
reconcile workers: a standby sends no writes. Expiry is judged by the local clock
since the Lease record last changed (not by the holder's timestamps), so clock
skew between nodes cannot hand the Lease to two replicas. On SIGTERM the holder
releases the Lease, so a standby takes over within one retry period instead of a
lease duration.

Never two writers: a standby may take the Lease once it has seen the record
unchanged for a lease duration. The holder stops writing earlier, once the *renew
deadline* (shorter than the duration) has passed since the start of its last
successful renew: it closes the process-wide write gate (kube/writegate.py), so
nothing it still has in progress reaches the API server, and calls `on_stopped`.
Measuring from the *start* of the renew is what makes the margin hold: the record
the standby watches changes only once that renew has reached the server, never
before it was sent. The deadline is checked while an attempt is still waiting on
the network, so a request that hangs cannot hold the holder past it.

Any error of a renew attempt (an API refusal, a dropped connection, a timeout, a
bug) is logged, counted and retried: the loop itself never ends on one. If it ends
anyway, `start()` reports it so the process can exit instead of running on without
an elector.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from collections import Counter as Tally
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from prometheus_client import Counter

from appinfra.kube.client import Kube, KubeError
from appinfra.kube.resources import Resource
from appinfra.kube.writegate import WRITES, WriteGate
from appinfra.observability.metrics import LEADER

log = logging.getLogger("appinfra.leader")

LEASE = Resource("coordination.k8s.io", "v1", "leases", "Lease")

ELECTION_ERRORS = Counter(
    "appinfra_leader_election_errors_total",
    "Failed leader election attempts (acquire or renew), by error type.",
    ["error"],
)

Outcome = Literal["ours", "theirs", "error"]
T = TypeVar("T")
Blocking = Callable[[Callable[[], T]], Awaitable[T]]
Pause = Callable[["asyncio.Future[Any] | None", float], Awaitable[None]]

NOT_LEADER = "this replica does not hold the leader lease"


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

    def __post_init__(self) -> None:
        # The margin between the two is what keeps an unrenewed holder from writing
        # while a standby may already lead.
        if not 0 < self.retry_period < self.renew_deadline < self.duration:
            raise ValueError("leader election needs retry period < renew deadline < duration")

    @property
    def request_timeout(self) -> float:
        """Per request of an attempt (a GET and a PUT): both fit in one deadline."""
        return self.renew_deadline / 2


async def _wait(fut: asyncio.Future[Any] | None, seconds: float) -> None:
    """Sleep `seconds`, or less if `fut` completes first."""
    if fut is None:
        await asyncio.sleep(seconds)
    else:
        await asyncio.wait({fut}, timeout=seconds)


async def _in_thread(fn: Callable[[], T]) -> T:
    return await asyncio.to_thread(fn)


RELEASE_ATTEMPTS = 3


class LeaderElector:
    def __init__(
        self,
        kube: Kube,
        config: LeaseConfig,
        clock: Callable[[], float] = time.monotonic,
        *,
        gate: WriteGate = WRITES,
        blocking: Blocking[Outcome] = _in_thread,
        pause: Pause = _wait,
    ):
        self.kube = kube
        self.cfg = config
        self.clock = clock
        self.gate = gate
        self._blocking = blocking
        self._pause = pause
        self.leading = False
        self.errors: Tally[str] = Tally()  # failed attempts by error type
        self.shutting_down = False
        self._observed: tuple[str, str] | None = None  # (holder, renewTime) last seen
        self._observed_at = 0.0
        self._last_renew = 0.0  # clock() when the last successful attempt *started*

    # --- one attempt (blocking; run in a thread) -------------------------------

    def try_acquire_or_renew(self) -> Outcome:
        """One attempt: "ours" (acquired or renewed), "theirs" (another replica holds
        it) or "error" (failed, whatever the reason: logged and counted, never raised)."""
        try:
            return self._acquire_or_renew()
        except Exception as exc:  # every kind: a dropped connection must not end election
            kind = type(exc).__name__
            self.errors[kind] += 1
            ELECTION_ERRORS.labels(kind).inc()
            # Lease requests carry no user data: the text is the server's or the HTTP
            # client's (host, path, errno), needed to tell an outage from a refusal.
            log.warning("leader election attempt failed (%s): %s", kind, str(exc)[:300])
            return "error"

    def _acquire_or_renew(self) -> Outcome:
        cfg = self.cfg
        now = _micro_now()
        mine: dict[str, Any] = {
            "holderIdentity": cfg.identity,
            "leaseDurationSeconds": int(cfg.duration),
            "renewTime": now,
        }
        lease = self.kube.get(LEASE, cfg.namespace, cfg.name)
        if lease is None:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": cfg.name, "namespace": cfg.namespace},
                "spec": {**mine, "acquireTime": now, "leaseTransitions": 0},
            }
            self.kube.create(LEASE, cfg.namespace, body)
            return "ours"
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        record = (holder, str(spec.get("renewTime")))
        if record != self._observed:
            self._observed, self._observed_at = record, self.clock()
        expired = self.clock() - self._observed_at > float(
            spec.get("leaseDurationSeconds") or cfg.duration
        )
        if holder and holder != cfg.identity and not expired:
            return "theirs"
        if holder != cfg.identity:
            mine["acquireTime"] = now
            mine["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
        lease["spec"] = {**spec, **mine}
        self.kube.request(
            "PUT", LEASE.path(cfg.namespace, cfg.name), body=lease, resource="leases"
        )  # resourceVersion in the body: a concurrent winner makes this a 409
        return "ours"

    def release(self) -> None:
        """Give the Lease up now (on shutdown), if we hold it."""
        self.gate.close(NOT_LEADER)  # shutting down: nothing may be written after this
        if not self.leading:
            return
        # A renew still in flight on its thread (cancelling its task cannot stop it) may
        # land between our GET and PUT: that is a 409, and reading again settles it.
        for attempt in range(RELEASE_ATTEMPTS):
            try:
                lease = self.kube.get(LEASE, self.cfg.namespace, self.cfg.name)
                if lease and (lease.get("spec") or {}).get("holderIdentity") == self.cfg.identity:
                    lease["spec"].update(
                        {"holderIdentity": "", "leaseDurationSeconds": 1,
                         "renewTime": _micro_now()}
                    )  # fmt: skip
                    self.kube.request(
                        "PUT", LEASE.path(self.cfg.namespace, self.cfg.name), body=lease,
                        resource="leases",
                    )  # fmt: skip
                    log.info("released the leader lease %s/%s", self.cfg.namespace, self.cfg.name)
                break
            except KubeError as exc:
                if exc.conflict and attempt + 1 < RELEASE_ATTEMPTS:
                    continue
                log.warning("could not release the leader lease (KubeError): %s", exc)
                break
            except Exception as exc:  # best effort: the Lease then simply expires
                log.warning("could not release the leader lease (%s): %s", type(exc).__name__, exc)
                break
        self._set(False)

    def _set(self, leading: bool) -> None:
        self.leading = leading
        LEADER.set(1 if leading else 0)

    # --- the loop ----------------------------------------------------------------

    def start(
        self,
        on_started: Callable[[], Awaitable[None]],
        on_stopped: Callable[[], Awaitable[None]],
        on_ended: Callable[[], None],
    ) -> asyncio.Task[None]:
        """`run` as a task. If that task ever ends other than after `on_stopped` or at
        shutdown (`shutting_down` set first), writes are refused, the end is logged
        at error level and `on_ended` is called: without an elector this replica can
        neither keep nor give up leadership safely, so it must not run on."""
        task = asyncio.create_task(self.run(on_started, on_stopped), name="leader-election")

        def ended(task: asyncio.Task[None]) -> None:
            if self.shutting_down:
                return
            if task.cancelled():
                why = "was cancelled"
            elif (exc := task.exception()) is not None:
                why = f"failed ({type(exc).__name__})"
                log.error("leader election failed", exc_info=exc)
            else:
                return  # leadership was lost and on_stopped already called
            self.gate.close(NOT_LEADER)
            self._set(False)
            log.error("leader election %s; stopping the operator", why)
            on_ended()

        task.add_done_callback(ended)
        return task

    async def run(
        self,
        on_started: Callable[[], Awaitable[None]],
        on_stopped: Callable[[], Awaitable[None]],
    ) -> None:
        """Acquire, then renew every retry period. `on_started` when elected; once
        leadership is lost (or cannot be confirmed within the renew deadline), writes
        are refused, `on_stopped` is called and this returns: the process is expected
        to stop and come back as a standby, not to lead again with stale state."""
        self.gate.close(NOT_LEADER)
        self._set(False)
        while True:
            begun = self.clock()
            attempt = asyncio.ensure_future(self._blocking(self.try_acquire_or_renew))
            while not attempt.done():
                if self._past_deadline():
                    await self._step_down(on_stopped, "could not renew within the deadline")
                    return
                await self._pause(attempt, self._next_wait(self.cfg.retry_period))
            outcome = attempt.result()
            if outcome == "ours" and self.clock() - begun >= self.cfg.renew_deadline:
                # So slow that the Lease may be another's by now: not a renew to count on.
                log.warning("leader election attempt succeeded only after the renew deadline")
                outcome = "error"
            if outcome == "ours":
                self._last_renew = begun
                if not self.leading:
                    log.info("became the leader (lease %s/%s)", self.cfg.namespace, self.cfg.name)
                    self._set(True)
                    self.gate.open()
                    await on_started()
            elif outcome == "theirs" and self.leading:
                await self._step_down(on_stopped, "another replica holds the lease")
                return
            next_attempt = begun + self.cfg.retry_period
            while True:
                if self._past_deadline():
                    await self._step_down(on_stopped, "could not renew within the deadline")
                    return
                if (left := next_attempt - self.clock()) <= 0:
                    break
                await self._pause(None, self._next_wait(left))

    def _past_deadline(self) -> bool:
        return self.leading and self.clock() - self._last_renew >= self.cfg.renew_deadline

    def _next_wait(self, limit: float) -> float:
        """`limit`, or less when leading: wake up no later than the renew deadline."""
        if not self.leading:
            return limit
        return max(0.0, min(limit, self._last_renew + self.cfg.renew_deadline - self.clock()))

    async def _step_down(self, on_stopped: Callable[[], Awaitable[None]], why: str) -> None:
        # The gate first: from here on nothing of this process reaches the API server,
        # whatever on_stopped still has to wait for.
        self.gate.close(NOT_LEADER)
        self._set(False)
        log.error(
            "lost the leader lease %s/%s: %s; writes stopped",
            self.cfg.namespace, self.cfg.name, why,
        )  # fmt: skip
        await on_stopped()
