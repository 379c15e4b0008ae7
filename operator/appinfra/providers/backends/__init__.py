"""Secret-store backends register here, each by the store-config key it serves.

A store in the operator configuration sets exactly one backend key (`vault:`,
`aws:`, ...); `builder_for` picks the backend registered under that key. Each
module of this package is small and imports its backend's client library only
inside its builder: hvac and boto3 cost 20-30 MiB each, and most installations use
one kind of store or none. Adding a backend is a module here (plus its client
module in providers/) and a field of SecretStore in api/operatorconfig.py.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import Any

from appinfra.api.operatorconfig import SecretStore
from appinfra.providers.base import Kube, Provider

Builder = Callable[[str, Any, SecretStore, Kube], Provider]
"""(store name, that backend's config section, the whole store config, kube) -> provider."""

_BUILDERS: dict[str, Builder] = {}


def register(key: str) -> Callable[[Builder], Builder]:
    """Decorator: `builder` makes providers for stores that set `key`."""

    def add(builder: Builder) -> Builder:
        if key not in SecretStore.model_fields:
            raise TypeError(f"backend {key!r}: SecretStore has no field {key!r} to configure it")
        _BUILDERS[key] = builder
        return builder

    return add


def builders() -> dict[str, Builder]:
    """Every registered backend by key; imports this package's modules on first use."""
    if not _BUILDERS:
        for module in pkgutil.iter_modules(__path__):
            importlib.import_module(f"{__name__}.{module.name}")
    return _BUILDERS


def build(store_name: str, store: SecretStore, kube: Kube) -> Provider:
    """The provider for one configured store. Builds clients only; nothing is sent yet."""
    for key, builder in builders().items():
        section = getattr(store, key)
        if section is not None:
            return builder(store_name, section, store, kube)
    # The config model requires exactly one backend key, and each has a builder.
    raise ValueError(f"store {store_name}: no backend is configured")
