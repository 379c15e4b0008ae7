"""The `appinfra` command line: the operator itself plus offline tools.

Offline commands (crds, validate, render, version) import only pure modules so
they work on a laptop with no cluster and start fast.
"""

from __future__ import annotations

import argparse
import os
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
        webhook_port=args.webhook_port,
        webhook_cert_dir=args.webhook_cert_dir,
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


def _cmd_explain(args: argparse.Namespace) -> int:
    from appinfra.explain_cli import run_explain

    return run_explain(args.target, args.namespace, args.output, sys.stdout, sys.stderr)


# Examples shown under each command's --help (argparse epilogs, printed as written).
MAIN_EXAMPLES = """\
examples:
  appinfra run --config examples/operator-config/config.yaml   # against $KUBECONFIG
  appinfra validate -f examples/                               # check manifests offline
  appinfra render -f examples/ --config config.yaml            # what the operator would write
  appinfra crds | kubectl apply --server-side -f -             # install or upgrade the CRDs
  appinfra explain deployment/payments -n shop                 # who owns what on a Deployment

Run `appinfra COMMAND --help` for a command's options and examples. Condition reasons
and what to do about them: the "Troubleshooting" section of the README.
"""

RUN_EXAMPLES = """\
examples:
  # every namespace, the configuration the Helm chart mounts
  appinfra run --config /etc/appinfra/config.yaml
  # only two namespaces, human-readable logs, debug level
  appinfra run -n shop -n payments --log-format text -v
  # one of several replicas: only the holder of the Lease reconciles
  POD_NAMESPACE=appinfra appinfra run --leader-elect --log-format json
  # also serve the validating admission webhook (https://HOST:9443/validate)
  appinfra run --webhook-port 9443 --webhook-cert-dir /etc/appinfra-webhook

The configuration file (secret stores, rateLimit.defaultEnforcement) is re-read when it
changes; an example is examples/operator-config/config.yaml.
"""

CRDS_EXAMPLES = """\
examples:
  appinfra crds > crds.yaml
  appinfra crds | kubectl apply --server-side -f -
"""

VALIDATE_EXAMPLES = """\
examples:
  appinfra validate -f examples/                 # every *.yaml and *.yml in the directory
  appinfra validate -f sp.yaml -f binding.yaml   # several files

Checks appinfra resources with the operator's own models and the CRDs' rules; other
kinds are skipped. Prints FILE: Kind/name: field.path: message per problem, exit 1.
"""

RENDER_EXAMPLES = """\
examples:
  # the example service: targets and ConfigMaps are looked up among the files
  appinfra render -f examples/ --config examples/operator-config/config.yaml
  # one resource and the Deployment it targets
  appinfra render -f healthpolicy.yaml -f deployment.yaml
  # only the objects, without the notes
  appinfra render -f examples/minimal/ 2>/dev/null

stdout: every object the operator would create, and the fields it would apply to
targets, as YAML (a comment above each says how it is written). stderr: problems as
the resource's status would state them (Kind namespace/name: Reason: message) and
notes. Exit 1 when a resource would not be Ready. Secret stores are never contacted:
secret values are placeholders such as <from vault-main: shop/db#password>.
Without --config, SecretBinding stores and their access rules are not checked and
RateLimitPolicy's default enforcement is IngressNginx.
"""

UNINSTALL_EXAMPLES = """\
examples:
  helm uninstall appinfra -n appinfra
  appinfra uninstall                 # every namespace
  appinfra uninstall -n shop         # only one namespace
  kubectl delete -f crds/
"""

EXPLAIN_EXAMPLES = """\
examples:
  appinfra explain deployment/payments -n shop           # with the current kube context
  appinfra explain deployment/payments -n shop -o json   # the same as one JSON object
  kubectl appinfra explain deployment/payments -n shop   # as a kubectl plugin

Read-only. Lists every Deployment field appinfra owns, by the resource that owns it
(from managedFields), then each appinfra resource naming the Deployment: Ready and
Accepted with reason (and message when not True), Conflicted losers marked, its
children, and for SecretBindings the target Secret and the last and next sync.
"""

