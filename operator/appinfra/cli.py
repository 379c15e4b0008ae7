"""The `appinfra` command line: the operator itself plus offline tools.

Offline commands (crds, validate, render, version) import only pure modules so
they work on a laptop with no cluster and start fast.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import yaml

from appinfra import __version__

DEFAULT_CONFIG = "/etc/appinfra/config.yaml"


def _cmd_version(_: argparse.Namespace) -> int:
    print(f"appinfra {__version__}")
    return 0


def _cmd_crds(_: argparse.Namespace) -> int:
    from appinfra.api.crds import crd_manifests

    yaml.safe_dump_all(crd_manifests(), sys.stdout, sort_keys=False)
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from appinfra.api.validation import validate_paths

    problems = validate_paths(args.file)
    for line in problems:
        print(line)
    return 1 if problems else 0


def _cmd_render(args: argparse.Namespace) -> int:
    from appinfra.render.offline import render_paths

    rc: int = render_paths(args.file, args.config, sys.stdout, sys.stderr)
    return rc


def _cmd_run(args: argparse.Namespace) -> int:
    from appinfra.runner import run_operator

    return run_operator(
        namespaces=args.namespace,
        all_namespaces=args.all_namespaces,
        config_path=args.config,
        log_format=args.log_format,
        verbose=args.verbose,
        metrics_port=args.metrics_port,
        health_port=args.health_port,
        leader_elect=args.leader_elect,
        lease_namespace=args.lease_namespace,
        lease_name=args.lease_name,
    )


def _cmd_uninstall(args: argparse.Namespace) -> int:
    from appinfra.kube.client import Kube, KubeError, load_api_client
    from appinfra.uninstall import uninstall

    try:
        released = uninstall(Kube(load_api_client()), args.namespace)
    except KubeError as exc:
        print(f"appinfra uninstall: {exc}", file=sys.stderr)
        return 1
    for line in released:
        print(f"released {line}")
    print(f"{len(released)} resource(s) released")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="appinfra",
        description="Kubernetes operator for config, secrets, health and rate limits.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the operator (KUBECONFIG or in-cluster)")
    scope = run.add_mutually_exclusive_group()
    scope.add_argument(
        "--namespace",
        "-n",
        action="append",
        default=[],
        metavar="NS",
        help="watch this namespace (repeatable)",
    )
    scope.add_argument(
        "--all-namespaces", "-A", action="store_true", help="watch every namespace (default)"
    )
    run.add_argument("--config", default=DEFAULT_CONFIG, help="operator configuration file")
    run.add_argument("--log-format", choices=["text", "json"], default="text")
    run.add_argument("--verbose", "-v", action="store_true", help="debug logging")
    run.add_argument(
        "--metrics-port", type=int, default=8081, help="Prometheus metrics port (0: off)"
    )
    run.add_argument(
        "--health-port", type=int, default=8080, help="liveness endpoint /healthz port (0: off)"
    )
    run.add_argument(
        "--leader-elect",
        action="store_true",
        help="run as one of several replicas: only the holder of a Lease reconciles",
    )
    run.add_argument(
        "--lease-namespace", default="", help="namespace of the Lease (default: $POD_NAMESPACE)"
    )
    run.add_argument("--lease-name", default="appinfra", help="name of the Lease")
    run.set_defaults(func=_cmd_run)

    crds = sub.add_parser("crds", help="print the CRD manifests")
    crds.set_defaults(func=_cmd_crds)

    validate = sub.add_parser("validate", help="validate resources offline; exit 1 on error")
    validate.add_argument("-f", "--file", action="append", required=True, metavar="FILE")
    validate.set_defaults(func=_cmd_validate)

    render = sub.add_parser("render", help="print what the operator would apply, offline")
    render.add_argument("-f", "--file", action="append", required=True, metavar="FILE")
    render.add_argument("--config", default=None, help="operator configuration file")
    render.set_defaults(func=_cmd_render)

    uninstall = sub.add_parser(
        "uninstall",
        help="after the operator is removed: release its Deployment fields and finalizers",
        description="Run after `helm uninstall` and before deleting the CRDs: gives back "
        "every field appinfra wrote on targets it does not own and removes its finalizer, "
        "so namespace and CRD deletion do not wait for an operator that is gone.",
    )
    uninstall.add_argument(
        "--namespace", "-n", action="append", default=[], metavar="NS",
        help="only this namespace (repeatable; default: every namespace)",
    )  # fmt: skip
    uninstall.set_defaults(func=_cmd_uninstall)

    version = sub.add_parser("version", help="print the version")
    version.set_defaults(func=_cmd_version)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    rc: int = args.func(args)
    return rc


if __name__ == "__main__":
    sys.exit(main())
