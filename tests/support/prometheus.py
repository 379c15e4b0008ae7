"""The Prometheus side of the tests: the Prometheus Operator's CRDs in the control plane
(so the API server validates every ServiceMonitor, PodMonitor and PrometheusRule appinfra
writes against the real schemas) and Prometheus' own promtool, which checks rule
expressions and runs rule unit tests (series in, alerts out).

Both come from Go modules, fetched and built by `make prometheus-crds` / `make promtool`
(which `make test` runs first); a test that needs one fails, saying which target to run,
rather than skip: a skipped check would look green.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.kube import Cluster
from tests.support.servers import REPO

PROMETHEUS_CRDS = REPO / "bin" / "prometheus-crds"
PROMTOOL = REPO / "bin" / "promtool"
CRD_NAMES = (
    "servicemonitors.monitoring.coreos.com",
    "podmonitors.monitoring.coreos.com",
    "prometheusrules.monitoring.coreos.com",
)


def _crd_files() -> list[Path]:
    files = sorted(PROMETHEUS_CRDS.glob("*.yaml"))
    if len(files) != len(CRD_NAMES):
        pytest.fail(f"the Prometheus Operator CRDs are missing in {PROMETHEUS_CRDS}: "
                    "run `make prometheus-crds`")  # fmt: skip
    return files


def install_prometheus_crds(cluster: Cluster) -> None:
    """Apply the CRDs (server-side: they are large) and wait until they are served."""
    args = [arg for path in _crd_files() for arg in ("-f", str(path))]
    cluster.kubectl("apply", "--server-side", "--force-conflicts", *args)
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", *args)


def remove_prometheus_crds(cluster: Cluster) -> None:
    """Delete the CRDs (and with them every object of theirs) and wait until they are gone."""
    cluster.kubectl("delete", "crd", "--ignore-not-found", "--wait=true", *CRD_NAMES)


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    if not PROMTOOL.exists():
        pytest.fail(f"{PROMTOOL} is missing: run `make promtool`")
    return subprocess.run(
        [str(PROMTOOL), *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def check_rules(groups: list[dict[str, Any]]) -> None:
    """`promtool check rules` on a rule file of these groups (a PrometheusRule's
    spec.groups): every expression parses, every name and label is valid."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rules.yaml"
        path.write_text(yaml.safe_dump({"groups": groups}))
        result = promtool("check", "rules", str(path))
    assert result.returncode == 0, f"promtool check rules:\n{result.stdout}{result.stderr}"


def run_rule_tests(groups: list[dict[str, Any]], tests: list[dict[str, Any]],
               evaluation_interval: str = "1m") -> subprocess.CompletedProcess[str]:  # fmt: skip
    """`promtool test rules`: the groups as a rule file and `tests` (promtool's unit-test
    format: input_series, alert_rule_test, ...) as its test file. Returns the result, so
    a caller can assert that a wrong expectation fails too."""
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "rules.yaml").write_text(yaml.safe_dump({"groups": groups}))
        Path(tmp, "tests.yaml").write_text(
            yaml.safe_dump(
                {
                    "rule_files": ["rules.yaml"],
                    "evaluation_interval": evaluation_interval,
                    "tests": tests,
                }
            )
        )
        return promtool("test", "rules", "tests.yaml", cwd=Path(tmp))
