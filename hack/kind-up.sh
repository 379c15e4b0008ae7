#!/usr/bin/env bash
# `make kind-up`: a kind cluster with appinfra installed from the chart and the
# examples applied, for people who have Docker.
#
# UNTESTED on the project's own machines: they have no Docker engine, so this script
# has never run in CI. The pieces it uses are tested there: the chart (helm lint,
# template, install into a real API server), the Dockerfile (hadolint, and its install
# steps without Docker), the examples. Report what breaks.
#
# Afterwards the e2e suite can run against the cluster:
#   APPINFRA_TEST_KUBECONFIG=$PWD/.tmp/kind/kubeconfig make test-e2e
# Remove it with: kind delete cluster --name appinfra   (or $KIND_CLUSTER)
set -euo pipefail
cd "$(dirname "$0")/.."

cluster=${KIND_CLUSTER:-appinfra}
image=${APPINFRA_IMAGE:-appinfra:dev}
kind_version=${KIND_VERSION:-v0.33.0}
namespace=appinfra-system
kubeconfig=$PWD/.tmp/kind/kubeconfig

command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1 || {
  echo "kind-up needs a running Docker engine (docker info failed)." >&2
  exit 1
}
hack/build-helm.sh
kind=$(command -v kind || true)
if [ -z "$kind" ]; then
  # kind is a Go module, like helm: built, not downloaded.
  GOBIN="$PWD/bin" GOFLAGS=-mod=mod go install "sigs.k8s.io/kind@$kind_version"
  kind=$PWD/bin/kind
fi
kubectl=$(command -v kubectl || echo "$PWD/bin/kubectl")

mkdir -p "$(dirname "$kubeconfig")"
if ! "$kind" get clusters | grep -qx "$cluster"; then
  # KIND_NODE_IMAGE picks the Kubernetes version (default: the kind release's own).
  "$kind" create cluster --name "$cluster" --kubeconfig "$kubeconfig" \
    ${KIND_NODE_IMAGE:+--image "$KIND_NODE_IMAGE"} --wait 120s
else
  "$kind" get kubeconfig --name "$cluster" > "$kubeconfig"
fi
export KUBECONFIG=$kubeconfig

docker build -t "$image" .
"$kind" load docker-image "$image" --name "$cluster"

# CRDs first, with kubectl: helm installs crds/ only on a first install and never
# upgrades them, so they are applied here on every run and helm skips them.
"$kubectl" apply --server-side --force-conflicts -f charts/appinfra/crds/
"$kubectl" wait --for=condition=Established --timeout=60s -f charts/appinfra/crds/
# examples/operator-config/config.yaml is a values file too (secretStores + rateLimit).
bin/helm upgrade --install appinfra charts/appinfra \
  --namespace "$namespace" --create-namespace --skip-crds \
  --set image.repository="${image%:*}" --set image.tag="${image##*:}" \
  --set image.pullPolicy=Never \
  -f examples/operator-config/config.yaml \
  --wait --timeout 5m
"$kubectl" apply --server-side -f examples/

echo
echo "appinfra is running in kind cluster '$cluster'."
echo "  export KUBECONFIG=$kubeconfig"
echo "  kubectl get appinfra -A"
echo "  APPINFRA_TEST_KUBECONFIG=$kubeconfig make test-e2e"
