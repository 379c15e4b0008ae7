"""SecretBinding reconciler: check access -> fetch (shared) -> render -> write -> status.

Rules that shape this code:
- A backend failure never touches the target Secret: it is written only after
  every read succeeded and the data rendered completely.
- Forbidden (namespace or key prefix) is decided before any backend call.
- Refreshes fall on a per-key grid (providers/schedule.py), so bindings of one key
  share one read; failures back off exponentially with jitter and a cap.
- Messages name stores, keys and properties, never values.
"""

from __future__ import annotations

import base64
import datetime
import logging
import math
import os
import random
import time
from collections.abc import Callable

from appinfra.api.formats import duration_seconds
from appinfra.api.kinds import SECRET_BINDING
from appinfra.api.secretbinding import SecretBindingSpec
from appinfra.api.validation import parse_spec
from appinfra.controller import Runtime, Taken, now
from appinfra.kube.client import KubeError, Obj
from appinfra.kube.conditions import ACCEPTED, Condition
from appinfra.kube.diff import DIGESTS
from appinfra.kube.ownership import (
    MERGE_OPT_IN,
    PROTECTED_SECRET_TYPES,
    controlled_by,
    controller_uid,
    merge_allowed,
)
from appinfra.kube.resources import DEPLOYMENT, SECRET, SECRETBINDING
from appinfra.kube.workqueue import Requeue
from appinfra.observability.metrics import (
    SECRET_LAST_SUCCESS,
    SECRET_SYNC_TOTAL,
    forget_secretbinding,
)
from appinfra.providers.base import ProviderError, RemoteSecret, SecretNotFound
from appinfra.providers.schedule import next_refresh
from appinfra.render.common import MANAGED_BY, OWNER_KIND, OWNER_NAME, Owner
from appinfra.render.secretbinding import (
    ExtractError,
    Fetch,
    TooManyKeys,
    applied_annotation,
    fetches,
    render_consumer,
    render_secret,
    secret_data,
    secret_hmac,
    target_name,
)
from appinfra.render.templates import TemplateError

log = logging.getLogger("appinfra.secretbinding")

MANAGER = "appinfra-secretbinding"
APPLIED_DEPLOYMENT = "appinfra.dev/applied-secretbinding"
BACKOFF_BASE = float(os.environ.get("APPINFRA_BACKOFF_BASE_SECONDS", "2"))
BACKOFF_CAP = float(os.environ.get("APPINFRA_BACKOFF_CAP_SECONDS", "300"))


def _parse_time(value: str | None) -> datetime.datetime | None:
    if not value:
        return None
    return datetime.datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)


