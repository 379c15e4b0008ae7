"""`aws:` stores: AWS Secrets Manager or SSM Parameter Store (providers/aws.py)."""

from __future__ import annotations

from appinfra.api.operatorconfig import AwsStore, SecretStore
from appinfra.providers.backends import register
from appinfra.providers.base import Kube, Provider


@register("aws")
def build(name: str, config: AwsStore, store: SecretStore, kube: Kube) -> Provider:
    from appinfra.providers.aws import ParameterStoreProvider, SecretsManagerProvider

    if config.service == "SecretsManager":
        return SecretsManagerProvider(name, config, kube)
    return ParameterStoreProvider(name, config, kube, store.key_prefix)
