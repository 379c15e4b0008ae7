"""The Dockerfile's install steps, without Docker: build the wheel, install it with the
locked, hash-checked dependencies (binary wheels only, as in the compiler-less image) into
a clean venv, and run the installed `appinfra`.

Runs in `make test` (no marker deselects it); it needs PyPI or a warm uv cache, like
`make venv`. A clean venv means: not the project's .venv, and started outside the repo so
nothing can be imported from the source tree.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


def _uv() -> str:
    found = shutil.which("uv") or (REPO / ".tools" / "bin" / "uv")
    if not Path(found).exists():
        pytest.fail("uv is missing: run `make venv` (hack/venv.sh installs it into .tools/)")
    return str(found)


def _run(*argv: str | Path, cwd: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    proc = subprocess.run(
        [str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, f"{' '.join(map(str, argv))}:\n{proc.stderr}{proc.stdout}"
    return proc.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the built wheel, the venv it is installed in)."""
    tmp = tmp_path_factory.mktemp("wheel")
    uv = _uv()
    # Build from what the Docker build context holds (the .dockerignore allow-list), not
    # the work tree: proves the context suffices, and setuptools' build/ and egg-info
    # land in the copy.
    context = tmp / "context"
    for name in ("pyproject.toml", "uv.lock", "README.md"):
        (context / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, context / name)
    shutil.copytree(
        REPO / "operator", context / "operator",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"),
    )  # fmt: skip
    dist = tmp / "dist"
    _run(uv, "build", "--wheel", "--out-dir", dist, context, cwd=tmp)
    (wheel,) = dist.glob("appinfra-*.whl")
    # The Dockerfile's dependency step: the lock exported with hashes, wheels only.
    requirements = tmp / "requirements.txt"
    _run(uv, "export", "--frozen", "--no-dev", "--no-emit-project", "--format",
         "requirements-txt", "-o", requirements, "--project", context, cwd=tmp)  # fmt: skip
    venv = tmp / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp)
    python = venv / "bin" / "python"
    _run(uv, "pip", "install", "--python", python, "--require-hashes", "--no-build",
         "-r", requirements, cwd=tmp)  # fmt: skip
    # The final stage's step: only the project wheel, nothing fetched for it.
    _run(uv, "pip", "install", "--python", python, "--no-deps", "--offline", wheel, cwd=tmp)
    _run(uv, "pip", "check", "--python", python, cwd=tmp)
    return wheel, venv


def test_wheel_holds_the_package_and_nothing_else(installed: tuple[Path, Path]) -> None:
    wheel, _ = installed
    names = zipfile.ZipFile(wheel).namelist()
    assert "appinfra/cli.py" in names and "appinfra/py.typed" in names
    others = {name.split("/")[0] for name in names} - {"appinfra"}
    assert [other for other in others if not other.endswith(".dist-info")] == []


def test_installed_appinfra_is_the_venv_copy(installed: tuple[Path, Path]) -> None:
    _, venv = installed
    where = _run(venv / "bin" / "python", "-c", "import appinfra; print(appinfra.__file__)",
                 cwd=venv)  # fmt: skip
    assert Path(where.strip()).is_relative_to(venv)


def test_installed_appinfra_version(installed: tuple[Path, Path]) -> None:
    _, venv = installed
    project = (REPO / "pyproject.toml").read_text()
    out = _run(venv / "bin" / "appinfra", "version", cwd=venv).strip()
    assert out.startswith("appinfra ")
    assert f'version = "{out.removeprefix("appinfra ")}"' in project


def test_installed_appinfra_prints_the_repository_crds(installed: tuple[Path, Path]) -> None:
    _, venv = installed
    printed = list(yaml.safe_load_all(_run(venv / "bin" / "appinfra", "crds", cwd=venv)))
    on_disk = [yaml.safe_load(p.read_text()) for p in sorted((REPO / "crds").glob("*.yaml"))]
    assert sorted(printed, key=lambda c: c["metadata"]["name"]) == on_disk
