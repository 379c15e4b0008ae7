"""`appinfra validate` and parse_spec: every invalid case names its field; examples pass."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from appinfra import cli
from appinfra.api.kinds import BY_KIND, HEALTH_POLICY, SERVICE_PROFILE
from appinfra.api.serviceprofile import ServiceProfileSpec
from appinfra.api.validation import parse_spec, validate_paths
from tests.invalid_specs import INVALID_SPECS, InvalidSpec

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
MINIMAL = EXAMPLES / "minimal"  # one minimal resource per kind


def _write(tmp_path: Path, name: str, *documents: object) -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump_all(documents, sort_keys=False))
    return str(path)


@pytest.mark.parametrize("case", INVALID_SPECS, ids=lambda case: case.id)
def test_invalid_spec_is_reported_at_its_field(tmp_path: Path, case: InvalidSpec) -> None:
    file = _write(tmp_path, "bad.yaml", case.obj)
    label = f"{case.obj['kind']}/{case.obj['metadata']['name']}"
    lines = validate_paths([file])
    assert any(line.startswith(f"{file}: {label}: {case.path}: ") for line in lines), lines
    assert all("Traceback" not in line for line in lines)


def test_invalid_specs_cover_every_kind_and_enough_cases() -> None:
    assert {case.obj["kind"] for case in INVALID_SPECS} == set(BY_KIND)
    assert len(INVALID_SPECS) >= 18
    assert len({case.id for case in INVALID_SPECS}) == len(INVALID_SPECS)


@pytest.mark.parametrize("examples", [EXAMPLES, MINIMAL], ids=["full", "minimal"])
def test_examples_validate_clean(examples: Path) -> None:
    assert validate_paths([str(examples)]) == []


@pytest.mark.parametrize("examples", [EXAMPLES, MINIMAL], ids=["full", "minimal"])
def test_examples_contain_every_kind(examples: Path) -> None:
    kinds = [
        doc["kind"]
        for path in examples.glob("*.yaml")
        for doc in yaml.safe_load_all(path.read_text())
    ]
    assert set(BY_KIND) <= set(kinds)
    if examples == MINIMAL:
        assert all(kinds.count(kind) == 1 for kind in BY_KIND)


@pytest.mark.parametrize("examples", [EXAMPLES, MINIMAL], ids=["full", "minimal"])
def test_cli_validate_examples_exits_zero(
    examples: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["validate", "-f", str(examples)]) == 0
    assert capsys.readouterr().out == ""


def test_cli_validate_invalid_exits_one_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    case = INVALID_SPECS[0]
    file = _write(tmp_path, "bad.yaml", case.obj)
    assert cli.main(["validate", "-f", file]) == 1
    assert f": {case.path}: " in capsys.readouterr().out


def test_other_kinds_are_skipped_and_lists_are_opened(tmp_path: Path) -> None:
    bad = INVALID_SPECS[0].obj
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}}
    file = _write(tmp_path, "mixed.yml", deployment, None, {"kind": "List", "items": [bad]})
    assert len(validate_paths([file])) == 1


def test_directory_reads_yaml_and_yml_only(tmp_path: Path) -> None:
    bad = INVALID_SPECS[0].obj
    _write(tmp_path, "a.yaml", bad)
    _write(tmp_path, "b.yml", bad)
    _write(tmp_path, "c.json", bad)
    assert len(validate_paths([str(tmp_path)])) == 2


def test_wrong_api_version_and_top_level_typo(tmp_path: Path) -> None:
    obj = {
        "apiVersion": "appinfra.dev/v1",
        "kind": "HealthPolicy",
        "metadata": {"name": "p"},
        "spec": {"targetRef": {"name": "api"}, "liveness": {"exec": {"command": ["true"]}}},
        "sepc": {},
    }
    file = _write(tmp_path, "p.yaml", obj)
    assert validate_paths([file]) == [
        f"{file}: HealthPolicy/p: apiVersion: must be appinfra.dev/v1alpha1 "
        "(got 'appinfra.dev/v1')",
        f"{file}: HealthPolicy/p: sepc: unknown field",
    ]


def test_unknown_kind_in_our_group(tmp_path: Path) -> None:
    obj = {
        "apiVersion": "appinfra.dev/v1alpha1",
        "kind": "ServiceProfil",
        "metadata": {"name": "x"},
    }
    (line,) = validate_paths([_write(tmp_path, "x.yaml", obj)])
    assert "ServiceProfil/x: kind: unknown kind in appinfra.dev" in line


def test_missing_name_is_reported(tmp_path: Path) -> None:
    obj = {**INVALID_SPECS[0].obj, "metadata": {}}
    lines = validate_paths([_write(tmp_path, "x.yaml", obj)])
    assert any(
        ": ServiceProfile/<unnamed>: metadata.name: required field is missing" in line
        for line in lines
    )


def test_unparseable_yaml_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("kind: ServiceProfile\nspec: [\n")
    (line,) = validate_paths([str(path)])
    assert line.startswith(f"{path}: invalid YAML at line 3")


def test_missing_file_is_one_line(tmp_path: Path) -> None:
    (line,) = validate_paths([str(tmp_path / "nope.yaml")])
    assert line.startswith(f"{tmp_path / 'nope.yaml'}: cannot read")


def test_non_mapping_document(tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- a\n- b\n")
    assert validate_paths([str(path)]) == [
        f"{path}: document is not a mapping (a Kubernetes object)"
    ]


def test_parse_spec_returns_typed_model() -> None:
    obj = yaml.safe_load((EXAMPLES / "20-serviceprofile.yaml").read_text())
    spec, problems = parse_spec(SERVICE_PROFILE, obj)
    assert problems == []
    assert isinstance(spec, ServiceProfileSpec)
    assert spec.autoscaling is not None and spec.autoscaling.max_replicas == 10
    assert spec.target_ref.group == "apps"


def test_parse_spec_is_strict_about_wire_names_and_types() -> None:
    obj = {"spec": {"target_ref": {"name": "api"}, "liveness": {"grpc": {"port": 9}}}}
    _, problems = parse_spec(HEALTH_POLICY, obj)
    assert [str(p) for p in problems] == [
        "spec.targetRef: required field is missing",
        "spec.target_ref: unknown field (check the spelling and case; see `kubectl explain`)",
    ]
    _, problems = parse_spec(
        SERVICE_PROFILE,
        {"spec": {"targetRef": {"name": "api"}, "autoscaling": {"maxReplicas": "3"}}},
    )
    assert [str(p) for p in problems] == [
        "spec.autoscaling.maxReplicas: must be a valid integer (got '3')"
    ]


def test_parse_spec_without_a_spec_object() -> None:
    for obj, expected in (({}, "required field is missing"), ({"spec": "x"}, "must be an object")):
        spec, problems = parse_spec(SERVICE_PROFILE, obj)
        assert spec is None
        assert [str(p) for p in problems] == [f"spec: {expected}"]
