"""Talking to the test cluster: the kubernetes client, kubectl, service-account tokens."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config

from tests.support.servers import tool


@dataclass
class Cluster:
    """A reachable API server plus an admin kubeconfig for it."""

    kubeconfig: Path
    server: str = ""
    ca_pem: bytes = b""
    _ca_file: Path | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        doc = yaml.safe_load(self.kubeconfig.read_text())
        current = doc.get("current-context") or doc["contexts"][0]["name"]
        ctx = next(c["context"] for c in doc["contexts"] if c["name"] == current)
        cluster = next(c["cluster"] for c in doc["clusters"] if c["name"] == ctx["cluster"])
        self.server = cluster["server"]
        if "certificate-authority-data" in cluster:
            self.ca_pem = base64.b64decode(cluster["certificate-authority-data"])
        elif "certificate-authority" in cluster:
            self.ca_pem = Path(cluster["certificate-authority"]).read_bytes()

    def api(self) -> client.ApiClient:
        """A new admin ApiClient (each test may close its own)."""
        return config.new_client_from_config(config_file=str(self.kubeconfig))

    @property
    def ca_file(self) -> Path:
        if self._ca_file is None:
            fd, name = tempfile.mkstemp(suffix=".crt")
            os.write(fd, self.ca_pem)
            os.close(fd)
            self._ca_file = Path(name)
        return self._ca_file

    def api_with_token(self, token: str) -> client.ApiClient:
        """An ApiClient that authenticates with a bearer token, as a pod would."""
        cfg = client.Configuration()
        cfg.host = self.server
        cfg.ssl_ca_cert = str(self.ca_file)
        cfg.api_key = {"authorization": token}
        cfg.api_key_prefix = {"authorization": "Bearer"}
        return client.ApiClient(cfg)

    def kubectl(
        self, *args: str, check: bool = True, input: str | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run the version-matched kubectl that `make controlplane` builds."""
        proc = subprocess.run(
            [tool("kubectl"), "--kubeconfig", str(self.kubeconfig), *args],
            capture_output=True,
            text=True,
            input=input,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}{proc.stdout}"
            )
        return proc

    def kubectl_json(self, *args: str) -> Any:
        return json.loads(self.kubectl(*args, "-o", "json").stdout)

    def token_for(
        self, namespace: str, service_account: str, audiences: list[str] | None = None
    ) -> str:
        """A short-lived token from the TokenRequest API (what kubelet mounts in pods)."""
        with self.api() as api:
            spec = client.V1TokenRequestSpec(audiences=audiences or [], expiration_seconds=3600)
            resp = client.CoreV1Api(api).create_namespaced_service_account_token(
                service_account, namespace, client.AuthenticationV1TokenRequest(spec=spec)
            )
            token: str = resp.status.token
            return token
