"""What the operator watches, and which reconciles each change schedules.

kopf streams the appinfra kinds; our informers (kube/informer.py) stream targets
and children, which are most of the events. Every handler here only updates the
cache and enqueues keys, so a burst of events for one resource collapses into one
reconcile. Children are watched with a server-side label selector
(managed-by=appinfra), never by streaming every ConfigMap in the cluster. Anyone
can set that label, so it only narrows the stream: the cache keeps a child only if it
carries our controller ownerReference (kube/cache.py).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import random
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, cast

import kopf

from appinfra.api.operatorconfig import OperatorConfig
from appinfra.config import ConfigFile
from appinfra.controller import Runtime, target_key
from appinfra.handlers import healthpolicy, ratelimitpolicy, secretbinding, serviceprofile
from appinfra.kube.cache import LAST_APPLIED
from appinfra.kube.client import Kube, Obj, load_api_client
from appinfra.kube.credentials import provider_kube
from appinfra.kube.diff import DIGESTS
from appinfra.kube.informer import Event, Informer
from appinfra.kube.resources import (
    CONFIGMAP,
    DEPLOYMENT,
    HEALTHPOLICY,
    HPA,
    INGRESS,
    NETWORKPOLICY,
    PDB,
    RATELIMITPOLICY,
    SECRET,
    SECRETBINDING,
    SERVICEPROFILE,
    Resource,
)
from appinfra.leader import LeaderElector, LeaseConfig
from appinfra.observability.metrics import LEADER, MANAGED_OBJECTS
from appinfra.providers.registry import Providers
from appinfra.render.common import MANAGED_SELECTOR, OWNER_KIND, OWNER_NAME

log = logging.getLogger("appinfra")

WORKERS = int(os.environ.get("APPINFRA_WORKERS", "16"))
RESYNC_SECONDS = float(os.environ.get("APPINFRA_RESYNC_SECONDS", "600"))

CONFIG_POLL_SECONDS = float(os.environ.get("APPINFRA_CONFIG_POLL_SECONDS", "5"))
SHARED_READ_WINDOW = float(os.environ.get("APPINFRA_SHARED_READ_WINDOW_SECONDS", "60"))

RECONCILERS = {
    "ServiceProfile": serviceprofile.reconcile,
    "SecretBinding": secretbinding.reconcile,
    "HealthPolicy": healthpolicy.reconcile,
    "RateLimitPolicy": ratelimitpolicy.reconcile,
}
POLICIES: dict[str, Resource] = {
    "ServiceProfile": SERVICEPROFILE,
    "SecretBinding": SECRETBINDING,
    "HealthPolicy": HEALTHPOLICY,
    "RateLimitPolicy": RATELIMITPOLICY,
}
# Kinds whose status reflects the target's own status, so every Deployment change counts.
FOLLOWS_TARGET_STATUS = {"HealthPolicy"}
CHILDREN = (CONFIGMAP, HPA, NETWORKPOLICY, PDB, SECRET)


@dataclass
class _State:
    """The process-wide runtime plus a reverse index: target -> resources naming it."""

    rt: Runtime | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)  # empty: cluster-wide
    lease: LeaseConfig | None = None  # set: only the Lease holder runs the workers
    elector: LeaderElector | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    lost_leadership: bool = False
    informers: list[Informer] = field(default_factory=list)


State = _State()


def runtime() -> Runtime:
    if State.rt is None:
        raise RuntimeError("the operator runtime is not started")
    return State.rt


class _NoDiffBase(kopf.AnnotationsDiffBaseStorage):
    """appinfra has only on.event handlers, which never use diff bases; kopf still built
    one (a deep copy of the body) for every event: 16% of the operator's time at scale."""

    def build(self, **_: Any) -> kopf.BodyEssence:
        return cast(kopf.BodyEssence, {})


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.diffbase_storage = _NoDiffBase()
    settings.posting.enabled = False  # our Events are posted by observability/events.py
    settings.watching.server_timeout = 300
    # Memory: kopf lists the appinfra kinds in pages, and its per-object workers end
    # half a second after their last event instead of five. An idle worker keeps the
    # last body it handled: parsed, ~9x its JSON size, which during a cold start with
    # thousands of resources was the largest part of the operator's peak RSS
    # (153 -> 127 MiB with 1,000 profiles, health and rate-limit policies).
    settings.watching.chunk_size = 250
    settings.queueing.idle_timeout = 0.5
    # A connection per worker, per watch stream, and for the background posters.
    scopes: list[str | None] = list(State.namespaces) or [None]
    api = await asyncio.to_thread(load_api_client, WORKERS + 8 + len(INFORMED) * len(scopes))
    kube = Kube(api)
    config = ConfigFile(os.environ.get("APPINFRA_CONFIG", "/etc/appinfra/config.yaml"))
    await asyncio.to_thread(config.load)
    providers = Providers(config.current, provider_kube(kube), window=SHARED_READ_WINDOW)
    rt = Runtime(kube, providers, config.current)

    def reconfigure(new: OperatorConfig) -> None:
        providers.update(new)
        rt.config = new
        # Every binding re-checks store names and access; policies their default enforcement.
        for kind in ("SecretBinding", "RateLimitPolicy"):
            for namespace, name in rt.store.keys(POLICIES[kind]):
                loop.call_soon_threadsafe(rt.enqueue, kind, namespace, name)

    loop = asyncio.get_running_loop()
    config.on_change(reconfigure)
    # Reconcilers block on HTTP; one thread per worker so none waits for a thread.
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=WORKERS))
    State.rt = rt
    await _start_informers(rt, scopes)
    for kind, fn in RECONCILERS.items():
        rt.register(kind, fn, workers=WORKERS)
    if State.lease is None:
        _start_workers(rt)
    else:
        # Standby until elected: watches keep the cache warm and keys queue up. Lease
        # requests get a short timeout so that a hung connection costs a retry, not
        # the renew deadline.
        State.elector = LeaderElector(Kube(api, timeout=State.lease.request_timeout), State.lease)

        async def started() -> None:
            _start_workers(rt)

        async def stopped() -> None:
            ended()

        def ended() -> None:  # lost leadership, or the elector failed: exit non-zero
            State.lost_leadership = True
            State.stop.set()

        State.tasks.append(State.elector.start(started, stopped, ended))
    State.tasks.append(asyncio.create_task(_resync_forever(rt)))
    State.tasks.append(asyncio.create_task(_watch_config(config)))
    log.info("appinfra started: %d workers, resync every %.0fs", WORKERS, RESYNC_SECONDS)


