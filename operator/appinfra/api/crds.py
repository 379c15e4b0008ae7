"""The four CustomResourceDefinitions, generated from the models in this package.

`appinfra crds` prints them; `python -m appinfra.api.crds DIR` writes one file
per kind into DIR (the repository keeps them in crds/, and a unit test fails
when that copy is stale).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from appinfra.api.kinds import CATEGORY, KINDS, NAME_RULE, AnyKind, PrinterColumn
from appinfra.api.names import GROUP, VERSION
from appinfra.api.structural import JsonSchema, to_structural

PART_OF_LABEL = {"app.kubernetes.io/part-of": "appinfra"}


def _model_schema(model: Any) -> JsonSchema:
    return to_structural(model.model_json_schema(by_alias=True, mode="validation"))


def _root_schema(kind: AnyKind) -> JsonSchema:
    return {
        "description": kind.description,
        "type": "object",
        "required": ["spec"],
        "properties": {
            "apiVersion": {
                "description": "Versioned schema of this representation of an object.",
                "type": "string",
            },
            "kind": {
                "description": "REST resource this object represents.",
                "type": "string",
            },
            "metadata": {"type": "object"},  # the API server allows nothing more here
            "spec": _model_schema(kind.spec_model),
            "status": _model_schema(kind.status_model),
        },
        "x-kubernetes-validations": [NAME_RULE.x_kubernetes_validation()],
    }


def _column(column: PrinterColumn) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": column.name,
        "type": column.type,
        "jsonPath": column.json_path,
        "description": column.description,
    }
    if column.priority:
        entry["priority"] = column.priority
    return entry


def crd_manifest(kind: AnyKind) -> dict[str, Any]:
    """The apiextensions.k8s.io/v1 CustomResourceDefinition of one kind."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": kind.crd_name, "labels": dict(PART_OF_LABEL)},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": kind.kind,
                "listKind": f"{kind.kind}List",
                "plural": kind.plural,
                "singular": kind.singular,
                "shortNames": [kind.short_name],
                "categories": [CATEGORY],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [_column(column) for column in kind.columns],
                    "schema": {"openAPIV3Schema": _root_schema(kind)},
                }
            ],
        },
    }


def crd_manifests() -> list[dict[str, Any]]:
    """Every appinfra CRD, in registry order."""
    return [crd_manifest(kind) for kind in KINDS]


def write_crd_files(directory: Path) -> list[Path]:
    """Write one `<plural>.appinfra.dev.yaml` per kind into `directory`; return the paths."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for manifest in crd_manifests():
        path = directory / f"{manifest['metadata']['name']}.yaml"
        # A leading document marker: `cat crds/*.yaml` is then a valid multi-document stream.
        path.write_text("---\n" + yaml.safe_dump(manifest, sort_keys=False))
        written.append(path)
    return written


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m appinfra.api.crds DIRECTORY")
    for written_path in write_crd_files(Path(sys.argv[1])):
        print(written_path)
