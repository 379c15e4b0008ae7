"""SecretBinding pki and dynamic: secrets with a lifetime, issued, renewed and revoked.

Rules that shape this code (see also render/lifetime.py):
- The Secret is the truth about what is issued. A sync first reads it: a whole
  certificate (or a lease whose hash status recorded) issued for the same request, not
  yet due for renewal, is kept, and nothing is sent to the store. So a restarted
  operator, a changed targetRef or an edited label never issues anew.
- Nothing issued is ever lost: new credentials are written over the old ones in one
  write (no gap), and a failed renewal keeps the Secret as it is. Status then says
  both things honestly: Synced=False (the store's error), Ready=True while what the
  Secret holds is still valid, Ready=False once it expired.
- The access rules (allowedNamespaces, keyPrefix on the issue path, the dynamic path or
  the lease id) are checked by Providers.leases before each request can be sent.
- Nothing secret leaves the Secret: status has the serial, times and a lease id's
  SHA-256; messages and Events name paths, never a value, a key or a lease id.
"""

from __future__ import annotations

import base64
import logging
import time
from dataclasses import dataclass, field
from typing import Any, NoReturn

from appinfra.api.formats import duration_seconds
from appinfra.api.kinds import SECRET_BINDING
from appinfra.api.names import ISSUED_FOR, LEASE_ID_KEY, REVOKE_FINALIZER, Obj
from appinfra.api.secretbinding import SecretBindingSpec
from appinfra.api.validation import parse_spec
from appinfra.controller import Runtime, now, retry
from appinfra.handlers.secretbinding.sync import Sync, _status
from appinfra.kube.conditions import ACCEPTED, Condition
from appinfra.kube.diff import DIGESTS
from appinfra.kube.resources import SECRET, SECRETBINDING
from appinfra.kube.workqueue import Requeue
from appinfra.observability.metrics import SECRET_LAST_SUCCESS, SECRET_SYNC_TOTAL
from appinfra.providers.base import BackendUnavailable, ProviderError
from appinfra.render.lifetime import (
    IssuedDataError,
    dynamic_data,
    issued_for,
    jitter,
    lease_hash,
    parse_rfc3339,
    pki_data,
    pki_request,
    read_certificate,
    renewal_time,
    rfc3339,
)
from appinfra.render.secretbinding import lifetime_key, secret_hmac, target_name
from appinfra.render.templates import TemplateError, render_template

log = logging.getLogger("appinfra.secretbinding")


@dataclass
class Plan:
    """What this sync writes: the data (new or kept), its status section and times."""

    data: dict[str, str]
    status: dict[str, Any]  # {"certificate": {...}} or {"lease": {...}}
    renew_at: float
    valid_until: float
    issued: bool = False
    event: str = ""
    reason: str = "Issued"  # of the event: Issued, Renewed (a new certificate), Reissued
    old_lease: str = ""  # the lease the new credentials replace (revokeOnReissue)
    contacted: bool = False  # the store answered (lastSyncTime)
    notes: list[str] = field(default_factory=list)


def wants_finalizer(spec: SecretBindingSpec) -> bool:
    source = spec.pki or spec.dynamic
    return bool(source is not None and source.revoke_on_delete)


def keep_finalizer(rt: Runtime, body: Obj, wanted: bool) -> Obj:
    """Add or drop REVOKE_FINALIZER; added before anything is issued, so a binding deleted
    while its first certificate or lease is being issued still revokes it."""
    meta = body["metadata"]
    finalizers = list(meta.get("finalizers") or [])
    if (REVOKE_FINALIZER in finalizers) == wanted:
        return body
    finalizers = [*finalizers, REVOKE_FINALIZER] if wanted else [
        f for f in finalizers if f != REVOKE_FINALIZER
    ]  # fmt: skip
    patch = {"metadata": {"finalizers": finalizers, "resourceVersion": meta["resourceVersion"]}}
    out = rt.kube.merge_patch(SECRETBINDING, meta["namespace"], meta["name"], patch)
    rt.store.write_through(SECRETBINDING, out)
    return out