async def _start_informers(rt: Runtime, scopes: list[str | None]) -> None:
    """Watch targets and children; returns once each type's first LIST is in the cache,
    so that from the first reconcile a cache miss means "absent" instead of costing a
    GET (one request per type instead of one per object)."""
    loop = asyncio.get_running_loop()
    listings = []
    for res, handle in INFORMED.items():
        listing = _Listing(rt, res, handle, set(scopes), loop)
        listings.append(listing)
        for scope in scopes:
            informer = Informer(
                rt.kube,
                res,
                functools.partial(listing.deliver, scope),
                functools.partial(rt.store.keys, res),
                namespace=scope,
                label_selector=MANAGED_SELECTOR if res in CHILDREN else "",
                # The label is anyone's to set: the cache's own rules decide what is
                # kept (children of ours only, digests instead of values), applied
                # in the informer's thread before anything piles up.
                transform=functools.partial(rt.store.shrink, res),
            )
            State.informers.append(informer)
            informer.start()
    await asyncio.gather(*(listing.done.wait() for listing in listings))
    log.info("cache primed: %d children, %d deployments",
             sum(rt.store.count(r) for r in CHILDREN), rt.store.count(DEPLOYMENT))  # fmt: skip


@dataclass
class _Listing:
    """Hands one type's events from its informers' threads to the event loop, and marks
    the type primed once the first LIST of every watched scope is in the cache."""

    rt: Runtime
    res: Resource
    handle: Callable[[Event], None]
    pending: set[str | None]
    loop: asyncio.AbstractEventLoop
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def deliver(self, scope: str | None, events: list[Event], complete: bool) -> None:
        """From an informer's thread: returns once the loop has handled the batch."""
        handled = threading.Event()
        self.loop.call_soon_threadsafe(self._run, scope, events, complete, handled)
        while not handled.wait(5):
            if self.loop.is_closed():
                return

    def _run(
        self, scope: str | None, events: list[Event], complete: bool, handled: threading.Event
    ) -> None:
        try:
            self._handle(scope, events, complete)
        finally:
            handled.set()

    def _handle(self, scope: str | None, events: list[Event], complete: bool) -> None:
        for event in events:
            try:
                self.handle(event)
            except Exception:  # one bad event must not drop the rest of the batch
                log.exception("handling a %s watch event failed", self.res.kind)
        if complete and scope in self.pending:
            self.pending.discard(scope)
            if not self.pending:
                self.rt.store.mark_primed(self.res)
                self.done.set()


