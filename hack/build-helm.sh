#!/usr/bin/env bash
# Build bin/helm from Helm's own Go module (the only source of the helm binary here:
# no release downloads). Skipped when bin/helm already reports the pinned version.
# Cold build (empty Go module and build caches for Helm's dependencies) on 2 cores:
# see the measured time in charts/appinfra/README.md ("Developing the chart").
set -euo pipefail
cd "$(dirname "$0")/.."
HELM_MODULE=helm.sh/helm/v4
HELM_VERSION=${HELM_VERSION:-v4.3.1}
if [ -x bin/helm ] && bin/helm version --template '{{.Version}}' 2>/dev/null | grep -qx "$HELM_VERSION"; then
  echo "bin/helm $HELM_VERSION is up to date"
  exit 0
fi
if ! command -v go >/dev/null 2>&1; then
  echo "Go is needed to build bin/helm (https://go.dev/dl/)." >&2
  exit 1
fi
mkdir -p bin
echo "building bin/helm $HELM_VERSION from $HELM_MODULE (first build: a few minutes)"
start=$(date +%s)
# -mod=mod: build from the module's own go.mod/go.sum, not a vendor dir or our workspace.
# The version is stamped the way Helm's Makefile does, so `helm version` reports it.
GOBIN="$PWD/bin" GOFLAGS=-mod=mod CGO_ENABLED=0 go install -trimpath \
  -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=$HELM_VERSION" \
  "$HELM_MODULE/cmd/helm@$HELM_VERSION"
bin/helm version --template '{{.Version}}' | grep -qx "$HELM_VERSION" || {
  echo "bin/helm does not report $HELM_VERSION: $(bin/helm version)" >&2
  exit 1
}
echo "built bin/helm $HELM_VERSION in $(( $(date +%s) - start ))s"
