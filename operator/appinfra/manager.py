"""The running operator: wires every kind's declared controller (handlers/) to kopf and
our informers, runs one work queue per kind, resyncs, follows the configuration file,
and takes part in leader election. Nothing here knows what a kind does.

kopf streams the appinfra kinds; our informers (kube/informer.py) stream targets and
children, which are most of the events. An event only updates the cache and enqueues
keys (each controller's mapping says which), so a burst of events for one resource
collapses into one reconcile. Children are watched with a server-side label selector
(managed-by=appinfra), never by streaming every ConfigMap in the cluster. Anyone can
set that label, so it only narrows the stream: the cache keeps a child only if it
carries our controller ownerReference (kube/cache.py).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, cast

import kopf

from appinfra.api.names import MANAGED_SELECTOR
from appinfra.api.operatorconfig import OperatorConfig
from appinfra.config import ConfigFile, Tuning
from appinfra.controller import Controller, Runtime
from appinfra.controller.changes import record
from appinfra.controller.declaration import KeysFn
from appinfra.controller.scheduling import work_queue
from appinfra.handlers import CONTROLLERS
from appinfra.kube.client import Kube, load_api_client
from appinfra.kube.credentials import provider_kube
from appinfra.kube.informer import Event, Informer
from appinfra.kube.resources import DEPLOYMENT, OURS, Resource
from appinfra.kube.workqueue import WorkQueue
from appinfra.leader import LeaderElector, LeaseConfig
from appinfra.observability import readiness
from appinfra.observability.metrics import LEADER, MANAGED_OBJECTS
from appinfra.providers.registry import Providers
from appinfra.webhook import WebhookOptions
from appinfra.webhook import register as register_webhook

log = logging.getLogger("appinfra")


@dataclass(frozen=True)
class Options:
    """What `appinfra run` was asked for."""

    config_path: str
    namespaces: Sequence[str] = ()  # empty: cluster-wide
    lease: LeaseConfig | None = None  # set: only the Lease holder runs the workers
    tuning: Tuning = field(default_factory=Tuning)
    webhook: WebhookOptions | None = None  # set: serve the admission webhook (every replica)


class _NoDiffBase(kopf.AnnotationsDiffBaseStorage):
    """appinfra has only on.event handlers, which never use diff bases; kopf still built
    one (a deep copy of the body) for every event: 16% of the operator's time at scale."""

    def build(self, **_: Any) -> kopf.BodyEssence:
        return cast(kopf.BodyEssence, {})


