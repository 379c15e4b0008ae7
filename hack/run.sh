#!/usr/bin/env bash
# `make run`: the operator against the current kube context if it answers, else
# against a local control plane started here (and stopped when the operator exits).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/bin:$PATH"
config=${APPINFRA_CONFIG:-examples/operator-config/config.yaml}
cp_pid=""
cleanup() { [ -n "$cp_pid" ] && kill "$cp_pid" 2>/dev/null && wait "$cp_pid" 2>/dev/null; true; }
trap cleanup EXIT INT TERM

if kubectl --request-timeout=5s get --raw /readyz >/dev/null 2>&1; then
  echo "using the current kube context: $(kubectl config current-context 2>/dev/null || echo in-cluster)"
else
  dir=$PWD/.tmp/run
  mkdir -p "$dir"
  rm -f "$dir/kubeconfig"
  echo "no reachable cluster in the current kube context: starting a local control plane"
  bin/controlplane up --kubeconfig "$dir/kubeconfig" --log-dir "$dir/logs" >"$dir/controlplane.log" 2>&1 &
  cp_pid=$!
  for _ in $(seq 1 180); do
    [ -f "$dir/kubeconfig" ] && break
    kill -0 "$cp_pid" 2>/dev/null || { cat "$dir/controlplane.log" >&2; exit 1; }
    sleep 1
  done
  [ -f "$dir/kubeconfig" ] || { echo "control plane not ready after 180s; see $dir" >&2; exit 1; }
  export KUBECONFIG=$dir/kubeconfig
  echo "local control plane ready; in another shell: export KUBECONFIG=$KUBECONFIG PATH=$PWD/bin:\$PATH"
fi

if compgen -G "crds/*.yaml" >/dev/null; then
  kubectl apply --server-side --force-conflicts -f crds/
  kubectl wait --for=condition=Established --timeout=60s -f crds/
fi
args=(run --config "$config")
[ -n "${APPINFRA_NAMESPACE:-}" ] && args+=(--namespace "$APPINFRA_NAMESPACE")
.venv/bin/appinfra "${args[@]}"
