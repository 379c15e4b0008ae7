"""The one small interface every secret store implements, and what they share.

Copied from External Secrets Operator's provider shape: a backend is "fetch one
secret, validate the config, close", and a registry picks the implementation, so
adding a backend touches this package only. Everything here is written so that a
secret value can only ever travel inside `RemoteSecret`: errors carry our own
messages (store and key names, never library text that may echo a request or
response body) and `RemoteSecret` hides its values from repr.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol, TypeVar, runtime_checkable

from prometheus_client import Counter

Reason = Literal["BackendUnavailable", "SecretNotFound", "Forbidden", "Invalid"]

T = TypeVar("T")

BACKEND_REQUESTS = Counter(
    "appinfra_backend_requests_total",
    "Requests sent to secret stores, by store, operation and outcome (ok or an error reason).",
    ["store", "operation", "status"],
)


class ProviderError(Exception):
    """A failed read whose message is safe to show users: it names the store and key, never a
    value, and never embeds a library's error text."""

    reason: ClassVar[Reason]


class BackendUnavailable(ProviderError):
    """The store could not answer (down, sealed, throttled, timed out): retry later."""

    reason = "BackendUnavailable"


class SecretNotFound(ProviderError):
    """The store answered that the secret (or version) does not exist."""

    reason = "SecretNotFound"


class Forbidden(ProviderError):
    """Not allowed, or not possible as asked: needs a person to change config or policy.

    Also used for requests a backend cannot serve (a path listing on Vault, a version on
    KV v1), so that a mistake in a binding never looks like a deleted secret.
    """

    reason = "Forbidden"


class UnknownStore(ProviderError):
    """The binding names a store that is not (or no longer) configured."""

    reason = "Invalid"


@dataclass(frozen=True, repr=False)
class RemoteSecret:
    """One read from a store. Shared between callers: treat `properties` as read-only."""

    properties: dict[str, Any] | None
    """The secret as a map when it is one (Vault KV data, a JSON object in Secrets Manager,
    the parameters under an SSM path)."""
    raw: bytes | None
    """The value when it is a single value (SecretString/SecretBinary, an SSM parameter)."""
    version: str | None
    """The backend's version id when known (KV v2 version, VersionId, SSM Version)."""
    read_at: float = field(default_factory=time.time, compare=False)
    """When it was read (epoch seconds). Every binding served this shared read sees the
    same time, so they all schedule their next refresh for the same moment."""

    def __repr__(self) -> str:
        names = None if self.properties is None else sorted(self.properties)
        raw = None if self.raw is None else "<redacted>"
        return f"RemoteSecret(properties={names!r}, raw={raw}, version={self.version!r})"


@dataclass(frozen=True, repr=False)
class Leased:
    """What a request for something with a lifetime returned (a certificate from a PKI role,
    credentials from a secrets engine): its data, and its lease when it has one."""

    data: dict[str, Any]
    """The response's data (secret: never logged; repr shows the names only)."""
    lease_id: str
    """"" when the response has no lease (PKI issues certificates without one)."""
    duration: float
    renewable: bool
    issued_at: float = field(default_factory=time.time, compare=False)

    def __repr__(self) -> str:
        return f"Leased(data={sorted(self.data)!r}, duration={self.duration:g})"


@dataclass(frozen=True)
class LeaseGrant:
    """A renewed lease: how long it now lasts (possibly cut short by the max TTL)."""

    duration: float
    renewable: bool
    started: float | None = None
    """From a lookup: when the current period began (the last renewal, else the issue)."""


@runtime_checkable
class LeaseProvider(Protocol):
    """A store that issues things with a lifetime (Vault/OpenBao). Every call names the
    binding's namespace: with kubernetes auth it logs in as that namespace's identity."""

    def request(
        self, path: str, *, method: str, parameters: dict[str, Any], namespace: str
    ) -> Leased:
        """GET or POST `path` (e.g. pki/issue/web, database/creds/app)."""
        ...

    def renew(self, lease_id: str, *, increment: float, namespace: str) -> LeaseGrant: ...

    def revoke(self, lease_id: str, *, namespace: str) -> None: ...

    def lookup(self, lease_id: str, *, namespace: str) -> LeaseGrant:
        """The lease as the store knows it (`duration`: the time left)."""
        ...


@dataclass(frozen=True)
class Kube:
    """What providers may ask of the cluster; the operator implements it with the real API.

    Both callables raise `ProviderError`s (e.g. SecretNotFound for a missing Secret,
    Forbidden when RBAC says no) so a credential problem reads like any other store error.
    """

    token_for: Callable[[str, str, list[str]], str]
    """(namespace, serviceAccount, audiences) -> a TokenRequest JWT."""
    read_secret_key: Callable[[str, str, str], str]
    """(namespace, name, key) -> the value of one key of a Secret."""


class Provider(Protocol):
    """One configured store."""

    def fetch(
        self, key: str, *, version: str | None, namespace: str, path_prefix: bool = False
    ) -> RemoteSecret:
        """Read `key` (at `version`, None = latest) for a binding in `namespace`.

        `path_prefix` asks for every secret under `key` as one map (SSM paths only).
        """
        ...

    def identity(self, namespace: str) -> str:
        """Who the backend sees when a binding in `namespace` reads.

        Reads are shared only between equal identities: with Vault's kubernetes auth each
        namespace logs in as its own service account and may be allowed different paths.
        """
        ...

    def validate(self) -> list[str]:
        """Problems in the store's configuration (not reachability, which can change)."""
        ...

    def close(self) -> None:
        """Release connections and temporary files."""
        ...


def credential(read: Callable[[], str]) -> str:
    """A credential from the cluster (a Secret key, a service account token).

    A missing credential is a configuration problem, so SecretNotFound becomes Forbidden:
    it must never read as "the remote secret is gone", which can delete the target Secret
    of a binding with deletionPolicy: Delete.
    """
    try:
        return read()
    except SecretNotFound as exc:
        missing = Forbidden(f"the store's credentials are missing: {exc}")
    raise missing


def call_backend(
    store: str,
    operation: str,
    request: Callable[[], T],
    catch: tuple[type[Exception], ...],
    to_error: Callable[[Exception], ProviderError],
) -> T:
    """Send one request to a store: count it, and turn a library error into ours.

    The ProviderError is raised outside the `except` block so it carries neither a cause
    nor a context: the library exception (whose text can contain request or response
    bodies) is dropped here and cannot reach a log through exception chaining.
    """
    try:
        result = request()
    except catch as exc:
        error = to_error(exc)
    except RecursionError:
        # A hostile or broken secret (JSON nested thousands deep) overflows the parser.
        error = Forbidden(
            f"store {store}: the secret nests too deeply to be parsed; flatten it in the store"
        )
    else:
        BACKEND_REQUESTS.labels(store, operation, "ok").inc()
        return result
    BACKEND_REQUESTS.labels(store, operation, error.reason).inc()
    raise error
