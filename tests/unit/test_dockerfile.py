"""The Dockerfile: hadolint-clean, multi-stage, a non-root final stage with no compilers,
and a .dockerignore that lets exactly the builder's inputs through.

No Docker engine runs here; tests/unit/test_wheel_install.py runs the same install steps.
"""

from __future__ import annotations

import fnmatch
import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.support.servers import tool

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"


def hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("hadolint"), "--no-color", str(path)], capture_output=True, text=True, timeout=60
    )


def stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile as stages of (INSTRUCTION, arguments), continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    result: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        instruction, _, args = line.strip().partition(" ")
        if instruction.upper() == "FROM":
            result.append([])
        result[-1].append((instruction.upper(), " ".join(args.split())))
    return result


def _args(stage: list[tuple[str, str]], instruction: str) -> list[str]:
    return [args for name, args in stage if name == instruction]


def test_hadolint_is_clean() -> None:
    proc = hadolint(DOCKERFILE)
    assert proc.returncode == 0 and proc.stdout == "", proc.stdout + proc.stderr


def test_hadolint_would_catch_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install gcc\nRUN pip install appinfra\n")
    proc = hadolint(bad)
    assert proc.returncode != 0
    for rule in ("DL3007", "DL3008", "DL3013"):
        assert rule in proc.stdout


def test_two_stages_from_python_slim() -> None:
    builder, final = stages()
    assert _args(builder, "FROM") == ["python:3.11-slim AS builder"]
    assert _args(final, "FROM") == ["python:3.11-slim"]


def test_builder_uses_the_lock_with_hashes() -> None:
    builder, _ = stages()
    runs = " ".join(_args(builder, "RUN"))
    assert "uv export --frozen --no-dev --no-emit-project" in runs
    assert "--require-hashes" in runs and "--only-binary=:all:" in runs
    assert "pip wheel --no-cache-dir --no-deps ." in runs


def test_final_stage_installs_only_the_wheels_and_runs_as_non_root() -> None:
    _, final = stages()
    (run,) = _args(final, "RUN")
    assert "--no-index --find-links=/wheels /wheels/appinfra-" in run
    assert "from=builder,source=/wheels" in run
    assert not _args(final, "COPY"), "the final stage gets nothing but the wheels"
    everything = " ".join(args for _, args in final)
    for compiler in ("gcc", "g++", "build-essential", "apt-get", "clang", "make "):
        assert compiler not in everything
    (user,) = _args(final, "USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) == 65532 and gid.isdigit() and int(gid) != 0
    assert [json.loads(a) for a in _args(final, "ENTRYPOINT")] == [["appinfra"]]
    assert [json.loads(a) for a in _args(final, "CMD")] == [["run"]]


def _dockerignore() -> list[str]:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _ignored(path: str, patterns: list[str]) -> bool:
    """.dockerignore semantics for the patterns used here: a pattern matches a path or any
    of its parent directories (`*` spans `/` in fnmatch, as `**` does for Docker); the last
    matching line wins, `!` re-includes."""
    ignored = False
    candidates = [path, *(str(parent) for parent in Path(path).parents if str(parent) != ".")]
    for pattern in patterns:
        negate = pattern.startswith("!")
        glob = pattern.removeprefix("!").rstrip("/")
        if any(fnmatch.fnmatch(candidate, glob) for candidate in candidates):
            ignored = not negate
    return ignored


@pytest.mark.parametrize(
    ("path", "ignored"),
    [
        ("pyproject.toml", False),
        ("uv.lock", False),
        ("README.md", False),
        ("operator/appinfra/cli.py", False),
        ("operator/appinfra/py.typed", False),
        ("operator/appinfra/__pycache__/cli.cpython-311.pyc", True),
        ("operator/appinfra.egg-info/SOURCES.txt", True),
        (".venv/bin/python", True),
        ("bin/helm", True),
        (".git/HEAD", True),
        ("tests/unit/test_chart.py", True),
        ("charts/appinfra/values.yaml", True),
    ],
)
def test_dockerignore_lets_through_exactly_the_build_inputs(path: str, ignored: bool) -> None:
    patterns = _dockerignore()
    assert _ignored(path, patterns) is ignored


def test_every_copied_path_exists_and_is_not_ignored() -> None:
    builder, _ = stages()
    sources = [src for args in _args(builder, "COPY") for src in args.split()[:-1]]
    assert sources, "the builder copies the project in"
    patterns = _dockerignore()
    for source in sources:
        assert (REPO / source).exists(), source
        assert not _ignored(source.rstrip("/"), patterns), source
