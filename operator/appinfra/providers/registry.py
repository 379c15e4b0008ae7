"""The configured stores: built from the operator configuration, swapped when it changes.

`Providers` is the one entry point the SecretBinding reconciler uses. It
enforces the store's access rules before any backend call (even if a caller
forgot to ask `check_access` first) and shares identical reads (see shared.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from appinfra.api.operatorconfig import OperatorConfig, SecretStore
from appinfra.providers import backends
from appinfra.providers.access import access_problem
from appinfra.providers.base import (
    Forbidden,
    Kube,
    LeaseProvider,
    Provider,
    RemoteSecret,
    UnknownStore,
)
from appinfra.providers.shared import SharedReads

log = logging.getLogger(__name__)

Builder = Callable[[str, SecretStore, Kube], Provider]


def build_provider(store_name: str, store: SecretStore, kube: Kube) -> Provider:
    """The provider for one configured store, from the backend registered for its key."""
    return backends.build(store_name, store, kube)


@dataclass(frozen=True)
class _Store:
    config: SecretStore
    provider: Provider


class Providers:
    """Every configured store, for the whole operator; thread-safe."""

    def __init__(
        self,
        config: OperatorConfig,
        kube: Kube,
        window: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        *,
        build: Builder = build_provider,
    ) -> None:
        self._kube = kube
        self._build = build
        self._lock = threading.Lock()
        self._stores: dict[str, _Store] = {}
        self._shared = SharedReads(window, clock)
        self.update(config)

    def fetch(
        self,
        store: str,
        key: str,
        *,
        version: str | None,
        namespace: str,
        path_prefix: bool = False,
        max_age: float | None = None,
    ) -> RemoteSecret:
        """Read `key` for a binding in `namespace`; version None or "0" means the latest.

        `max_age`: accept a shared result only if it is younger than this (seconds).

        Raises UnknownStore, Forbidden (access rules, before any backend call) or whatever
        the provider raises (all ProviderErrors).
        """
        entry = self._store(store)
        problem = access_problem(store, entry.config, namespace, key)
        if problem is not None:
            raise Forbidden(problem)
        wanted = None if version in (None, "0") else version
        provider = entry.provider
        # The provider object is part of the key: a store rebuilt by update() never
        # serves a result read through its previous configuration.
        shared_key = (provider, provider.identity(namespace), key, wanted, path_prefix)
        return self._shared.get(
            shared_key,
            lambda: provider.fetch(
                key, version=wanted, namespace=namespace, path_prefix=path_prefix
            ),
            max_age,
        )

    def update(self, config: OperatorConfig) -> None:
        """Use `config`'s stores from now on; close the providers of removed or changed ones.

        Configuration problems of new stores (see Provider.validate) are logged as warnings;
        the store is still used, so its bindings report what goes wrong when they read.

        A read already in flight on a closed provider may fail (BackendUnavailable); the
        binding's retry then goes to the new one.
        """
        with self._lock:
            old = self._stores
            new = {
                name: old[name]
                if name in old and old[name].config == store
                else _Store(store, self._build(name, store, self._kube))
                for name, store in config.secret_stores.items()
            }
            self._stores = new
        for name, entry in old.items():
            if new.get(name) is not entry:
                entry.provider.close()
        for name, entry in new.items():
            if old.get(name) is not entry:
                for problem in entry.provider.validate():
                    log.warning("secret store %s: %s", name, problem)

    def leases(self, store: str, namespace: str, key: str) -> LeaseProvider:
        """The store, to issue, renew or revoke something whose path (or lease id) is `key`,
        for a binding in `namespace`. The access rules are checked here, before the caller
        can send anything; never shared between bindings (each gets its own certificate
        or credentials), but the login behind it is, as for reads (Provider.identity)."""
        entry = self._store(store)
        problem = access_problem(store, entry.config, namespace, key)
        if problem is not None:
            raise Forbidden(problem)
        if not isinstance(entry.provider, LeaseProvider):
            raise Forbidden(
                f"store {store!r} cannot issue certificates or leased credentials: pki and "
                "dynamic need a vault store"
            )
        return entry.provider

    def store_names(self) -> list[str]:
        with self._lock:
            return sorted(self._stores)

    def check_access(self, store: str, namespace: str, key: str) -> str | None:
        """Why a binding in `namespace` may not read `key` from `store`, or None if it may."""
        return access_problem(store, self._store(store).config, namespace, key)

    def _store(self, name: str) -> _Store:
        with self._lock:
            entry = self._stores.get(name)
            if entry is None:
                known = ", ".join(sorted(self._stores)) or "none"
                raise UnknownStore(f"store {name!r} is not configured (configured stores: {known})")
            return entry