def secret_values(rt: Runtime, live: Obj | None) -> tuple[dict[str, str], dict[str, str]]:
    """The live Secret's data and annotations. The cache keeps digests, not values: a
    cached copy is read again (one GET, only when a sync is due or something changed)."""
    if live is None:
        return {}, {}
    if DIGESTS in live:
        meta = live["metadata"]
        live = rt.kube.get(SECRET, meta["namespace"], meta["name"])
        if live is None:
            return {}, {}
    raw = live.get("data") or {}
    data = {k: base64.b64decode(v).decode("utf-8", "surrogateescape") for k, v in raw.items()}
    return data, dict(live["metadata"].get("annotations") or {})


class Lifetime:
    """One sync of a pki or dynamic binding, after Sync's access and Secret checks."""

    def __init__(self, sync: Sync) -> None:
        self.sync = sync
        self.rt, self.spec = sync.rt, sync.spec
        self.namespace, self.name = sync.namespace, sync.name
        self.status: Obj = sync.body.get("status") or {}
        self.offset = jitter(self.namespace, self.name, 1.0)
        self.key = lifetime_key(self.spec) or ""

    def run(self) -> Requeue | None:
        sync = self.sync
        sync.body = keep_finalizer(self.rt, sync.body, wants_finalizer(self.spec))
        values, annotations = secret_values(self.rt, sync.live)
        replaced = ""
        if annotations.get(ISSUED_FOR) != issued_for(self.spec) or not self._untouched(values):
            # Issued for another request (the spec changed), or edited since: issue anew.
            # The lease it held is ours to revoke only if status recorded it.
            replaced = self._recorded_lease(values)
            values = {}
        plan = self._pki(values) if self.spec.pki is not None else self._dynamic(values)
        if plan is None:
            return None
        if plan.issued and not plan.old_lease:
            plan.old_lease = replaced
        try:
            digest = sync.write(plan.data, annotations={ISSUED_FOR: issued_for(self.spec)})
        except BaseException:
            self._discard(plan)
            raise
        if digest is None:
            self._discard(plan)
            return None
        if plan.event:
            self.rt.event(sync.body, plan.reason, plan.event)
        if plan.old_lease and self.spec.dynamic is not None and self.spec.dynamic.revoke_on_reissue:
            self._revoke_replaced(plan.old_lease)
        ready = sync.roll_out(digest, len(plan.data))
        return self._synced(plan, digest, ready)

    def _discard(self, plan: Plan) -> None:
        """New credentials that could not be written (the Secret write failed, e.g. in a
        namespace being deleted) are revoked at once: nobody will ever use them, and the
        next attempt issues its own. Best effort; the lease ends at its TTL anyway."""
        lease_id = plan.data.get(LEASE_ID_KEY, "")
        if not plan.issued or self.spec.dynamic is None or not lease_id:
            return
        try:
            store = self.rt.providers.leases(self.spec.store, self.namespace, lease_id)
            store.revoke(lease_id, namespace=self.namespace)
        except ProviderError as exc:
            log.info("SecretBinding %s/%s: unwritten credentials not revoked: %s",
                     self.namespace, self.name, exc)  # fmt: skip

    def _recorded_lease(self, values: dict[str, str]) -> str:
        """The lease id in the Secret if it is the one status recorded (by its hash), else
        "": a lease id someone wrote into the Secret is never revoked by us."""
        lease_id = values.get(LEASE_ID_KEY, "")
        recorded = (self.status.get("lease") or {}).get("idHash")
        return lease_id if lease_id and recorded == lease_hash(lease_id) else ""

    def _untouched(self, values: dict[str, str]) -> bool:
        """The Secret holds what this binding last wrote (its HMAC in status), or status does
        not know (lost, or never written): then the Secret's own content decides."""
        recorded = self.status.get("secretHMAC")
        keys = self.status.get("syncedKeys") or []
        if not recorded or not values or self.sync.live is None:
            return True
        uid = self.sync.live["metadata"].get("uid", "")
        return bool(secret_hmac({k: values.get(k, "") for k in keys}, uid) == recorded)

    # ---------------------------------------------------------------- pki

    def _pki(self, values: dict[str, str]) -> Plan | None:
        pki = self.spec.pki
        assert pki is not None
        current = read_certificate(values)
        if current is not None:
            renew_at = self._cert_renewal(current.not_before, current.not_after)
            if time.time() < renew_at:
                data = {k: values[k] for k in ("tls.crt", "tls.key", "ca.crt")}
                return self._cert_plan(data, current.not_after, renew_at, issued=False)
        valid_until = current.not_after if current is not None else 0.0
        try:
            store = self.rt.providers.leases(self.spec.store, self.namespace, self.key)
            issued = store.request(
                self.key, method="POST", parameters=pki_request(pki), namespace=self.namespace
            )
            data = pki_data(issued.data)
        except ProviderError as exc:
            self._failed(exc.reason, str(exc), valid_until, "certificate")
        except IssuedDataError as exc:
            self._failed("Invalid", f"{self.key}: {exc}", valid_until, "certificate")
        cert = read_certificate(data)
        if cert is None:
            message = f"{self.key}: the issued certificate and key do not parse as PEM"
            self._failed("Invalid", message, valid_until, "certificate")
        renew_at = self._cert_renewal(cert.not_before, cert.not_after)
        plan = self._cert_plan(data, cert.not_after, renew_at, issued=True)
        verb = "renewed" if current is not None else "issued"
        plan.reason = verb.capitalize()
        plan.event = (
            f"certificate {verb} from {self.key} (serial {cert.serial}, valid until "
            f"{rfc3339(cert.not_after)}); Secret {self.sync.secret_name} updated"
        )
        return plan

    def _cert_renewal(self, not_before: float, not_after: float) -> float:
        pki = self.spec.pki
        assert pki is not None
        before = duration(pki.renew_before)
        return renewal_time(not_before, not_after, pki.renew_percent, before, self.offset)

    def _cert_plan(
        self, data: dict[str, str], not_after: float, renew_at: float, issued: bool
    ) -> Plan:
        cert = read_certificate(data)
        assert cert is not None
        section = {
            "serial": cert.serial,
            "notBefore": rfc3339(cert.not_before),
            "notAfter": rfc3339(cert.not_after),
            "renewalTime": rfc3339(renew_at),
        }
        return Plan(data, {"certificate": section}, renew_at, not_after, issued, contacted=issued)

    # ---------------------------------------------------------------- dynamic

    def _dynamic(self, values: dict[str, str]) -> Plan | None:
        dynamic = self.spec.dynamic
        assert dynamic is not None
        lease: Obj = self.status.get("lease") or {}
        lease_id = values.get(LEASE_ID_KEY, "")
        known = bool(lease_id) and lease.get("idHash") == lease_hash(lease_id)
        if lease_id and not known:
            # The Secret holds a lease status does not know (status lost): ask the store
            # about it rather than issuing anew.
            recovered = self._recover(lease_id)
            if recovered is not None:
                lease, known = recovered, True
        valid_until = (parse_rfc3339(lease.get("expireTime")) or 0.0) if known else 0.0
        if known:
            renew_at = parse_rfc3339(lease.get("renewalTime")) or 0.0
            if time.time() < renew_at:
                return Plan(values, {"lease": lease}, renew_at, valid_until)
            if lease.get("renewable") and time.time() < valid_until:
                renewed = self._renew(lease_id, lease, valid_until)
                if renewed is not None:
                    return Plan(values, {"lease": renewed}, *self._times(renewed), contacted=True)
        try:
            store = self.rt.providers.leases(self.spec.store, self.namespace, self.key)
            issued = store.request(
                self.key,
                method=dynamic.method,
                parameters=dict(dynamic.parameters),
                namespace=self.namespace,
            )
            if not issued.lease_id:
                message = (
                    f"{self.key}: the response has no lease; dynamic is for engines that "
                    "lease what they issue (use data or dataFrom for static secrets)"
                )
                self._failed("Invalid", message, valid_until, "lease")
            data = dynamic_data(issued.data, issued.lease_id)
            data.update(self._templated(data))
        except ProviderError as exc:
            self._failed(exc.reason, str(exc), valid_until, "lease")
        except IssuedDataError as exc:
            self._failed("Invalid", f"{self.key}: {exc}", valid_until, "lease")
        except TemplateError as exc:
            self._failed("TemplateError", str(exc), valid_until, "lease")
        at = issued.issued_at
        section = {
            "idHash": lease_hash(issued.lease_id),
            "durationSeconds": int(issued.duration),
            "renewable": issued.renewable,
            "issueTime": rfc3339(at),
            "expireTime": rfc3339(at + issued.duration),
            "renewalTime": rfc3339(self._lease_renewal(at, issued.duration)),
            "renewals": 0,
        }
        why = "issued" if not lease_id else "issued anew (the lease reached its max TTL)"
        event = (
            f"credentials {why} from {self.key} (lease {int(issued.duration)}s); Secret "
            f"{self.sync.secret_name} updated"
        )
        renew_at, valid = self._times(section)
        reason = "Reissued" if lease_id else "Issued"
        return Plan(data, {"lease": section}, renew_at, valid, True, event, reason, lease_id, True)

    def _recover(self, lease_id: str) -> Obj | None:
        """The status section of a lease found in the Secret, from a lookup; None when the
        store no longer knows it (issue anew). An unreachable store is retried."""
        try:
            store = self.rt.providers.leases(self.spec.store, self.namespace, lease_id)
            found = store.lookup(lease_id, namespace=self.namespace)
        except BackendUnavailable as exc:
            self._failed(exc.reason, str(exc), 0.0, "lease")
        except ProviderError:
            return None
        at = time.time()
        started = found.started or at
        expires = at + found.duration
        log.info("SecretBinding %s/%s: lease found in the Secret, kept", self.namespace, self.name)
        return {
            "idHash": lease_hash(lease_id),
            "durationSeconds": int(max(found.duration, expires - started)),
            "renewable": found.renewable,
            "issueTime": rfc3339(started),
            "expireTime": rfc3339(expires),
            "renewalTime": rfc3339(self._lease_renewal(started, expires - started)),
            "renewals": 0,
        }

    def _templated(self, data: dict[str, str]) -> dict[str, str]:
        """target.template.data over the issued fields (a DSN from username and password)."""
        template = self.spec.target.template
        context = {k: v for k, v in data.items() if k != LEASE_ID_KEY}
        return {
            key: render_template(
                f"spec.target.template.data.{key}", source, context, tenant=self.namespace
            )
            for key, source in (template.data if template is not None else {}).items()
        }

    def _renew(self, lease_id: str, lease: Obj, valid_until: float) -> Obj | None:
        """The renewed lease's status section, or None to issue anew: the renewal was
        refused (the lease is gone), or cut short by the max TTL. An unreachable store
        keeps the current lease (reported; retried with backoff)."""
        increment = float(lease.get("durationSeconds") or 0)
        try:
            store = self.rt.providers.leases(self.spec.store, self.namespace, lease_id)
            grant = store.renew(lease_id, increment=increment, namespace=self.namespace)
        except BackendUnavailable as exc:
            self._failed(exc.reason, str(exc), valid_until, "lease")
        except ProviderError as exc:
            log.info("SecretBinding %s/%s: renewal refused (%s); issuing anew",
                     self.namespace, self.name, exc)  # fmt: skip
            return None
        if grant.duration + 1 < increment:
            return None  # at the max TTL: issue anew while these credentials still work
        at = time.time()
        return {
            **lease,
            "durationSeconds": int(grant.duration),
            "renewable": grant.renewable,
            "expireTime": rfc3339(at + grant.duration),
            "renewalTime": rfc3339(self._lease_renewal(at, grant.duration)),
            "renewals": int(lease.get("renewals") or 0) + 1,
        }

    def _lease_renewal(self, start: float, duration: float) -> float:
        dynamic = self.spec.dynamic
        assert dynamic is not None
        return renewal_time(start, start + duration, dynamic.renew_percent, None, self.offset)

    @staticmethod
    def _times(lease: Obj) -> tuple[float, float]:
        return (
            parse_rfc3339(lease["renewalTime"]) or 0.0,
            parse_rfc3339(lease["expireTime"]) or 0.0,
        )

    def _revoke_replaced(self, lease_id: str) -> None:
        try:
            store = self.rt.providers.leases(self.spec.store, self.namespace, lease_id)
            store.revoke(lease_id, namespace=self.namespace)
        except ProviderError as exc:
            message = f"the replaced lease was not revoked (it expires by itself): {exc}"
            self.rt.event(self.sync.body, "RevokeFailed", message, warning=True)

    # ---------------------------------------------------------------- status

    def _failed(self, reason: str, message: str, valid_until: float, what: str) -> NoReturn:
        """Report a failed issue or renewal honestly, then retry with backoff: Ready stays
        True while the Secret's certificate or lease is valid, the Secret untouched."""
        SECRET_SYNC_TOTAL.labels(self.spec.store, reason).inc()
        secret = target_name(self.spec, self.name)
        if time.time() < valid_until:
            held = f"Secret {secret} keeps the current {what}, valid until {rfc3339(valid_until)}"
            ready = Condition("Ready", True, "Valid", f"{held}; renewing failed (see Synced)")
        elif valid_until:
            ready = Condition("Ready", False, "Expired", f"the {what} in Secret {secret} "
                              f"expired at {rfc3339(valid_until)}: {message}")  # fmt: skip
        else:
            ready = Condition("Ready", False, reason, message)
        synced = Condition("Synced", False, reason, message)
        body = self.sync.body
        if self.rt.write_status(SECRETBINDING, body, [ACCEPTED, synced, ready]) and ready.status:
            self.rt.event(body, reason, message, warning=True)
        elif not ready.status:
            self.rt.event(body, ready.reason, ready.message, warning=True)
        retry(message)

    def _synced(self, plan: Plan, digest: str, ready: Condition) -> Requeue:
        spec = self.spec
        SECRET_SYNC_TOTAL.labels(spec.store, "Synced").inc()
        if plan.contacted:
            SECRET_LAST_SUCCESS.labels(self.namespace, self.name).set_to_current_time()
        what = "certificate" if spec.pki is not None else "lease"
        if ready.status:
            ready = Condition(
                "Ready",
                True,
                "Synced",
                f"Secret {self.sync.secret_name} holds a {what} valid until "
                f"{rfc3339(plan.valid_until)}",
            )
        synced = Condition("Synced", True, "Synced", f"{what} from {self.key} in {spec.store}")
        last = now() if plan.contacted else self.status.get("lastSyncTime") or now()
        _status(
            self.rt,
            self.sync.body,
            ACCEPTED,
            synced,
            ready,
            targetSecret=self.sync.secret_name,
            lastSyncTime=last,
            nextSyncTime=rfc3339(plan.renew_at),
            secretHMAC=digest,
            syncedKeys=sorted(plan.data),
            **plan.status,
        )
        return Requeue(max(0.5, plan.renew_at - time.time()))


