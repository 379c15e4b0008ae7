#!/usr/bin/env bash
# Create .venv from uv.lock. uv, not pip: pip's resolver backtracks for a long
# time on boto3 + moto. uv itself comes from PyPI into .tools/ if not on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v uv >/dev/null 2>&1; then
  UV=uv
else
  if [ ! -x .tools/bin/uv ]; then
    python3 -m venv .tools
    .tools/bin/pip install --quiet --disable-pip-version-check uv
  fi
  UV=.tools/bin/uv
fi
"$UV" sync --frozen --extra test --extra dev
