"""Secret stores (Vault/OpenBao, AWS Secrets Manager, SSM Parameter Store) behind one interface.

The SecretBinding reconciler uses `Providers` only; base.py defines the interface
and errors, one module per backend implements it and registers itself in backends/ by its
store-config key (`vault:`, `aws:`); registry.py holds the configured stores.
"""

from appinfra.providers.base import (
    BackendUnavailable,
    Forbidden,
    Kube,
    Provider,
    ProviderError,
    RemoteSecret,
    SecretNotFound,
    UnknownStore,
)
from appinfra.providers.registry import Providers, build_provider

__all__ = [
    "BackendUnavailable",
    "Forbidden",
    "Kube",
    "Provider",
    "ProviderError",
    "Providers",
    "RemoteSecret",
    "SecretNotFound",
    "UnknownStore",
    "build_provider",
]
