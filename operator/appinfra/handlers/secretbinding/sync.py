"""One sync of one SecretBinding, as the steps the reconciler runs in order; each step
that fails says why in status first."""

from __future__ import annotations

import datetime
import logging
import math
import time
from dataclasses import dataclass

from appinfra.api import names
from appinfra.api.formats import duration_seconds
from appinfra.api.names import MERGE_OPT_IN, Obj
from appinfra.api.secretbinding import SecretBindingSpec
from appinfra.controller import Runtime, Taken, now, retry
from appinfra.handlers.secretbinding.secret import Matches, write_rule
from appinfra.kube.client import KubeError
from appinfra.kube.conditions import ACCEPTED, Condition
from appinfra.kube.resources import DEPLOYMENT, SECRET, SECRETBINDING
from appinfra.kube.workqueue import Requeue
from appinfra.observability.metrics import SECRET_LAST_SUCCESS, SECRET_SYNC_TOTAL
from appinfra.providers.base import ProviderError, RemoteSecret, SecretNotFound
from appinfra.providers.schedule import next_refresh
from appinfra.render import messages
from appinfra.render.common import Owner
from appinfra.render.secretbinding import (
    ExtractError,
    Fetch,
    TooManyKeys,
    applied_annotation,
    checked_keys,
    fetches,
    lifetime_key,
    render_consumer,
    render_secret,
    secret_data,
    secret_hmac,
    target_name,
)
from appinfra.render.templates import TemplateError

log = logging.getLogger("appinfra.secretbinding")

MANAGER = names.field_manager(SECRETBINDING.kind)
APPLIED_DEPLOYMENT = names.applied_annotation(SECRETBINDING.kind)


def _parse_time(value: str | None) -> datetime.datetime | None:
    if not value:
        return None
    return datetime.datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)


