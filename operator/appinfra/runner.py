"""`appinfra run`: start kopf with appinfra's handlers and settings."""

from __future__ import annotations

import logging
import os

import kopf
from prometheus_client import start_http_server

log = logging.getLogger("appinfra")


def run_operator(
    *,
    namespaces: list[str],
    all_namespaces: bool,
    config_path: str,
    log_format: str,
    verbose: bool,
    metrics_port: int = 8081,
    health_port: int = 8080,
) -> int:
    """Run until SIGTERM/SIGINT. Returns the process exit code."""
    kopf.configure(
        verbose=verbose,
        log_format=kopf.LogFormat.JSON if log_format == "json" else kopf.LogFormat.FULL,
    )
    # Importing the package registers every kind's handlers with kopf's default registry.
    import appinfra.handlers  # noqa: F401

    os.environ["APPINFRA_CONFIG"] = config_path
    if metrics_port:
        start_http_server(metrics_port)
    clusterwide = all_namespaces or not namespaces
    log.info(
        "starting appinfra: %s",
        "all namespaces" if clusterwide else "namespaces " + ", ".join(namespaces),
    )
    kopf.run(
        clusterwide=clusterwide,
        namespaces=[] if clusterwide else namespaces,
        standalone=True,
        liveness_endpoint=f"http://0.0.0.0:{health_port}/healthz" if health_port else None,
    )
    return 0
