#!/usr/bin/env bash
# Build External Secrets Operator from its Go module (bench/eso) into bin/external-secrets,
# for `make bench-peers`. ESO's go.mod has a non-local replace, so `go install` refuses it;
# bench/eso is a consumer module that requires it and copies that replace.
# About 320 MB of module downloads and a long first compile (several minutes on 2 cores):
# not part of `make test`. Skipped when bench/eso/go.mod, go.sum and the Go version are
# unchanged since the last build: a content hash (bin/.external-secrets.sha256), not
# mtimes, because a fresh clone gives every file a new mtime.
set -euo pipefail
cd "$(dirname "$0")/.."
src=bench/eso
out=bin/external-secrets
stamp=bin/.external-secrets.sha256
if ! command -v go >/dev/null 2>&1; then
  echo "Go 1.24+ is needed to build $out (https://go.dev/dl/)." >&2
  exit 1
fi
want=$( { go version; cd "$src" && sha256sum go.mod go.sum; } | sha256sum | cut -d' ' -f1)
if [ -x "$out" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "$out is up to date"
  exit 0
fi
mkdir -p bin
start=$(date +%s)
echo "building $out (External Secrets Operator $(awk '$1=="github.com/external-secrets/external-secrets"{print $2}' "$src/go.mod")); the first build takes several minutes"
(cd "$src" && GOFLAGS=-buildvcs=false go build -trimpath -o "../../$out" github.com/external-secrets/external-secrets)
echo "$want" > "$stamp"
echo "built $out in $(( $(date +%s) - start ))s"
