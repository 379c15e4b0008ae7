#!/usr/bin/env bash
# `make run`: the operator against the current kube context if it answers, else against
# a local control plane and a local OpenBao dev server started here; Ctrl-C (or TERM)
# stops everything this script started. Arguments are passed to `appinfra run`.
#
# Environment: APPINFRA_CONFIG (operator configuration; default: the generated one on a
# local control plane, examples/operator-config/config.yaml on an existing cluster),
# APPINFRA_NAMESPACE (watch only this namespace), APPINFRA_RUN_DIR (where the local
# servers keep kubeconfig, logs and the generated configuration; default .tmp/run).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/bin:$PATH"
config=${APPINFRA_CONFIG:-}
local_plane=
dir=${APPINFRA_RUN_DIR:-$PWD/.tmp/run}

# Children run in the background and the script waits for them, so a signal reaches the
# trap at once (bash runs traps only between foreground commands); they are stopped in
# reverse order of start: the operator, then OpenBao, then the control plane.
pids=()
cleanup() {
  local i
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    # `|| true`: a child's non-zero exit status must not end the loop under `set -e`.
    { kill "${pids[i]}" 2>/dev/null && wait "${pids[i]}" 2>/dev/null; } || true
  done
  true
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# wait_for FILE PID WHAT LOG: until FILE exists; fail if PID exits first or after 180 s.
wait_for() {
  for _ in $(seq 1 360); do
    [ -f "$1" ] && return 0
    kill -0 "$2" 2>/dev/null || { cat "$4" >&2; echo "$3 exited; see $4" >&2; exit 1; }
    sleep 0.5
  done
  echo "$3 not ready after 180s; see $4" >&2
  exit 1
}

if kubectl --request-timeout=5s get --raw /readyz >/dev/null 2>&1; then
  echo "using the current kube context: $(kubectl config current-context 2>/dev/null || echo in-cluster)"
  config=${config:-examples/operator-config/config.yaml}
else
  local_plane=1
  mkdir -p "$dir"
  rm -f "$dir/kubeconfig"
  echo "no reachable cluster in the current kube context: starting a local control plane"
  bin/controlplane up --kubeconfig "$dir/kubeconfig" --log-dir "$dir/logs" >"$dir/controlplane.log" 2>&1 &
  pids+=($!)
  wait_for "$dir/kubeconfig" "${pids[-1]}" "the control plane" "$dir/controlplane.log"
  export KUBECONFIG=$dir/kubeconfig
  echo "local control plane ready; in another shell: export KUBECONFIG=$KUBECONFIG PATH=$PWD/bin:\$PATH"
  if [ -z "$config" ]; then
    echo "starting a local OpenBao dev server with the keys examples/ reads"
    hack/run-openbao.sh "$dir" >"$dir/openbao.log" 2>&1 &
    pids+=($!)
    wait_for "$dir/operator-config.yaml" "${pids[-1]}" "OpenBao" "$dir/openbao.log"
    config=$dir/operator-config.yaml
    echo "OpenBao ready; for the bao CLI: source $dir/openbao.env"
  fi
fi

if compgen -G "crds/*.yaml" >/dev/null; then
  kubectl apply --server-side --force-conflicts -f crds/
  kubectl wait --for=condition=Established --timeout=60s -f crds/
fi
# The local control plane also gets the Prometheus Operator's CRDs (`make prometheus-crds`),
# so that examples/' monitoring and alerts sections are created there too. Never on an
# existing cluster: those CRDs belong to whoever runs the Prometheus Operator.
if [ -n "$local_plane" ] && compgen -G "bin/prometheus-crds/*.yaml" >/dev/null; then
  kubectl apply --server-side --force-conflicts -f bin/prometheus-crds/
  kubectl wait --for=condition=Established --timeout=60s -f bin/prometheus-crds/
fi
args=(run --config "$config")
[ -n "${APPINFRA_NAMESPACE:-}" ] && args+=(--namespace "$APPINFRA_NAMESPACE")
echo "operator configuration: $config"
.venv/bin/appinfra "${args[@]}" "$@" &
pids+=($!)
wait "${pids[-1]}"
