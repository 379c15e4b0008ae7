"""Vault and OpenBao: KV v1 and v2 through hvac, with token, kubernetes or AppRole auth.

Logging in is the expensive, rate-limited part, so a token is kept and reused
until shortly before its lease ends, renewed when Vault allows it, and replaced
by a new login otherwise. With kubernetes auth every namespace logs in as its
own service account (the store's `serviceAccount` in the binding's namespace),
so Vault's policies, not just ours, decide what each namespace can read; each
namespace therefore has its own token.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import ssl
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import hvac
import hvac.exceptions
import requests

from appinfra.api.operatorconfig import VaultStore
from appinfra.providers.base import (
    BackendUnavailable,
    Forbidden,
    Kube,
    Leased,
    LeaseGrant,
    ProviderError,
    RemoteSecret,
    SecretNotFound,
    call_backend,
    credential,
)

log = logging.getLogger(__name__)

TIMEOUT = 5.0
"""Seconds to connect and to wait for an answer: an outage must not hold a worker for long."""
LEASE_MARGIN = 60.0
"""Refresh a token this long (at most a third of its lease) before the lease ends."""
STATIC_TOKEN_TTL = 300.0
"""A token from a Secret is re-read this often, so rotating the Secret takes effect."""

_CATCH = (hvac.exceptions.VaultError, requests.exceptions.RequestException)

T = TypeVar("T")

_UNAVAILABLE = {
    hvac.exceptions.VaultDown: "is sealed or unavailable (HTTP 503)",
    hvac.exceptions.InternalServerError: "failed (HTTP 500)",
    hvac.exceptions.BadGateway: "is unreachable behind its proxy (HTTP 502)",
    hvac.exceptions.RateLimitExceeded: "is rate limiting us (HTTP 429)",
    hvac.exceptions.VaultNotInitialized: "is not initialized (HTTP 501)",
}


def vault_error(
    exc: Exception, store: str, action: str, no_route: str = "check kv.mount and kv.version"
) -> ProviderError:
    """Our error for a failed request; only the exception's type and Vault's error codes are
    looked at, its text (which may quote a request) is dropped. `no_route`: what to check
    when nothing is mounted at the path."""
    prefix = f"vault store {store!r}"
    if isinstance(exc, requests.exceptions.SSLError):
        return BackendUnavailable(f"{prefix}: TLS verification failed {action}; check caBundle")
    if isinstance(exc, requests.exceptions.Timeout):
        return BackendUnavailable(f"{prefix}: no answer within {TIMEOUT:g}s {action}")
    if isinstance(exc, requests.exceptions.RequestException):
        return BackendUnavailable(f"{prefix}: cannot connect {action}")
    if isinstance(exc, hvac.exceptions.InvalidPath):
        if any("no handler for route" in str(error) for error in exc.errors or ()):
            # A wrong mount, not a deleted secret: must not trigger deletionPolicy: Delete.
            what = "no KV engine is" if "kv." in no_route else "nothing is"
            return Forbidden(f"{prefix}: {what} mounted for {action}; {no_route}")
        return SecretNotFound(f"{prefix}: nothing found {action}")
    if isinstance(exc, hvac.exceptions.Forbidden | hvac.exceptions.Unauthorized):
        return Forbidden(f"{prefix}: permission denied {action}")
    if isinstance(exc, hvac.exceptions.InvalidRequest | hvac.exceptions.ParamValidationError):
        return Forbidden(f"{prefix}: request refused (HTTP 400) {action}")
    for kind, what in _UNAVAILABLE.items():
        if isinstance(exc, kind):
            return BackendUnavailable(f"{prefix} {what} {action}")
    return BackendUnavailable(f"{prefix}: unexpected answer {action}")


@dataclass(frozen=True)
class _Grant:
    """A token and how long Vault lets us use it (lease 0: until revoked)."""

    token: str
    lease: float
    renewable: bool

    @classmethod
    def from_auth(cls, response: Any) -> _Grant:
        auth = response["auth"]
        return cls(
            str(auth["client_token"]), float(auth["lease_duration"]), bool(auth["renewable"])
        )


class _Login:
    """One identity's client and token; the lock makes concurrent readers share one login."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.lock = threading.Lock()
        self.lease = 0.0
        self.renewable = False
        self.refresh_at: float | None = None
        self.expires_at: float | None = None

    def use(self, grant: _Grant, now: float, *, renewed: bool = False) -> None:
        self.client.token = grant.token
        self.renewable = grant.renewable
        if not renewed:
            self.lease = grant.lease
        if grant.lease <= 0:
            self.refresh_at = self.expires_at = None
            return
        self.expires_at = now + grant.lease
        self.refresh_at = self.expires_at - min(LEASE_MARGIN, grant.lease / 3)

    def current(self, now: float) -> bool:
        return bool(self.client.token) and (self.refresh_at is None or now < self.refresh_at)

    def renewable_at(self, now: float) -> bool:
        return (
            bool(self.client.token)
            and self.renewable
            and (self.expires_at is None or now < self.expires_at)
        )


