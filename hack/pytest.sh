#!/usr/bin/env bash
# Run pytest and refuse "no tests ran" (exit 5) as a pass: a suite that
# collects nothing must fail loudly, not look green.
set -uo pipefail
cd "$(dirname "$0")/.."
.venv/bin/pytest "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: failing" >&2
  exit 1
fi
exit "$rc"
