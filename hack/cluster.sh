#!/usr/bin/env bash
# Run the local control plane in the foreground; Ctrl-C stops it and removes its data.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${APPINFRA_CLUSTER_DIR:-$PWD/.tmp/cluster}
mkdir -p "$dir"
echo "starting the local control plane (etcd, kube-apiserver, kube-controller-manager)..."
echo "when it prints 'ready', in another shell:"
echo "  export KUBECONFIG=$dir/kubeconfig PATH=$PWD/bin:\$PATH"
exec bin/controlplane up --kubeconfig "$dir/kubeconfig" --log-dir "$dir/logs"
