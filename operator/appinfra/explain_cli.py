"""`appinfra explain` as a command: arguments, kube context, and one-line errors.

Every failure a user can meet (no kube context, API server unreachable, no access,
no such Deployment, a malformed argument) is one line on stderr and exit 1, never a
traceback.
"""

from __future__ import annotations

from typing import TextIO

import urllib3
from kubernetes import config

from appinfra.explain_model import render_json, render_text

DEPLOYMENT_WORDS = ("deployment", "deployments", "deploy", "deployment.apps", "deployments.apps")


def parse_target(target: str) -> str:
    """`deployment/NAME`, `deploy/NAME` or `NAME` -> NAME; ValueError otherwise."""
    kind, slash, name = target.rpartition("/")
    if slash and kind.lower() not in DEPLOYMENT_WORDS:
        raise ValueError(
            f"explain: {target!r}: only Deployments can be explained; write deployment/NAME"
        )
    if not name:
        raise ValueError("explain: the Deployment's name is missing; write deployment/NAME")
    return name


def _context_namespace() -> str:
    """The current kube context's namespace, as kubectl would use it; else default."""
    try:
        _, current = config.list_kube_config_contexts()  # type: ignore[no-untyped-call]
    except (config.ConfigException, OSError, TypeError, KeyError):
        return "default"
    return str((current or {}).get("context", {}).get("namespace") or "default")


def run_explain(target: str, namespace: str | None, output: str, out: TextIO, err: TextIO) -> int:
    from appinfra.explain import NotFound, explain
    from appinfra.kube.client import Kube, KubeError, load_api_client

    try:
        name = parse_target(target)
    except ValueError as exc:
        print(f"appinfra {exc}", file=err)
        return 1
    try:
        api = load_api_client(pool_size=4)
    except (config.ConfigException, OSError) as exc:
        print(
            f"appinfra explain: no kube context ({exc}); set KUBECONFIG or run "
            "`kubectl config use-context NAME`",
            file=err,
        )
        return 1
    ns = namespace or _context_namespace()
    try:
        exp = explain(Kube(api, timeout=30), ns, name)
    except NotFound as exc:
        print(f"appinfra explain: {exc}", file=err)
        return 1
    except KubeError as exc:
        if exc.status == 403:
            print(
                f"appinfra explain: no access: {exc.message} (explain needs get on the "
                "Deployment and list on the four appinfra kinds in the namespace, e.g. "
                "the `view` ClusterRole; children it may not list are left out with a note)",
                file=err,
            )
        else:
            print(f"appinfra explain: the API server answered {exc}", file=err)
        return 1
    except urllib3.exceptions.HTTPError as exc:
        host = api.configuration.host
        print(f"appinfra explain: cannot reach the API server at {host}: {exc}", file=err)
        return 1
    finally:
        api.close()  # type: ignore[no-untyped-call]
    out.write(render_json(exp) if output == "json" else render_text(exp))
    return 0
