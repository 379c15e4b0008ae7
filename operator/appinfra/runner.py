"""`appinfra run`: start kopf with appinfra's handlers and settings."""

from __future__ import annotations

import asyncio
import logging
import os

import kopf

log = logging.getLogger("appinfra")

HEALTH_ENDPOINT = os.environ.get("APPINFRA_HEALTH_ENDPOINT", "http://0.0.0.0:8080/healthz")


def run_operator(
    *,
    namespaces: list[str],
    all_namespaces: bool,
    config_path: str,
    log_format: str,
    verbose: bool,
) -> int:
    """Run until SIGTERM/SIGINT. Returns the process exit code."""
    kopf.configure(
        verbose=verbose,
        log_format=kopf.LogFormat.JSON if log_format == "json" else kopf.LogFormat.FULL,
    )
    # Importing the package registers every kind's handlers with kopf's default registry.
    import appinfra.handlers  # noqa: F401

    os.environ.setdefault("APPINFRA_CONFIG", config_path)
    clusterwide = all_namespaces or not namespaces
    log.info(
        "starting appinfra: %s",
        "all namespaces" if clusterwide else "namespaces " + ", ".join(namespaces),
    )
    try:
        kopf.run(
            clusterwide=clusterwide,
            namespaces=[] if clusterwide else namespaces,
            standalone=True,
            liveness_endpoint=HEALTH_ENDPOINT,
        )
    except KeyboardInterrupt:  # a second Ctrl-C while kopf is already stopping
        pass
    except asyncio.CancelledError:
        return 1
    return 0
