"""`appinfra render`: what the operator would create and apply, computed offline from files.

Each resource goes through its reconciler's steps with the same pure renderers the
operator calls (offline_kinds.py, offline_secrets.py); the cluster is replaced by the
documents passed with -f (targets, variablesFrom ConfigMaps) and the operator
configuration by --config (secret stores and their access rules, the default rate
limit enforcement). Secret stores are never contacted: values are placeholders.

Output: on stdout, every object the operator would write, one YAML document each, in
the order of the resources in the files and, per resource, in the order the operator
writes them; a comment above each says how it is written. On stderr, problems as the
resource's status would state them (`Kind namespace/name: Reason: message`) and notes
on what offline rendering cannot know. Exit code 1 when any resource would not be
Ready (or a file cannot be read), else 0.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TextIO

import yaml

from appinfra.api.names import Obj
from appinfra.render.common import Owner
from appinfra.render.offline_inputs import InputError, Inputs, Outcome, load_inputs
from appinfra.render.offline_kinds import (
    render_healthpolicy_doc,
    render_ratelimitpolicy_doc,
    render_serviceprofile_doc,
)
from appinfra.render.offline_secrets import PLACEHOLDER_NOTE, render_secretbinding

DEFAULT_NAMESPACE = "default"

RENDERERS: dict[str, Callable[[Obj, Owner, Inputs], Outcome]] = {
    "ServiceProfile": render_serviceprofile_doc,
    "SecretBinding": render_secretbinding,
    "HealthPolicy": render_healthpolicy_doc,
    "RateLimitPolicy": render_ratelimitpolicy_doc,
}


def owner_of(doc: Obj) -> Owner:
    """The resource as the owner of what it renders. Without a uid (a manifest has none)
    the ownerReference shows where the API server's uid goes."""
    meta = doc.get("metadata") or {}
    kind, name = str(doc.get("kind")), str(meta.get("name") or "<unnamed>")
    namespace = str(meta.get("namespace") or DEFAULT_NAMESPACE)
    return Owner(kind, name, namespace, str(meta.get("uid") or f"<uid of {kind} {name}>"))


def render_inputs(inputs: Inputs) -> list[tuple[Owner, Outcome]]:
    """Every appinfra resource among the documents, rendered, in the order given."""
    rendered = []
    for doc in inputs.resources:
        owner = owner_of(doc)
        rendered.append((owner, RENDERERS[owner.kind](doc, owner, inputs)))
    return rendered


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (config files, limits.json) as `|` blocks, readable as written."""


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)


def rivals(inputs: Inputs) -> list[str]:
    """Notes on resources of one kind sharing a target: in the cluster only the oldest
    acts and the others are Conflicted; which is oldest, manifests do not say."""
    by_target: dict[tuple[str, str, str, str], list[str]] = {}
    for doc in inputs.resources:
        owner = owner_of(doc)
        ref = (doc.get("spec") or {}).get("targetRef")
        if isinstance(ref, dict) and ref.get("name"):
            target = (owner.kind, owner.namespace, str(ref.get("kind", "Deployment")), ref["name"])
            by_target.setdefault(target, []).append(owner.name)
    return [
        f"{kind}s {', '.join(names)} all target {target} {name} in namespace {namespace}: "
        f"in the cluster only the oldest acts, the others are Conflicted"
        for (kind, namespace, target, name), names in by_target.items()
        if len(names) > 1
    ]


def write_yaml(rendered: list[tuple[Owner, Outcome]], out: TextIO) -> None:
    for owner, outcome in rendered:
        for written in outcome.written:
            out.write(f"---\n# {owner.kind} {owner.namespace}/{owner.name}: {written.how}\n")
            yaml.dump(written.obj, out, Dumper=_Dumper, sort_keys=False)


def render_paths(paths: list[str], config: str | None, out: TextIO, err: TextIO) -> int:
    """Print what the operator would write as YAML; problems and notes go to `err`."""
    try:
        inputs = load_inputs(paths, config)
    except InputError as exc:
        print(f"error: {exc}", file=err)
        return 1
    rendered = render_inputs(inputs)
    if any(owner.kind == "SecretBinding" for owner, _ in rendered):
        print(f"note: {PLACEHOLDER_NOTE}", file=err)
    for note in rivals(inputs):
        print(f"note: {note}", file=err)
    failed = False
    for owner, outcome in rendered:
        label = f"{owner.kind} {owner.namespace}/{owner.name}"
        for note in outcome.notes:
            print(f"note: {label}: {note}", file=err)
        for reason, message in outcome.problems:
            print(f"{label}: {reason}: {message}", file=err)
            failed = True
    write_yaml(rendered, out)
    return 1 if failed else 0
