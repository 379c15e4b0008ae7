#!/usr/bin/env bash
# Build bin/controlplane (etcd + kube-apiserver + kube-controller-manager + kubectl
# in one binary) from tests/controlplane. Skipped when the Go sources, go.mod,
# go.sum and the Go version are unchanged since the last build: a content hash,
# not mtimes, because a fresh clone gives every file a new mtime.
set -euo pipefail
cd "$(dirname "$0")/.."
src=tests/controlplane
stamp=bin/.controlplane.sha256
if ! command -v go >/dev/null 2>&1; then
  echo "Go is needed to build the local control plane (https://go.dev/dl/)." >&2
  echo "Or point APPINFRA_TEST_KUBECONFIG / your kube context at an existing cluster." >&2
  exit 1
fi
want=$( { go version; cd "$src" && find . -name '*.go' -o -name go.mod -o -name go.sum | LC_ALL=C sort | xargs sha256sum; } | sha256sum | cut -d' ' -f1)
if [ -x bin/controlplane ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "bin/controlplane is up to date"
  exit 0
fi
mkdir -p bin
echo "building bin/controlplane (the first build downloads and compiles Kubernetes: several minutes)"
start=$(date +%s)
(cd "$src" && go build -trimpath -o ../../bin/controlplane .)
ln -sf controlplane bin/kubectl
echo "$want" > "$stamp"
echo "built bin/controlplane in $(( $(date +%s) - start ))s"