def _start_workers(rt: Runtime) -> None:
    LEADER.set(1)  # the active replica: elected, or the only one
    for queue in rt.queues.values():
        queue.start()


@kopf.on.cleanup()
async def stop(**_: Any) -> None:
    if State.elector is not None:
        State.elector.shutting_down = True  # its task is cancelled below, as expected
    for informer in State.informers:
        informer.stop()
    for task in State.tasks:
        task.cancel()
    if State.rt is not None:
        await asyncio.gather(*(q.stop() for q in State.rt.queues.values()))
    if State.elector is not None:
        await asyncio.to_thread(State.elector.release)
    # kopf waits for a threading.Event stop flag in an executor thread: set it so that
    # thread ends and the process can exit.
    State.stop.set()


async def _resync_forever(rt: Runtime) -> None:
    """Every resource is reconciled again now and then (spread out, not all at once):
    it catches changes no watch reports, such as a variablesFrom ConfigMap."""
    while True:
        await asyncio.sleep(RESYNC_SECONDS)
        for kind, res in POLICIES.items():
            for namespace, name in rt.store.keys(res):
                spread = random.uniform(0, RESYNC_SECONDS / 2)
                rt.enqueue(kind, namespace, name, spread)


async def _watch_config(config: ConfigFile) -> None:
    while True:
        await asyncio.sleep(CONFIG_POLL_SECONDS)
        await asyncio.to_thread(config.load)


def _record(res: Resource, event: kopf.RawEvent) -> tuple[Obj | None, Obj, bool]:
    """Apply a watch event to the cache. Returns (previous version, object, echo): an
    echo is the event of our own write, whose response the cache already holds."""
    obj = cast(Obj, event["object"])
    meta = obj["metadata"]
    if event["type"] == "DELETED":
        # A relist reports deletions it did not watch by name only: use what was cached.
        old = runtime().store.remove(res, meta["namespace"], meta["name"])
        return old, old or obj, False
    store = runtime().store
    version = meta.get("resourceVersion")
    if version and store.version(res, meta["namespace"], meta["name"]) == version:
        return None, obj, True  # the cache already holds this very version
    return store.upsert(res, obj), obj, False


def _meaningful_change(old: Obj | None, new: Obj) -> bool:
    """A change that can affect what we render: spec or metadata, not status."""
    if old is None:
        return True
    o, n = old["metadata"], new["metadata"]
    if any(o.get(k) != n.get(k) for k in _MEANINGFUL):
        return True
    # The cache drops kubectl's last-applied annotation; compare the rest.
    return _annotations(o) != _annotations(n)


def _annotations(meta: Obj) -> dict[str, str]:
    return {k: v for k, v in (meta.get("annotations") or {}).items() if k != LAST_APPLIED}


_MEANINGFUL = ("generation", "labels", "deletionTimestamp")