class Manager:
    def __init__(self, options: Options, controllers: Sequence[Controller] = CONTROLLERS):
        self.options = options
        self.controllers = {c.kind: c for c in controllers}
        self.registry = kopf.OperatorRegistry()  # ours: no handler is a global of kopf's
        # kopf's default registry logs in through the kubernetes client; ours must ask.
        kopf.on.login(registry=self.registry)(kopf.login_via_client)
        self.stop_flag = threading.Event()  # set: kopf stops
        self.lost_leadership = False
        self.rt: Runtime | None = None
        self.queues: dict[str, WorkQueue] = {}
        self.elector: LeaderElector | None = None
        self.tasks: list[asyncio.Task[None]] = []
        self.informers: list[Informer] = []
        # Per watched resource type: which kind's keys each of its events may concern.
        self.listeners: dict[Resource, list[tuple[str, KeysFn]]] = defaultdict(list)
        for controller in controllers:
            for watch in controller.all_watches():
                self.listeners[watch.resource].append((controller.kind, watch.keys))
        self.children = {res for c in controllers for res in c.owns}
        self.informed = [res for res in self.listeners if res not in OURS.values()]
        kopf.on.startup(registry=self.registry)(self._start)
        kopf.on.cleanup(registry=self.registry)(self._stop)
        if options.webhook is not None:
            register_webhook(self.registry, lambda: self.rt)
        for res in self.listeners:
            if res in OURS.values():
                self._watch_with_kopf(res)

    # --- events -------------------------------------------------------------------

    def _watch_with_kopf(self, res: Resource) -> None:
        async def on_event(event: kopf.RawEvent, **_: Any) -> None:
            self.handle(res, cast(Event, event))

        kopf.on.event(res.group, res.version, res.plural, id=f"{res.plural}-events",
                      registry=self.registry)(on_event)  # fmt: skip

    def handle(self, res: Resource, event: Event) -> None:
        """One watch event: into the cache, then the keys it concerns into the queues."""
        rt = self.runtime
        change = record(rt.store, rt.targets, res, event)
        if res in OURS.values():
            MANAGED_OBJECTS.labels(res.kind).set(rt.store.count(res))
            # Its conditions as a metric, dropped with the resource (a deleted one's
            # series never piles up).
            readiness.observe(res.kind, change.namespace, change.name,
                              None if change.gone else change.obj)  # fmt: skip
        for kind, keys in self.listeners[res]:
            for namespace, name in keys(rt, change):
                self.enqueue(kind, namespace, name)

    def enqueue(self, kind: str, namespace: str, name: str, after: float = 0) -> None:
        queue = self.queues.get(kind)
        if queue is not None:
            queue.add((namespace, name), after)

    @property
    def runtime(self) -> Runtime:
        if self.rt is None:
            raise RuntimeError("the operator runtime is not started")
        return self.rt

    # --- start and stop -------------------------------------------------------------

    async def _start(self, settings: kopf.OperatorSettings, **_: Any) -> None:
        _settle_kopf(settings)
        if self.options.webhook is not None:
            # kopf starts its webhook server once the startup handlers are done.
            settings.admission.server = self.options.webhook.server()
        tuning = self.options.tuning
        scopes: list[str | None] = list(self.options.namespaces) or [None]
        # A connection per worker, per watch stream, and for the background posters.
        pool = tuning.workers + 8 + len(self.informed) * len(scopes)
        api = await asyncio.to_thread(load_api_client, pool)
        kube = Kube(api)
        config = ConfigFile(self.options.config_path)
        await asyncio.to_thread(config.load)
        window = tuning.shared_read_window
        providers = Providers(config.current, provider_kube(kube), window=window)
        self.rt = rt = Runtime(kube, providers, config.current)
        loop = asyncio.get_running_loop()
        config.on_change(functools.partial(self._reconfigure, loop))
        # Reconcilers block on HTTP; one thread per worker so none waits for a thread.
        loop.set_default_executor(ThreadPoolExecutor(max_workers=tuning.workers))
        await self._start_informers(scopes)
        for kind, controller in self.controllers.items():
            self.queues[kind] = work_queue(rt, controller, tuning)
        self._start_leading(api)
        self.tasks.append(asyncio.create_task(self._resync_forever()))
        self.tasks.append(asyncio.create_task(self._watch_config(config)))
        log.info("appinfra started: %d workers, resync every %.0fs",
                 tuning.workers, tuning.resync_seconds)  # fmt: skip

    def _start_leading(self, api: Any) -> None:
        """Run the workers now, or once elected. A standby's watches keep its cache warm
        and keys queue up. Lease requests get a short timeout so that a hung connection
        costs a retry, not the renew deadline."""
        lease = self.options.lease
        if lease is None:
            self._start_workers()
            return
        self.elector = LeaderElector(Kube(api, timeout=lease.request_timeout), lease)

        async def started() -> None:
            self._start_workers()

        async def stopped() -> None:
            ended()

        def ended() -> None:  # lost leadership, or the elector failed: exit non-zero
            self.lost_leadership = True
            self.stop_flag.set()

        self.tasks.append(self.elector.start(started, stopped, ended))

    def _start_workers(self) -> None:
        LEADER.set(1)  # the active replica: elected, or the only one
        for queue in self.queues.values():
            queue.start()

    def _reconfigure(self, loop: asyncio.AbstractEventLoop, new: OperatorConfig) -> None:
        """A new operator configuration: every binding re-checks store names and access,
        every policy its default enforcement."""
        rt = self.runtime
        rt.providers.update(new)
        rt.config = new
        for res in (OURS["SecretBinding"], OURS["RateLimitPolicy"]):
            for namespace, name in rt.store.keys(res):
                loop.call_soon_threadsafe(self.enqueue, res.kind, namespace, name)

    async def _start_informers(self, scopes: list[str | None]) -> None:
        """Watch targets and children; returns once each type's first LIST is in the cache,
        so that from the first reconcile a cache miss means "absent" instead of costing a
        GET (one request per type instead of one per object)."""
        rt, loop = self.runtime, asyncio.get_running_loop()
        listings = []
        for res in self.informed:
            listing = _Listing(rt, res, functools.partial(self.handle, res), set(scopes), loop)
            listings.append(listing)
            for scope in scopes:
                informer = Informer(
                    rt.kube,
                    res,
                    functools.partial(listing.deliver, scope),
                    functools.partial(rt.store.keys, res),
                    namespace=scope,
                    label_selector=MANAGED_SELECTOR if res in self.children else "",
                    # The label is anyone's to set: the cache's own rules decide what is
                    # kept (children of ours only, digests instead of values), applied
                    # in the informer's thread before anything piles up.
                    transform=functools.partial(rt.store.shrink, res),
                    served=functools.partial(self._served, res, loop) if res.optional else None,
                    recheck=self.options.tuning.optional_api_recheck,
                )
                self.informers.append(informer)
                informer.start()
        await asyncio.gather(*(listing.done.wait() for listing in listings))
        log.info("cache primed: %d children, %d deployments",
                 sum(rt.store.count(r) for r in self.children),
                 rt.store.count(DEPLOYMENT))  # fmt: skip

    def _served(self, res: Resource, loop: asyncio.AbstractEventLoop, served: bool) -> None:
        """From an informer's thread: an optional API appeared or went away. Every
        resource of a kind that owns it is reconciled again, to create what waited for
        the CRD, or to say in its status that the CRD is gone."""
        if not self.runtime.apis.set(res, served):
            return
        log.info("%s is %s", res.crd_name, "served" if served else "not served (CRD not installed)")
        for controller in self.controllers.values():
            if res in controller.owns:
                for namespace, name in self.runtime.store.keys(controller.resource):
                    loop.call_soon_threadsafe(self.enqueue, controller.kind, namespace, name)

    async def _stop(self, **_: Any) -> None:
        if self.elector is not None:
            self.elector.shutting_down = True  # its task is cancelled below, as expected
        for informer in self.informers:
            informer.stop()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*(q.stop() for q in self.queues.values()))
        if self.elector is not None:
            await asyncio.to_thread(self.elector.release)
        # kopf waits for a threading.Event stop flag in an executor thread: set it so that
        # thread ends and the process can exit.
        self.stop_flag.set()

    async def _resync_forever(self) -> None:
        """Every resource is reconciled again now and then (spread out, not all at once):
        it catches changes no watch reports, such as a variablesFrom ConfigMap."""
        every = self.options.tuning.resync_seconds
        while True:
            await asyncio.sleep(every)
            for kind, controller in self.controllers.items():
                for namespace, name in self.runtime.store.keys(controller.resource):
                    self.enqueue(kind, namespace, name, random.uniform(0, every / 2))

    async def _watch_config(self, config: ConfigFile) -> None:
        while True:
            await asyncio.sleep(self.options.tuning.config_poll_seconds)
            await asyncio.to_thread(config.load)


def _settle_kopf(settings: kopf.OperatorSettings) -> None:
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
