#!/usr/bin/env bash
# Least privilege, proven: remove one permission of the chart's RBAC at a time and show
# which user-visible scenario breaks (tests/support/rbac_ablation.py). Not part of
# `make test`: it starts ~75 operators against a private control plane and OpenBao.
set -euo pipefail
cd "$(dirname "$0")/.."
export TMPDIR="${TMPDIR:-/tmp}"
exec .venv/bin/python -m tests.support.rbac_ablation "$@"