class VaultProvider:
    """A Vault/OpenBao store; thread-safe, one HTTP connection pool for all identities."""

    def __init__(
        self,
        name: str,
        vault: VaultStore,
        kube: Kube,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._name = name
        self._vault = vault
        self._kube = kube
        self._clock = clock
        self._ca_file = _write_ca_bundle(name, vault.ca_bundle) if vault.ca_bundle else None
        self._session = requests.Session()
        # hvac takes verification from a session it is given, not from its own argument.
        self._session.verify = self._ca_file or True
        self._lock = threading.Lock()
        self._logins: dict[str, _Login] = {}

    def identity(self, namespace: str) -> str:
        return namespace if self._vault.auth.kubernetes is not None else ""

    def fetch(
        self, key: str, *, version: str | None, namespace: str, path_prefix: bool = False
    ) -> RemoteSecret:
        if path_prefix:
            raise Forbidden(
                f"vault store {self._name!r} cannot read a path prefix ({key!r}); "
                "name one secret, whose every property becomes a key"
            )
        kv_version = self._kv_version(key, version)
        return self._with_token(namespace, lambda client: self._read(client, key, kv_version))

    def request(
        self, path: str, *, method: str, parameters: dict[str, Any], namespace: str
    ) -> Leased:
        """One GET or POST to `path`; the caller checked the path against the store's rules.
        A POST that issues is sent again only when the first was refused (a stale token)."""
        action = f"{'reading' if method == 'GET' else 'writing'} {path}"

        def send(client: Any) -> Any:
            if method == "GET":
                return client.read(path)
            return client.write_data(path, data=parameters)

        response = self._as(namespace, "issue", action, send)
        if not isinstance(response, dict) or not isinstance(response.get("data"), dict):
            raise SecretNotFound(f"vault store {self._name!r}: nothing returned {action}")
        return Leased(
            data=dict(response["data"]),
            lease_id=str(response.get("lease_id") or ""),
            duration=float(response.get("lease_duration") or 0),
            renewable=bool(response.get("renewable")),
        )

    def renew(self, lease_id: str, *, increment: float, namespace: str) -> LeaseGrant:
        action = f"renewing a lease of {lease_id.rsplit('/', 1)[0]}"
        response = self._as(
            namespace,
            "renew_lease",
            action,
            lambda client: client.sys.renew_lease(lease_id, increment=int(increment)),
        )
        return LeaseGrant(
            duration=float(response.get("lease_duration") or 0),
            renewable=bool(response.get("renewable")),
        )

    def revoke(self, lease_id: str, *, namespace: str) -> None:
        action = f"revoking a lease of {lease_id.rsplit('/', 1)[0]}"
        self._as(namespace, "revoke_lease", action, lambda c: c.sys.revoke_lease(lease_id))

    def lookup(self, lease_id: str, *, namespace: str) -> LeaseGrant:
        action = f"looking up a lease of {lease_id.rsplit('/', 1)[0]}"
        response = self._as(namespace, "lookup_lease", action, lambda c: c.sys.read_lease(lease_id))
        data = response.get("data") or {}
        started = _epoch(data.get("last_renewal") or data.get("issue_time"))
        return LeaseGrant(
            duration=float(data.get("ttl") or 0),
            renewable=bool(data.get("renewable")),
            started=started,
        )

    def _as(self, namespace: str, operation: str, action: str, send: Callable[[Any], T]) -> T:
        """`send` with this namespace's token; once more after a fresh login if a cached
        token was refused (its policies may be outdated, or it was revoked)."""
        hint = "check the mount and path in the binding"
        return self._with_token(
            namespace, lambda client: self._call(operation, action, lambda: send(client), hint)
        )

    def _with_token(self, namespace: str, call: Callable[[Any], T]) -> T:
        """`call(client)` with this namespace's token. If a cached token is refused (its
        policies may be outdated, or it was revoked), once more after a new login; a
        refusal of a fresh token, or a second one, is the policy's answer."""
        login = self._login_for(namespace)
        fresh = self._ensure_token(login, namespace)
        used = login.client.token
        try:
            return call(login.client)
        except Forbidden:
            if fresh:
                raise
        with login.lock:
            if login.client.token == used:
                login.client.token = ""
        self._ensure_token(login, namespace)
        return call(login.client)

    def validate(self) -> list[str]:
        problems = []
        address = urlsplit(self._vault.address)
        if not address.hostname:
            problems.append(f"vault.address {self._vault.address!r} has no host")
        if self._vault.ca_bundle:
            if address.scheme == "http":
                problems.append("vault.caBundle is set but vault.address uses http://")
            try:
                ssl.create_default_context(cadata=self._vault.ca_bundle)
            except (ssl.SSLError, ValueError):
                problems.append("vault.caBundle is not a PEM bundle of CA certificates")
        return problems

    def close(self) -> None:
        self._session.close()
        if self._ca_file is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._ca_file)

    def _kv_version(self, key: str, version: str | None) -> int | None:
        """The version to ask KV for; refuse what the engine cannot answer before asking."""
        if version is None:
            return None
        if self._vault.kv.version == 1:
            raise Forbidden(
                f"vault store {self._name!r} is KV version 1, which has no versions; "
                f"remove the version of {key!r}"
            )
        if not version.isdigit():
            raise Forbidden(f"vault store {self._name!r}: KV version must be a number for {key!r}")
        return int(version)

    def _read(self, client: Any, key: str, version: int | None) -> RemoteSecret:
        kv = self._vault.kv
        if kv.version == 2:
            where = f"reading {kv.mount}/data/{key}" + (f" version {version}" if version else "")
            response = self._call(
                "get_secret",
                where,
                lambda: client.secrets.kv.v2.read_secret_version(
                    path=key, version=version, mount_point=kv.mount, raise_on_deleted_version=True
                ),
            )
            data = response["data"]
            found_version = (data.get("metadata") or {}).get("version")
            properties = data.get("data")
        else:
            where = f"reading {kv.mount}/{key}"
            response = self._call(
                "get_secret", where, lambda: client.secrets.kv.v1.read_secret(key, kv.mount)
            )
            found_version, properties = None, response.get("data")
        if properties is None:
            raise SecretNotFound(f"vault store {self._name!r}: nothing found {where}")
        return RemoteSecret(
            properties=dict(properties),
            raw=None,
            version=None if found_version is None else str(found_version),
        )

    def _login_for(self, namespace: str) -> _Login:
        identity = self.identity(namespace)
        with self._lock:
            login = self._logins.get(identity)
            if login is None:
                # token="": never pick up a token from the environment or ~/.vault-token.
                client = hvac.Client(
                    url=self._vault.address,
                    token="",
                    timeout=TIMEOUT,
                    session=self._session,
                )
                login = self._logins[identity] = _Login(client)
            return login

    def _ensure_token(self, login: _Login, namespace: str) -> bool:
        """Make sure `login` has a usable token; True if it was just obtained by logging in."""
        with login.lock:
            now = self._clock()
            if login.current(now):
                return False
            if login.renewable_at(now):
                renewed = self._renew(login)
                if renewed is not None:
                    login.use(renewed, now, renewed=True)
                    return False
            login.use(self._log_in(login.client, namespace), self._clock())
            return True

    def _renew(self, login: _Login) -> _Grant | None:
        """A renewed lease, or None when a new login is needed: renewal refused, or the lease
        is being cut short by the token's max TTL (less than half the original)."""
        try:
            grant = _Grant.from_auth(
                self._call("renew", "renewing its token", login.client.auth.token.renew_self)
            )
        except Forbidden:
            return None
        return grant if grant.lease >= login.lease / 2 else None

    def _log_in(self, client: Any, namespace: str) -> _Grant:
        auth = self._vault.auth
        if auth.token is not None:
            ref = auth.token.secret_ref
            token = credential(lambda: self._kube.read_secret_key(ref.namespace, ref.name, ref.key))
            return _Grant(token, STATIC_TOKEN_TTL, renewable=False)
        if auth.kubernetes is not None:
            k8s = auth.kubernetes
            jwt = credential(
                lambda: self._kube.token_for(namespace, k8s.service_account, [k8s.audience])
            )
            where = (
                f"logging in with kubernetes auth at {k8s.mount_path!r} as role {k8s.role!r} "
                f"(service account {namespace}/{k8s.service_account})"
            )
            response = self._call(
                "login",
                where,
                lambda: client.auth.kubernetes.login(
                    k8s.role, jwt, use_token=False, mount_point=k8s.mount_path
                ),
            )
        else:
            app_role = auth.app_role
            assert app_role is not None  # the config model requires exactly one method
            ref = app_role.secret_ref
            secret_id = credential(
                lambda: self._kube.read_secret_key(ref.namespace, ref.name, ref.key)
            )
            where = f"logging in with AppRole auth at {app_role.mount_path!r}"
            response = self._call(
                "login",
                where,
                lambda: client.auth.approle.login(
                    app_role.role_id, secret_id, use_token=False, mount_point=app_role.mount_path
                ),
            )
        grant = _Grant.from_auth(response)
        log.debug("vault store %s: logged in (lease %gs)", self._name, grant.lease)
        return grant

    def _call(
        self,
        operation: str,
        action: str,
        request: Callable[[], T],
        no_route: str = "check kv.mount and kv.version",
    ) -> T:
        return call_backend(
            self._name,
            operation,
            request,
            _CATCH,
            lambda exc: vault_error(exc, self._name, action, no_route),
        )


def _write_ca_bundle(store: str, pem: str) -> str:
    """requests verifies against a file, so the PEM from the config goes to a private one."""
    fd, path = tempfile.mkstemp(prefix=f"appinfra-{store}-", suffix=".pem")
    with os.fdopen(fd, "w") as file:
        file.write(pem)
    return path


def _epoch(stamp: Any) -> float | None:
    """Epoch seconds of Vault's RFC 3339 times (nanoseconds, "Z"), or None."""
    if not isinstance(stamp, str) or not stamp:
        return None
    head = stamp.rstrip("Z").partition(".")[0]
    try:
        parsed = datetime.datetime.fromisoformat(head)
    except ValueError:
        return None
    return parsed.replace(tzinfo=datetime.UTC).timestamp()