VERSION_EXAMPLES = """\
examples:
  appinfra version
"""


def _command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    summary: str,
    examples: str,
    description: str | None = None,
) -> argparse.ArgumentParser:
    """A command whose --help ends with its examples, printed as written."""
    return sub.add_parser(
        name,
        help=summary,
        description=description or summary[0].upper() + summary[1:] + ".",
        epilog=examples,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="appinfra",
        description="Kubernetes operator for config, secrets, health and rate limits.",
        epilog=MAIN_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = _command(sub, "run", "run the operator (KUBECONFIG or in-cluster)", RUN_EXAMPLES)
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
    run.add_argument(
        "--config",
        default=DEFAULT_CONFIG,
        metavar="FILE",
        help=f"operator configuration file (default: {DEFAULT_CONFIG})",
    )
    run.add_argument("--log-format", choices=["text", "json"], default="text",
                     help="log line format (default: text)")  # fmt: skip
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
    run.add_argument(
        "--webhook-port", type=int, default=0,
        help="serve the validating admission webhook over TLS on this port (0: off)",
    )  # fmt: skip
    run.add_argument(
        "--webhook-cert-dir", default="/etc/appinfra-webhook", metavar="DIR",
        help="directory holding the webhook's tls.crt and tls.key",
    )  # fmt: skip
    run.set_defaults(func=_cmd_run)

    crds = _command(sub, "crds", "print the CRD manifests", CRDS_EXAMPLES)
    crds.set_defaults(func=_cmd_crds)

    validate = _command(
        sub, "validate", "validate resources offline; exit 1 on error", VALIDATE_EXAMPLES
    )
    validate.add_argument("-f", "--file", action="append", required=True, metavar="FILE",
                          help="a YAML file or a directory of them (repeatable)")  # fmt: skip
    validate.set_defaults(func=_cmd_validate)

    render = _command(
        sub, "render", "print what the operator would create and apply, offline", RENDER_EXAMPLES
    )
    render.add_argument("-f", "--file", action="append", required=True, metavar="FILE",
                        help="a YAML file or a directory of them (repeatable): the appinfra "
                        "resources, their targets and variablesFrom ConfigMaps")  # fmt: skip
    render.add_argument(
        "--config",
        default=None,
        metavar="FILE",
        help="the operator configuration: secret stores and their access rules, the "
        "default rate limit enforcement (default: none)",
    )
    render.set_defaults(func=_cmd_render)

    uninstall = _command(
        sub,
        "uninstall",
        "after the operator is removed: release its Deployment fields and finalizers",
        UNINSTALL_EXAMPLES,
        description="Run after `helm uninstall` and before deleting the CRDs: gives back "
        "every field appinfra wrote on targets it does not own and removes its finalizer, "
        "so namespace and CRD deletion do not wait for an operator that is gone.",
    )
    uninstall.add_argument(
        "--namespace", "-n", action="append", default=[], metavar="NS",
        help="only this namespace (repeatable; default: every namespace)",
    )  # fmt: skip
    uninstall.set_defaults(func=_cmd_uninstall)

    explain = _command(
        sub,
        "explain",
        "show which appinfra resource owns which field of a Deployment, and their state",
        EXPLAIN_EXAMPLES,
    )
    explain.add_argument("target", metavar="deployment/NAME",
                         help="the Deployment (deployment/NAME, deploy/NAME or NAME)")  # fmt: skip
    explain.add_argument("--namespace", "-n", default=None, metavar="NS",
                         help="its namespace (default: the kube context's)")  # fmt: skip
    explain.add_argument("--output", "-o", choices=["text", "json"], default="text",
                         help="text (default) or json")  # fmt: skip
    explain.set_defaults(func=_cmd_explain)

    version = _command(sub, "version", "print the version", VERSION_EXAMPLES)
    version.set_defaults(func=_cmd_version)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        rc: int = args.func(args)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`appinfra render ... | head`): not an error of ours, and
        # no traceback. stdout goes to /dev/null so the interpreter's final flush cannot
        # raise again; 141 is what a shell reports for a command killed by SIGPIPE.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    return rc


if __name__ == "__main__":
    sys.exit(main())
