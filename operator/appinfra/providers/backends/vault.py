"""`vault:` stores: Vault or OpenBao KV (providers/vault.py)."""

from __future__ import annotations

from appinfra.api.operatorconfig import SecretStore, VaultStore
from appinfra.providers.backends import register
from appinfra.providers.base import Kube, Provider


@register("vault")
def build(name: str, config: VaultStore, _: SecretStore, kube: Kube) -> Provider:
    from appinfra.providers.vault import VaultProvider

    return VaultProvider(name, config, kube)
