"""What `appinfra render` works from: the -f documents standing in for the cluster, the
operator configuration from --config, and what one resource's render yields."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from appinfra.api.names import PLURALS, Obj
from appinfra.api.operatorconfig import ConfigError, OperatorConfig, load_config
from appinfra.api.validation import objects, yaml_files


class InputError(Exception):
    """A file or the configuration cannot be used; the message says which and why."""


@dataclass(frozen=True)
class Inputs:
    """The documents of every -f file, in order, and the operator configuration
    (`config_given` False: none was passed, so the stores are unknown)."""

    documents: list[Obj]
    config: OperatorConfig
    config_given: bool

    @property
    def resources(self) -> list[Obj]:
        """The appinfra resources among the documents, in the order given."""
        return [doc for doc in self.documents if doc.get("kind") in PLURALS]

    def find(self, kind: str, namespace: str, name: str) -> Obj | None:
        """The document standing in for the live object, with its namespace filled in
        (a manifest without one lands in the namespace it is applied to)."""
        for doc in self.documents:
            meta = doc.get("metadata") or {}
            if (
                doc.get("kind") == kind
                and meta.get("name") == name
                and meta.get("namespace", namespace) == namespace
            ):
                return {**doc, "metadata": {**meta, "namespace": namespace}}
        return None

    def all_of(self, kind: str, namespace: str) -> list[Obj]:
        """Every document of `kind` in `namespace` (one without a namespace counts as in
        it), with the namespace filled in."""
        out = []
        for doc in self.documents:
            meta = doc.get("metadata") or {}
            if doc.get("kind") == kind and meta.get("namespace", namespace) == namespace:
                out.append({**doc, "metadata": {**meta, "namespace": namespace}})
        return out


@dataclass
class Written:
    """One object the operator would write, and how it writes it (shown as a comment)."""

    obj: Obj
    how: str


@dataclass
class Outcome:
    """What rendering one resource yields: what would be written; problems as the
    operator's status states them, (reason, message) of a Ready=False condition; and
    notes on what an offline render cannot know."""

    written: list[Written] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def fail(self, reason: str, message: str) -> Outcome:
        self.problems.append((reason, message))
        return self


def load_inputs(paths: Iterable[str], config_path: str | None) -> Inputs:
    """Read every file (directories: their *.yaml and *.yml, not recursive; `kind: List`
    opened) and the configuration; raise InputError naming the file."""
    documents: list[Obj] = []
    for path in yaml_files(paths):
        try:
            loaded = list(yaml.safe_load_all(path.read_text()))
        except OSError as exc:
            raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from None
        except yaml.YAMLError as exc:
            raise InputError(f"{path}: invalid YAML: {exc}") from None
        documents.extend(doc for doc in objects(loaded) if isinstance(doc, dict))
    if config_path is None:
        return Inputs(documents, OperatorConfig(), config_given=False)
    try:
        config = load_config(Path(config_path).read_text())
    except OSError as exc:
        raise InputError(f"--config {config_path}: cannot read: {exc.strerror or exc}") from None
    except ConfigError as exc:
        raise InputError(f"--config {config_path}: {exc}") from None
    return Inputs(documents, config, config_given=True)
