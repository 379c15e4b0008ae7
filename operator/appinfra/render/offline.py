"""`appinfra render`: what the operator would apply, computed offline from files.

The same pure renderers the operator uses, fed from the given files instead of
the cluster: the target Deployment and any variablesFrom ConfigMaps are looked
up among the documents passed with -f.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import yaml

from appinfra.api.kinds import SERVICE_PROFILE
from appinfra.api.names import Obj
from appinfra.api.validation import parse_spec
from appinfra.render.common import Owner
from appinfra.render.interpolate import MissingVariables
from appinfra.render.serviceprofile import render_serviceprofile, variables_from_names
from appinfra.render.templates import TemplateError

NOT_YET = ("SecretBinding", "HealthPolicy", "RateLimitPolicy")


def _documents(paths: list[str]) -> Iterator[Obj]:
    for given in paths:
        path = Path(given)
        files = sorted(path.glob("*.y*ml")) if path.is_dir() else [path]
        for file in files:
            for doc in yaml.safe_load_all(file.read_text()):
                if isinstance(doc, dict):
                    yield doc


def _find(docs: list[Obj], kind: str, namespace: str, name: str) -> Obj | None:
    for doc in docs:
        meta = doc.get("metadata") or {}
        if (
            doc.get("kind") == kind
            and meta.get("name") == name
            and meta.get("namespace", namespace) == namespace
        ):
            return doc
    return None


def render_paths(paths: list[str], config: str | None, out: TextIO, err: TextIO) -> int:
    """Print the objects and patches as YAML; problems go to `err`. Exit code 1 on error."""
    del config  # stores matter only for SecretBinding, which is not rendered yet
    try:
        docs = list(_documents(paths))
    except (OSError, yaml.YAMLError) as exc:
        print(f"error: {exc}", file=err)
        return 1
    rendered: list[Obj] = []
    failed = False
    for doc in docs:
        kind = doc.get("kind")
        meta = doc.get("metadata") or {}
        label = f"{kind}/{meta.get('name')}"
        if kind in NOT_YET:
            print(f"# skipped {label}: rendering of {kind} is not implemented yet", file=err)
            continue
        if kind != "ServiceProfile":
            continue
        spec, problems = parse_spec(SERVICE_PROFILE, doc)
        if spec is None:
            for problem in problems:
                print(f"{label}: {problem}", file=err)
            failed = True
            continue
        namespace = meta.get("namespace", "default")
        owner = Owner(kind, meta["name"], namespace, meta.get("uid", ""))
        deployment = _find(docs, "Deployment", namespace, spec.target_ref.name)
        if deployment is None:
            print(
                f"{label}: Deployment {spec.target_ref.name} not among the files; pass it "
                "with -f to render the Deployment fields, selectors and container injection",
                file=err,
            )
            deployment = {"metadata": {"name": spec.target_ref.name, "namespace": namespace}}
        deployment.setdefault("metadata", {}).setdefault("namespace", namespace)
        sources = []
        for name in variables_from_names(spec):
            cm = _find(docs, "ConfigMap", namespace, name)
            if cm is None:
                print(f"{label}: variablesFrom ConfigMap {name} not among the files", file=err)
                failed = True
                break
            sources.append(dict(cm.get("data") or {}))
        else:
            try:
                result = render_serviceprofile(owner, spec, deployment, sources)
            except (MissingVariables, TemplateError) as exc:
                print(f"{label}: spec.config: {exc}", file=err)
                failed = True
                continue
            rendered.extend(result.children)
            if result.deployment is not None:
                rendered.append(result.deployment)
    yaml.safe_dump_all(rendered, out, sort_keys=False)
    return 1 if failed else 0
