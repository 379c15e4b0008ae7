"""`appinfra run`: start kopf with appinfra's handlers and settings."""

from __future__ import annotations

import logging
import os
import socket

import kopf
from prometheus_client import start_http_server

from appinfra.config import Tuning
from appinfra.leader import LeaseConfig
from appinfra.observability.logging import configure as configure_logging

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
    leader_elect: bool = False,
    lease_namespace: str = "",
    lease_name: str = "appinfra",
    webhook_port: int = 0,
    webhook_cert_dir: str = "",
) -> int:
    """Run until SIGTERM/SIGINT. Returns the process exit code."""
    configure_logging(log_format, verbose)
    from appinfra.manager import Manager, Options  # imports every kind's controller
    from appinfra.webhook import WebhookOptions

    if webhook_port:
        missing = [
            f
            for f in ("tls.crt", "tls.key")
            if not os.path.isfile(os.path.join(webhook_cert_dir, f))
        ]
        if missing:
            log.error("--webhook-port %d needs %s in --webhook-cert-dir %s; mount the webhook's "
                      "TLS Secret there, or leave out --webhook-port", webhook_port,
                      " and ".join(missing), webhook_cert_dir)  # fmt: skip
            return 2
    clusterwide = all_namespaces or not namespaces
    lease = None
    if leader_elect:
        identity = os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"
        lease = LeaseConfig(
            namespace=lease_namespace or os.environ.get("POD_NAMESPACE") or "default",
            name=lease_name,
            identity=identity,
        )
    manager = Manager(
        Options(
            config_path=config_path,
            namespaces=() if clusterwide else tuple(namespaces),
            lease=lease,
            tuning=Tuning.from_env(os.environ),
            webhook=WebhookOptions(webhook_port, webhook_cert_dir) if webhook_port else None,
        )
    )
    if metrics_port:
        start_http_server(metrics_port)
    log.info(
        "starting appinfra: %s",
        "all namespaces" if clusterwide else "namespaces " + ", ".join(namespaces),
    )
    kopf.run(
        clusterwide=clusterwide,
        namespaces=[] if clusterwide else namespaces,
        standalone=True,
        liveness_endpoint=f"http://0.0.0.0:{health_port}/healthz" if health_port else None,
        stop_flag=manager.stop_flag,
        registry=manager.registry,
    )
    # Stopped because leadership was lost or the elector ended: exit non-zero, so the
    # pod restarts as a standby with fresh state instead of running on unelected.
    if manager.lost_leadership:
        log.error("stopped: this replica is no longer the leader; exiting with status 1")
        return 1
    return 0
