#!/usr/bin/env bash
# Build a small Go test tool from its own module under tests/ into bin/:
#   hack/build-gotool.sh luahealth        tests/luahealth       -> bin/luahealth
#   hack/build-gotool.sh envoyratelimit   tests/envoyratelimit  -> bin/ratelimit
#   hack/build-gotool.sh promtool         tests/promtool        -> bin/promtool
#     (Prometheus' promtool, a `tool` of that module: a few minutes cold, then cached)
# Skipped when the module's Go sources, go.mod, go.sum and the Go version are unchanged
# since the last build: a content hash (bin/.<tool>.sha256), not mtimes, because a fresh
# clone gives every file a new mtime.
set -euo pipefail
cd "$(dirname "$0")/.."
tool=${1:?usage: hack/build-gotool.sh luahealth|envoyratelimit|promtool}
pkg=.  # the package to build, in the module's own terms
case "$tool" in
  luahealth) src=tests/luahealth; out=bin/luahealth ;;
  envoyratelimit) src=tests/envoyratelimit; out=bin/ratelimit ;;
  promtool) src=tests/promtool; out=bin/promtool; pkg=github.com/prometheus/prometheus/cmd/promtool ;;
  *) echo "unknown tool $tool" >&2; exit 2 ;;
esac
stamp=bin/.$tool.sha256
if ! command -v go >/dev/null 2>&1; then
  echo "Go is needed to build $out (https://go.dev/dl/)." >&2
  exit 1
fi
want=$( { go version; cd "$src" && find . -name '*.go' -o -name go.mod -o -name go.sum | LC_ALL=C sort | xargs sha256sum; } | sha256sum | cut -d' ' -f1)
if [ -x "$out" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "$out is up to date"
  exit 0
fi
mkdir -p bin
start=$(date +%s)
(cd "$src" && GOFLAGS=-buildvcs=false go build -trimpath -o "../../$out" "$pkg")
echo "$want" > "$stamp"
echo "built $out in $(( $(date +%s) - start ))s"