def _rfc3339(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Failures:
    """Consecutive failures per binding, for capped exponential backoff with jitter."""

    def __init__(self) -> None:
        self.count: dict[tuple[str, str], int] = {}

    def next_delay(self, key: tuple[str, str]) -> float:
        n = self.count.get(key, 0)
        self.count[key] = n + 1
        ceiling = min(BACKOFF_CAP, BACKOFF_BASE * 2**n)
        return random.uniform(ceiling / 2, ceiling)

    def reset(self, key: tuple[str, str]) -> None:
        self.count.pop(key, None)


FAILURES = Failures()
# Per binding: (uid, resourceVersion, secretHMAC) of its Secret when last known to hold
# what the binding wrote. The cache keeps digests of a Secret's values, not the values
# the HMAC needs: they are read with a GET only when the Secret changed since.
_MATCHED: dict[tuple[str, str], tuple[str, str, str]] = {}


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


def _managed_by(obj: Obj | None, name: str) -> bool:
    labels = (obj or {}).get("metadata", {}).get("labels") or {}
    return bool(
        labels.get(MANAGED_BY) == "appinfra"
        and labels.get(OWNER_KIND) == "SecretBinding"
        and labels.get(OWNER_NAME) == name
    )


def _write_rule(
    spec: SecretBindingSpec, owner: Owner, secret: str
) -> tuple[Callable[[Obj], bool], str]:
    """Which existing Secret this binding may write (by creationPolicy), and what to do
    when it may not. Owner: one it created (its controller reference). Orphan: one it
    created and labelled (no reference, by design). Merge: one whose owner opted in."""
    policy = spec.target.creation_policy
    if policy == "Merge":
        hint = (
            f"creationPolicy Merge writes into a Secret only with its owner's consent: "
            f"annotate it {MERGE_OPT_IN}: {owner.name} (never possible for Secrets of type "
            f"{', '.join(sorted(PROTECTED_SECRET_TYPES))}), or choose another spec.target.name"
        )
        return (lambda live: merge_allowed(live, owner.name)), hint
    hint = (
        "appinfra never takes it over: choose another spec.target.name, or have its owner "
        f"annotate it {MERGE_OPT_IN}: {owner.name} and set spec.target.creationPolicy: Merge "
        "to write only this binding's keys into it"
    )
    if policy == "Orphan":
        return (
            lambda live: _managed_by(live, owner.name) and controller_uid(live) in (None, owner.uid)
        ), hint
    return (lambda live: controlled_by(live, owner.uid)), hint


def _sync_due(rt: Runtime, body: Obj, spec: SecretBindingSpec, live: Obj | None) -> float:
    """Seconds until the next sync is due (0: now)."""
    status = body.get("status") or {}
    meta = body["metadata"]
    if status.get("observedGeneration") != meta.get("generation") or not status.get("lastSyncTime"):
        return 0
    synced: Obj = next((c for c in status.get("conditions", []) if c.get("type") == "Synced"), {})
    if synced.get("status") != "True":
        return 0  # failures are retried by the backoff Requeue, and on any change
    if live is None or live["metadata"].get("uid") is None:
        return 0  # the Secret was deleted: restore it
    if spec.target.creation_policy != "Merge" and not _live_matches(rt, body, live, status):
        return 0  # somebody edited our Secret: restore it
    due = _parse_time(status.get("nextSyncTime"))
    if due is None:
        return float("inf")  # refreshInterval "0": synced once, done
    return max(0.0, (due - datetime.datetime.now(datetime.UTC)).total_seconds())


def _live_matches(rt: Runtime, body: Obj, live: Obj, status: Obj) -> bool:
    binding = (body["metadata"]["namespace"], body["metadata"]["name"])
    meta = live["metadata"]
    if DIGESTS in live:  # from the cache: no values
        seen = (meta.get("uid", ""), meta.get("resourceVersion", ""), status.get("secretHMAC", ""))
        if _MATCHED.get(binding) == seen:
            return True
        fresh = rt.kube.get(SECRET, meta["namespace"], meta["name"])
        if fresh is None:
            return False
        live, meta = fresh, fresh["metadata"]
    keys = status.get("syncedKeys") or []
    raw = live.get("data") or {}
    try:
        data = {k: base64.b64decode(raw[k]).decode("utf-8", "surrogateescape") for k in keys}
    except KeyError:
        return False
    if secret_hmac(data, meta["uid"]) != status.get("secretHMAC"):
        return False
    _MATCHED[binding] = (meta["uid"], meta.get("resourceVersion", ""), status["secretHMAC"])
    return True


def reconcile(rt: Runtime, namespace: str, name: str) -> Requeue | None:
    body = rt.read(SECRETBINDING, namespace, name)
    if body is None:
        FAILURES.reset((namespace, name))
        _MATCHED.pop((namespace, name), None)
        forget_secretbinding(namespace, name)  # no series outlives its binding
        return None
    if body["metadata"].get("deletionTimestamp"):
        _finalize(rt, body)
        return None
    spec, problems = parse_spec(SECRET_BINDING, body)
    if spec is None:
        rt.reject(SECRETBINDING, body, "Invalid", "; ".join(map(str, problems)))
        return None
    providers = rt.providers
    if spec.store not in providers.store_names():
        configured = ", ".join(providers.store_names()) or "none"
        rt.reject(
            SECRETBINDING,
            body,
            "Invalid",
            f"spec.store: store {spec.store!r} is not configured "
            f"(configured stores: {configured}); ask the cluster admin or fix the name",
        )
        return None
    if spec.target_ref is not None and (rival := rt.rival_message(SECRETBINDING, body)):
        rt.reject(SECRETBINDING, body, "Conflicted", rival + " (one binding can hold many keys)")
        return None

    secret_name = target_name(spec, name)
    owner = Owner.of(body)
    # Only Secrets we label are watched: a miss in the cache may still be a user's
    # Secret (which must never be taken over), so confirm.
    live = rt.read(SECRET, namespace, secret_name) or rt.kube.get(SECRET, namespace, secret_name)
    mine, hint = _write_rule(spec, owner, secret_name)
    if live is not None and not mine(live):
        rt.reject(SECRETBINDING, body, "Conflicted", str(Taken("Secret", secret_name, owner, hint)))
        # That Secret is not watched: look again later for its owner's opt-in (or its end).
        return Requeue(FAILURES.next_delay((namespace, name)))
    if live is None and spec.target.creation_policy == "Merge":
        message = (
            f"Secret {secret_name} not found in namespace {namespace}: creationPolicy Merge "
            f"writes only into an existing Secret whose owner annotated it {MERGE_OPT_IN}: "
            f"{name}; create it, or use creationPolicy Owner"
        )
        _sync_failed(rt, body, spec.store, "SecretNotFound", message)
        return Requeue(FAILURES.next_delay((namespace, name)))

    needed = fetches(spec)
    for fetch in needed:
        refused = providers.check_access(spec.store, namespace, fetch.key)
        if refused:
            _sync_failed(rt, body, spec.store, "Forbidden", refused)
            return None  # no backend call; re-checked when the spec or the config changes

    wait = _sync_due(rt, body, spec, live)
    if wait > 0:
        return None if wait == float("inf") else Requeue(wait)

    key = (namespace, name)
    interval = duration_seconds(spec.refresh_interval)
    fetched: dict[Fetch, RemoteSecret] = {}
    try:
        for fetch in needed:
            version = str(fetch.version) if fetch.version else None
            # A key ending in "/" reads every secret under that path (SSM) as one map.
            fetched[fetch] = providers.fetch(
                spec.store,
                fetch.key,
                version=version,
                namespace=namespace,
                path_prefix=fetch.key.endswith("/"),
                max_age=interval / 2 if interval else None,
            )
    except RecursionError:  # a hostile secret: JSON nested thousands deep
        message = f"{fetch.key}: the remote secret nests too deeply to parse; flatten it"
        _sync_failed(rt, body, spec.store, "Forbidden", message)
        return Requeue(FAILURES.next_delay(key))
    except ProviderError as exc:
        remote_gone = isinstance(exc, SecretNotFound) and spec.target.deletion_policy == "Delete"
        # Only a Secret this binding created: never one it merely merged keys into.
        created = spec.target.creation_policy != "Merge"
        if remote_gone and live is not None and created and mine(live):
            rt.kube.delete(SECRET, namespace, secret_name, uid=live["metadata"].get("uid"))
            message = f"Secret {secret_name} deleted: the remote secret is gone (deletionPolicy)"
            rt.event(body, "Deleted", message)
        # Name the remote key the failure is about (provider messages name the store).
        message = str(exc) if fetch.key in str(exc) else f"{fetch.key}: {exc}"
        _sync_failed(rt, body, spec.store, exc.reason, message)
        return Requeue(FAILURES.next_delay(key))

    try:
        data = secret_data(spec, fetched, tenant=namespace)
    except TooManyKeys as exc:
        _sync_failed(rt, body, spec.store, "TooManyKeys", str(exc))
        return None  # permanent until the spec (or the remote secret) changes
    except ExtractError as exc:
        _sync_failed(rt, body, spec.store, "SecretNotFound", str(exc))
        return Requeue(FAILURES.next_delay(key))
    except TemplateError as exc:
        _sync_failed(rt, body, spec.store, "TemplateError", str(exc))
        return None  # permanent until the spec changes

    try:
        # A manager per binding on the Secret: with Merge, two bindings writing keys
        # into one Secret must not remove each other's keys.
        written, changed = rt.ensure_child(
            owner,
            render_secret(owner, spec, data),
            f"{MANAGER}/{name}",
            applied_annotation(name),
            live=live,
            mine=mine,
            hint=hint,
        )
    except Taken as exc:
        rt.reject(SECRETBINDING, body, "Conflicted", str(exc))
        return None
    except KubeError as exc:
        _sync_failed(
            rt,
            body,
            spec.store,
            "BackendUnavailable" if exc.status >= 500 else "Forbidden",
            f"writing Secret {secret_name} failed: {exc.message}",
        )
        return Requeue(FAILURES.next_delay(key))
    digest = secret_hmac(data, written["metadata"]["uid"])
    _MATCHED[key] = (
        written["metadata"]["uid"],
        written["metadata"].get("resourceVersion", ""),
        digest,
    )
    if changed:
        log.info("Secret %s updated (%d keys)", secret_name, len(data))
        rt.event(body, "Synced", f"Secret {secret_name} updated ({len(data)} keys)")

    ready = Condition("Ready", True, "Synced", f"Secret {secret_name} holds {len(data)} keys")
    consumer = spec.target_ref.name if spec.target_ref is not None else ""
    found = bool(consumer) and rt.read(DEPLOYMENT, namespace, consumer) is not None
    body = rt.claim_target(SECRETBINDING, body, DEPLOYMENT if found else None, consumer)
    if found:
        intent = render_consumer(owner, consumer, digest if spec.rollout_on_change else None)
        rt.ensure(intent, MANAGER, APPLIED_DEPLOYMENT)
    elif consumer:
        ready = Condition(
            "Ready",
            False,
            "TargetNotFound",
            f"Deployment {consumer} not found; the Secret is "
            "synced and will be rolled out once it exists",
        )

    FAILURES.reset(key)
    SECRET_SYNC_TOTAL.labels(spec.store, "Synced").inc()
    SECRET_LAST_SUCCESS.labels(namespace, name).set_to_current_time()
    # On the key's refresh grid (providers/schedule.py), whole seconds as nextSyncTime
    # shows them; every binding served the same read lands on the same second.
    next_at = None
    if interval and needed:
        read_at = min(r.read_at for r in fetched.values())
        first_key = min(f.key for f in needed)
        next_at = math.ceil(next_refresh(spec.store, first_key, interval, read_at, time.time()))
    _status(
        rt,
        body,
        ACCEPTED,
        Condition(
            "Synced", True, "Synced", f"read {len(needed)} remote secret(s) from {spec.store}"
        ),
        ready,
        targetSecret=secret_name,
        lastSyncTime=now(),
        nextSyncTime=_rfc3339(next_at) if next_at else None,
        secretHMAC=digest,
        syncedKeys=sorted(data),
    )
    return Requeue(max(0.0, next_at - time.time())) if next_at else None


def _finalize(rt: Runtime, body: Obj) -> None:
    """Deleted: release the consumer's fields (an owned Secret goes by garbage collection)."""
    meta = body["metadata"]
    FAILURES.reset((meta["namespace"], meta["name"]))
    rt.release_target(SECRETBINDING, body)