def duration(text: str | None) -> float | None:
    return None if text is None else duration_seconds(text)


def release(rt: Runtime, body: Obj) -> Obj:
    """On deletion: revoke the certificate or lease (revokeOnDelete), then drop the
    finalizer. Only what status recorded is revoked (the serial, the lease id's hash): a
    Secret edited to hold someone else's lease id cannot make the operator revoke it."""
    meta = body["metadata"]
    if REVOKE_FINALIZER not in (meta.get("finalizers") or []):
        return body
    spec, _ = parse_spec(SECRET_BINDING, body)
    status = body.get("status") or {}
    namespace, name = meta["namespace"], meta["name"]
    try:
        if spec is not None and spec.pki is not None:
            serial = (status.get("certificate") or {}).get("serial")
            key = lifetime_key(spec) or ""
            if serial:
                rt.providers.leases(spec.store, namespace, key).request(
                    f"{spec.pki.mount}/revoke",
                    method="POST",
                    parameters={"serial_number": serial},
                    namespace=namespace,
                )
                rt.event(body, "Revoked", f"certificate {serial} revoked at {spec.pki.mount}")
        elif spec is not None and spec.dynamic is not None:
            live = rt.kube.get(SECRET, namespace, target_name(spec, name))
            values, _ = secret_values(rt, live)
            lease_id = values.get(LEASE_ID_KEY, "")
            recorded = (status.get("lease") or {}).get("idHash")
            if lease_id and lease_hash(lease_id) == recorded:
                rt.providers.leases(spec.store, namespace, lease_id).revoke(
                    lease_id, namespace=namespace
                )
                rt.event(body, "Revoked", f"lease of {spec.dynamic.path} revoked")
    except BackendUnavailable as exc:
        message = f"revoking before deletion failed, retrying: {exc}"
        rt.event(body, "RevokeFailed", message, warning=True)
        retry(message)
    except ProviderError as exc:  # refused or gone: nothing more this operator can do
        rt.event(body, "RevokeFailed", f"not revoked: {exc}", warning=True)
    return keep_finalizer(rt, body, False)
