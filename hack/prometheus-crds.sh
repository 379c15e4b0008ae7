#!/usr/bin/env bash
# The Prometheus Operator's CRDs that appinfra writes objects of (ServiceMonitor,
# PodMonitor, PrometheusRule), from its Go module (served by the Go module proxy), into
# bin/prometheus-crds/. The e2e tests install them into the local control plane, so the
# API server validates every object appinfra writes against the real schemas.
# Skipped when bin/prometheus-crds holds this version already.
set -euo pipefail
cd "$(dirname "$0")/.."
version=v0.85.0
out=bin/prometheus-crds
if [ -f "$out/VERSION" ] && [ "$(cat "$out/VERSION")" = "$version" ]; then
  echo "$out is up to date ($version)"
  exit 0
fi
if ! command -v go >/dev/null 2>&1; then
  echo "Go is needed to fetch the Prometheus Operator CRDs (https://go.dev/dl/)." >&2
  exit 1
fi
dir=$(GOFLAGS=-mod=mod go mod download -json "github.com/prometheus-operator/prometheus-operator@$version" \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')
mkdir -p "$out"
for plural in servicemonitors podmonitors prometheusrules; do
  cp "$dir/example/prometheus-operator-crd/monitoring.coreos.com_$plural.yaml" "$out/"
done
chmod u+w "$out"/*.yaml
echo "$version" > "$out/VERSION"
echo "fetched the Prometheus Operator $version CRDs into $out"