def _on_policy_event(kind: str, res: Resource, event: kopf.RawEvent) -> None:
    rt = runtime()
    old, obj, echo = _record(res, event)
    meta = obj["metadata"]
    ns, name = meta["namespace"], meta["name"]
    MANAGED_OBJECTS.labels(kind).set(rt.store.count(res))

    # Keep the target index current; a change of target or a deletion may hand the
    # target to a rival that was Conflicted, so those are reconciled too.
    gone = event["type"] == "DELETED"
    new_target = None if gone else (ns, *target_key(obj)[1:])
    old_target = rt.targets.set(kind, ns, name, new_target)
    if old_target is not None and (old_target != new_target or meta.get("deletionTimestamp")):
        for rival_kind, rival in rt.targets.attached(old_target):
            rt.enqueue(rival_kind, ns, rival)
    if kind != "ServiceProfile":
        # The profile on the same Deployment lists this policy's Ready in status.policies,
        # so even our own status writes (echoes) concern it.
        for target in {old_target, new_target} - {None}:
            for _, profile in rt.targets.attached(target, "ServiceProfile"):  # type: ignore[arg-type]
                rt.enqueue("ServiceProfile", ns, profile)
    # Our own writes and status-only changes need no reconcile of the resource itself.
    if gone or (not echo and _meaningful_change(old, obj)):
        rt.enqueue(kind, ns, name)


def _on_target_event(res: Resource, event: kopf.RawEvent) -> None:
    """A target changed: reconcile the policies naming it (status-following kinds always,
    the others only when its spec or metadata changed)."""
    rt = runtime()
    old, obj, echo = _record(res, event)
    if echo:
        return
    meta = obj["metadata"]
    ns, name = meta["namespace"], meta["name"]
    meaningful = event["type"] == "DELETED" or _meaningful_change(old, obj)
    for kind, policy in rt.targets.attached((ns, res.kind, name)):
        if meaningful or kind in FOLLOWS_TARGET_STATUS:
            rt.enqueue(kind, ns, policy)


def _child_changed(old: Obj | None, new: Obj) -> bool:
    """A change that may be drift from what we applied: metadata, spec (generation) or a
    ConfigMap's or Secret's data (cached as digests). Not a controller's status update
    (the HPA and disruption controllers write one for every new HPA and PDB): at a
    thousand profiles those were most of the operator's reconciles, every one a no-op."""
    if old is None or _meaningful_change(old, new):
        return True
    if old["metadata"].get("ownerReferences") != new["metadata"].get("ownerReferences"):
        return True
    return any(old.get(k) != new.get(k) for k in ("data", "binaryData", "immutable", DIGESTS))


def _on_child_event(res: Resource, event: kopf.RawEvent) -> None:
    """A child changed or went away: its owner reconciles (and repairs drift). An
    object that is not (or no longer) our child arrives as DELETED by name (the
    informer's transform): it is removed if it was cached, and its former owner
    reconciles; if it never was, nothing happens."""
    old, obj, echo = _record(res, event)
    if echo or (event["type"] != "DELETED" and not _child_changed(old, obj)):
        return
    meta = obj["metadata"]
    labels = meta.get("labels") or {}
    owner_kind, owner_name = labels.get(OWNER_KIND), labels.get(OWNER_NAME)
    if owner_kind in RECONCILERS and owner_name:
        runtime().enqueue(owner_kind, meta["namespace"], owner_name)


def _watch(res: Resource, handle: Callable[[kopf.RawEvent], None]) -> None:
    """Register one watch with kopf; the handler only feeds the cache and the queues."""

    async def on_event(event: kopf.RawEvent, **_: Any) -> None:
        handle(event)

    kopf.on.event(res.group, res.version, res.plural, id=f"{res.plural}-events")(on_event)


for _kind, _res in POLICIES.items():
    _watch(_res, functools.partial(_on_policy_event, _kind, _res))

# Targets and children: our informers, started with the runtime.
INFORMED: dict[Resource, Callable[[Event], None]] = {
    **{res: functools.partial(_on_target_event, res) for res in (DEPLOYMENT, INGRESS)},
    **{res: functools.partial(_on_child_event, res) for res in CHILDREN},
}