def _rfc3339(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _status(
    rt: Runtime,
    body: Obj,
    accepted: Condition,
    synced: Condition | None,
    ready: Condition,
    **kw: object,
) -> None:
    conditions = [accepted, ready] if synced is None else [accepted, synced, ready]
    if rt.write_status(SECRETBINDING, body, conditions, **kw) and not ready.status:
        rt.event(body, ready.reason, ready.message, warning=True)


def _sync_failed(rt: Runtime, body: Obj, store: str, reason: str, message: str) -> None:
    SECRET_SYNC_TOTAL.labels(store, reason).inc()
    _status(
        rt,
        body,
        ACCEPTED,
        Condition("Synced", False, reason, message),
        Condition("Ready", False, reason, message),
    )


@dataclass
class Sync:
    """One reconcile of one binding, as the steps `reconcile` runs in order. A step
    that fails reports it in status, then returns None (permanent until something
    changes) or raises TemporaryError through `retry` (the queue backs off)."""

    rt: Runtime
    body: Obj
    spec: SecretBindingSpec
    matches: Matches

    def __post_init__(self) -> None:
        meta = self.body["metadata"]
        self.namespace, self.name = meta["namespace"], meta["name"]
        self.owner = Owner.of(self.body)
        self.secret_name = target_name(self.spec, self.name)
        self.mine, self.hint = write_rule(self.spec, self.owner, self.secret_name)
        self.needed = fetches(self.spec)
        self.interval = duration_seconds(self.spec.refresh_interval)
        self.live: Obj | None = None

    def failed(self, reason: str, message: str) -> None:
        _sync_failed(self.rt, self.body, self.spec.store, reason, message)

    def check_secret(self) -> None:
        """The target Secret is one this binding may write (or absent, unless Merge)."""
        rt, namespace, secret_name = self.rt, self.namespace, self.secret_name
        # Only Secrets we label are watched: a miss in the cache may still be a user's
        # Secret (which must never be taken over), so confirm.
        self.live = rt.read(SECRET, namespace, secret_name) or rt.kube.get(
            SECRET, namespace, secret_name
        )
        if self.live is not None and not self.mine(self.live):
            message = str(Taken("Secret", secret_name, self.owner, self.hint))
            rt.reject(SECRETBINDING, self.body, "Conflicted", message)
            # That Secret is not watched: look again later for its owner's opt-in (or its end).
            retry(message)
        if self.live is None and self.spec.target.creation_policy == "Merge":
            message = (
                f"Secret {secret_name} not found in namespace {namespace}: creationPolicy Merge "
                f"writes only into an existing Secret whose owner annotated it {MERGE_OPT_IN}: "
                f"{self.name}; create it, or use creationPolicy Owner"
            )
            self.failed("SecretNotFound", message)
            retry(message)

    def allowed(self) -> bool:
        """Every key within the store's rules for this namespace; decided before any
        backend call, and re-checked when the spec or the configuration changes."""
        for key in checked_keys(self.spec):
            refused = self.rt.providers.check_access(self.spec.store, self.namespace, key)
            if refused:
                self.failed("Forbidden", refused)
                return False
        lifetime = lifetime_key(self.spec)
        if lifetime is not None:
            try:  # a store that cannot issue (aws) is refused here too, before any call
                self.rt.providers.leases(self.spec.store, self.namespace, lifetime)
            except ProviderError as exc:
                self.failed("Forbidden", str(exc))
                return False
        return True

    def due(self) -> float:
        """Seconds until the next sync is due (0: now)."""
        status = self.body.get("status") or {}
        meta, live = self.body["metadata"], self.live
        if status.get("observedGeneration") != meta.get("generation") or not status.get(
            "lastSyncTime"
        ):
            return 0
        conditions = status.get("conditions", [])
        synced: Obj = next((c for c in conditions if c.get("type") == "Synced"), {})
        if synced.get("status") != "True":
            return 0  # failures are retried by the queue's backoff, and on any change
        if live is None or live["metadata"].get("uid") is None:
            return 0  # the Secret was deleted: restore it
        if self.spec.target.creation_policy != "Merge" and not self.matches.live_matches(
            self.rt, self.body, live, status
        ):
            return 0  # somebody edited our Secret: restore it
        due = _parse_time(status.get("nextSyncTime"))
        if due is None:
            return float("inf")  # refreshInterval "0": synced once, done
        return max(0.0, (due - datetime.datetime.now(datetime.UTC)).total_seconds())

    def fetch(self) -> dict[Fetch, RemoteSecret]:
        """Every remote secret the binding needs (shared with bindings of the same key)."""
        fetched: dict[Fetch, RemoteSecret] = {}
        for fetch in self.needed:
            try:
                # A key ending in "/" reads every secret under that path (SSM) as one map.
                fetched[fetch] = self.rt.providers.fetch(
                    self.spec.store,
                    fetch.key,
                    version=str(fetch.version) if fetch.version else None,
                    namespace=self.namespace,
                    path_prefix=fetch.key.endswith("/"),
                    max_age=self.interval / 2 if self.interval else None,
                )
            except RecursionError:  # a hostile secret: JSON nested thousands deep
                message = f"{fetch.key}: the remote secret nests too deeply to parse; flatten it"
                self.failed("Forbidden", message)
                retry(message)
            except ProviderError as exc:
                self.remote_failed(fetch, exc)
        return fetched

    def remote_failed(self, fetch: Fetch, exc: ProviderError) -> None:
        """Report a failed read; a remote secret that is gone takes the Secret with it
        under deletionPolicy Delete, if this binding created that Secret."""
        spec, live = self.spec, self.live
        remote_gone = isinstance(exc, SecretNotFound) and spec.target.deletion_policy == "Delete"
        # Only a Secret this binding created: never one it merely merged keys into.
        created = spec.target.creation_policy != "Merge"
        if remote_gone and live is not None and created and self.mine(live):
            uid = live["metadata"].get("uid")
            self.rt.kube.delete(SECRET, self.namespace, self.secret_name, uid=uid)
            message = (
                f"Secret {self.secret_name} deleted: the remote secret is gone (deletionPolicy)"
            )
            self.rt.event(self.body, "Deleted", message)
        # Name the remote key the failure is about (provider messages name the store).
        message = str(exc) if fetch.key in str(exc) else f"{fetch.key}: {exc}"
        self.failed(exc.reason, message)
        retry(message)

    def render(self, fetched: dict[Fetch, RemoteSecret]) -> dict[str, str] | None:
        """The Secret's data, or None after reporting a permanent problem."""
        try:
            return secret_data(self.spec, fetched, tenant=self.namespace)
        except TooManyKeys as exc:
            self.failed("TooManyKeys", str(exc))  # until the spec or the remote secret changes
        except ExtractError as exc:
            self.failed("SecretNotFound", str(exc))
            retry(str(exc))
        except TemplateError as exc:
            self.failed("TemplateError", str(exc))  # until the spec changes
        return None

    def write(self, data: dict[str, str], annotations: dict[str, str] | None = None) -> str | None:
        """Write the Secret if it differs; its HMAC, or None after reporting a conflict."""
        try:
            # A manager per binding on the Secret: with Merge, two bindings writing keys
            # into one Secret must not remove each other's keys.
            written, changed = self.rt.ensure_child(
                self.owner,
                render_secret(self.owner, self.spec, data, annotations),
                f"{MANAGER}/{self.name}",
                applied_annotation(self.name),
                live=self.live,
                mine=self.mine,
                hint=self.hint,
            )
        except Taken as exc:
            self.rt.reject(SECRETBINDING, self.body, "Conflicted", str(exc))
            return None
        except KubeError as exc:
            message = f"writing Secret {self.secret_name} failed: {exc.message}"
            self.failed("BackendUnavailable" if exc.status >= 500 else "Forbidden", message)
            retry(message, exc)
        digest = secret_hmac(data, written["metadata"]["uid"])
        self.matches.remember((self.namespace, self.name), written, digest)
        if changed:
            log.info("Secret %s updated (%d keys)", self.secret_name, len(data))
            self.rt.event(
                self.body, "Synced", f"Secret {self.secret_name} updated ({len(data)} keys)"
            )
        return digest

    def roll_out(self, digest: str, keys: int) -> Condition:
        """Stamp the consumer Deployment's pod template with the HMAC (when it exists);
        the Ready condition that results."""
        ready = Condition("Ready", True, "Synced", f"Secret {self.secret_name} holds {keys} keys")
        consumer = self.spec.target_ref.name if self.spec.target_ref is not None else ""
        found = bool(consumer) and self.rt.read(DEPLOYMENT, self.namespace, consumer) is not None
        self.body = self.rt.claim_target(
            SECRETBINDING, self.body, DEPLOYMENT if found else None, consumer
        )
        if found:
            intent = render_consumer(
                self.owner, consumer, digest if self.spec.rollout_on_change else None
            )
            self.rt.ensure(intent, MANAGER, APPLIED_DEPLOYMENT)
        elif consumer:
            message = messages.consumer_not_found(consumer)
            ready = Condition("Ready", False, "TargetNotFound", message)
        return ready

    def synced(
        self,
        fetched: dict[Fetch, RemoteSecret],
        data: dict[str, str],
        digest: str,
        ready: Condition,
    ) -> Requeue | None:
        """Status after a good sync; the next refresh, on the key's grid
        (providers/schedule.py), whole seconds as nextSyncTime shows them: every binding
        served the same read lands on the same second."""
        store = self.spec.store
        SECRET_SYNC_TOTAL.labels(store, "Synced").inc()
        SECRET_LAST_SUCCESS.labels(self.namespace, self.name).set_to_current_time()
        next_at = None
        if self.interval and self.needed:
            read_at = min(r.read_at for r in fetched.values())
            first_key = min(f.key for f in self.needed)
            next_at = math.ceil(next_refresh(store, first_key, self.interval, read_at, time.time()))
        reads = f"read {len(self.needed)} remote secret(s) from {store}"
        _status(
            self.rt,
            self.body,
            ACCEPTED,
            Condition("Synced", True, "Synced", reads),
            ready,
            targetSecret=self.secret_name,
            lastSyncTime=now(),
            nextSyncTime=_rfc3339(next_at) if next_at else None,
            secretHMAC=digest,
            syncedKeys=sorted(data),
        )
        return Requeue(max(0.0, next_at - time.time())) if next_at else None
