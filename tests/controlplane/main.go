// Command controlplane runs a real, local Kubernetes control plane (etcd,
// kube-apiserver, kube-controller-manager, kube-scheduler) on loopback for
// tests, without Docker. The only simulated part is the nodes: a small
// controller ("nodes") registers Node objects and plays kubelet for the Pods
// bound to them, without running any container.
//
// The Kubernetes components keep process-global state (pflag/klog flag sets,
// the legacy metrics registry, feature gates), so they cannot share one
// process. Everything therefore lives in a single binary with subcommands:
// `up` is a supervisor that runs etcd in-process and re-executes this same
// binary as `kube-apiserver`, `kube-controller-manager`, `kube-scheduler` and
// `nodes` child processes.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

const usage = `usage: controlplane <command> [flags]

commands:
  up                       run etcd + kube-apiserver + kube-controller-manager + kube-scheduler
                           + simulated nodes until SIGTERM/SIGINT
  kube-apiserver ...       run kube-apiserver (used by "up"; flags are kube-apiserver's own)
  kube-controller-manager  run kube-controller-manager (used by "up"; flags are its own)
  kube-scheduler ...       run kube-scheduler (used by "up"; flags are its own)
  nodes ...                run the node simulator (used by "up"; "controlplane nodes -h")
  kubectl ...              run the version-matched kubectl (also when invoked as "kubectl")
  version                  print the Kubernetes and etcd versions built in

Run "controlplane up -h" for the supervisor's flags.
`

func main() {
	stampKubernetesVersion()

	// A symlink bin/kubectl -> controlplane gives tests a kubectl whose version
	// matches the apiserver exactly.
	if strings.TrimSuffix(filepath.Base(os.Args[0]), ".exe") == "kubectl" {
		os.Exit(runKubectl(os.Args[1:]))
	}

	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	cmd, args := os.Args[1], os.Args[2:]
	switch cmd {
	case "up":
		os.Exit(runUp(args))
	case "kube-apiserver":
		os.Exit(runAPIServer(args))
	case "kube-controller-manager":
		os.Exit(runControllerManager(args))
	case "kube-scheduler":
		os.Exit(runScheduler(args))
	case "nodes":
		os.Exit(runNodes(args))
	case "kubectl":
		os.Exit(runKubectl(args))
	case "version", "--version":
		printVersion(os.Stdout)
	case "help", "-h", "--help":
		fmt.Print(usage)
	default:
		fmt.Fprintf(os.Stderr, "controlplane: unknown command %q\n\n%s", cmd, usage)
		os.Exit(2)
	}
}
