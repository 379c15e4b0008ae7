"""SecretBinding reconciler: check access -> fetch (shared) -> render -> write -> status
(the steps are in sync.py; which Secret it may write, in secret.py).

Rules that shape this code:
- A backend failure never touches the target Secret: it is written only after
  every read succeeded and the data rendered completely.
- Forbidden (namespace or key prefix) is decided before any backend call.
- pki and dynamic (secrets with a lifetime) are issued, renewed and revoked in
  lifetime.py: the same checks and Secret, scheduled by the lifetime instead of
  refreshInterval.
- Refreshes fall on a per-key grid (providers/schedule.py), so bindings of one key
  share one read; failures back off exponentially with jitter and a cap (the work
  queue's backoff, declared with this kind's controller below).
- Messages name stores, keys and properties, never values.
"""

from __future__ import annotations

from collections.abc import Callable

from appinfra.api.kinds import SECRET_BINDING
from appinfra.api.secretbinding import SecretBindingSpec
from appinfra.config import Tuning
from appinfra.controller import Controller, Runtime
from appinfra.handlers.secretbinding import lifetime
from appinfra.handlers.secretbinding.secret import Matches
from appinfra.handlers.secretbinding.sync import Sync
from appinfra.kube.backoff import Backoff
from appinfra.kube.resources import DEPLOYMENT, SECRET, SECRETBINDING
from appinfra.kube.workqueue import Requeue
from appinfra.observability.metrics import forget_secretbinding
from appinfra.render import messages


def reconcile(rt: Runtime, namespace: str, name: str, matches: Matches) -> Requeue | None:
    body = rt.read(SECRETBINDING, namespace, name)
    if body is None:
        matches.seen.pop((namespace, name), None)
        forget_secretbinding(namespace, name)  # no series outlives its binding
        return None
    if body["metadata"].get("deletionTimestamp"):
        # Revoke what pki/dynamic issued (revokeOnDelete), release the consumer's fields
        # (an owned Secret goes by garbage collection).
        body = lifetime.release(rt, body)
        rt.release_target(SECRETBINDING, body)
        return None
    spec = rt.admit(SECRETBINDING, SECRET_BINDING, body, check=_store_known(rt),
                    hint=" (one binding can hold many keys)")  # fmt: skip
    if spec is None:
        return None
    sync = Sync(rt, body, spec, matches)
    sync.check_secret()
    if not sync.allowed():
        return None  # no backend call; re-checked when the spec or the config changes
    wait = sync.due()
    if wait > 0:
        return None if wait == float("inf") else Requeue(wait)
    if spec.pki is not None or spec.dynamic is not None:
        return lifetime.Lifetime(sync).run()  # renewal times come from the lifetime
    fetched = sync.fetch()
    data = sync.render(fetched)
    if data is None:
        return None
    digest = sync.write(data)
    if digest is None:
        return None
    ready = sync.roll_out(digest, len(data))
    return sync.synced(fetched, data, digest, ready)


def _store_known(rt: Runtime) -> Callable[[SecretBindingSpec], str | None]:
    def check(spec: SecretBindingSpec) -> str | None:
        names = rt.providers.store_names()
        return None if spec.store in names else messages.store_not_configured(spec.store, names)

    return check


def _controller() -> Controller:
    matches = Matches()

    def run(rt: Runtime, namespace: str, name: str) -> Requeue | None:
        return reconcile(rt, namespace, name, matches)

    def backoff(tuning: Tuning) -> Backoff:
        return Backoff(tuning.sync_backoff_base, tuning.sync_backoff_cap)

    return Controller(SECRETBINDING, run, owns=(SECRET,), targets=(DEPLOYMENT,), backoff=backoff)


CONTROLLER = _controller()
