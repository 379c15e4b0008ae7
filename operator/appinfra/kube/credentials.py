"""What secret providers may ask of the cluster: ServiceAccount tokens (TokenRequest)
and single keys of credential Secrets. Errors become provider errors, value-free."""

from __future__ import annotations

import base64

from appinfra.kube.client import Kube, KubeError
from appinfra.kube.resources import SECRET
from appinfra.providers import base

TOKEN_SECONDS = 600  # short-lived: used once for a login, then the store's own token is reused


def provider_kube(kube: Kube) -> base.Kube:
    def token_for(namespace: str, service_account: str, audiences: list[str]) -> str:
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"audiences": audiences, "expirationSeconds": TOKEN_SECONDS},
        }
        path = f"/api/v1/namespaces/{namespace}/serviceaccounts/{service_account}/token"
        try:
            out = kube.request("POST", path, body=body, resource="serviceaccounts/token")
        except KubeError as exc:
            raise _error(exc, f"ServiceAccount {namespace}/{service_account} token") from None
        token: str = out["status"]["token"]
        return token

    def read_secret_key(namespace: str, name: str, key: str) -> str:
        try:
            secret = kube.get(SECRET, namespace, name)
        except KubeError as exc:
            raise _error(exc, f"Secret {namespace}/{name}") from None
        if secret is None:
            raise base.SecretNotFound(f"credential Secret {namespace}/{name} not found")
        data = secret.get("data") or {}
        if key not in data:
            raise base.SecretNotFound(f"credential Secret {namespace}/{name} has no key {key!r}")
        return base64.b64decode(data[key]).decode()

    return base.Kube(token_for=token_for, read_secret_key=read_secret_key)


def _error(exc: KubeError, what: str) -> base.ProviderError:
    if exc.status in (401, 403):
        return base.Forbidden(f"the operator may not read {what}: {exc.reason}")
    if exc.not_found:
        return base.SecretNotFound(f"{what} not found")
    return base.BackendUnavailable(f"reading {what} failed: {exc.reason}")
