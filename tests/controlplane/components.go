package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/component-base/logs"
	"k8s.io/kubectl/pkg/cmd"
	kubectlutil "k8s.io/kubectl/pkg/cmd/util"
	apiserverapp "k8s.io/kubernetes/cmd/kube-apiserver/app"
	kcmapp "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	schedulerapp "k8s.io/kubernetes/cmd/kube-scheduler/app"

	// The same side-effect imports as the upstream cmd/* mains, so the
	// components behave like the released binaries.
	_ "k8s.io/client-go/plugin/pkg/client/auth"           // kubectl client auth plugins
	_ "k8s.io/component-base/logs/json/register"          // --logging-format=json
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // client-go metrics
	_ "k8s.io/component-base/metrics/prometheus/version"  // version metric
	_ "time/tzdata"                                       // CronJob time zones
)

// The functions below mirror k8s.io/kubernetes/cmd/{kube-apiserver,
// kube-controller-manager,kube-scheduler,kubectl}/*.go. Each runs in its own process (see
// main.go), so the components' global state never meets.

func runAPIServer(args []string) int {
	command := apiserverapp.NewAPIServerCommand()
	command.SetArgs(args)
	return cli.Run(command)
}

func runControllerManager(args []string) int {
	command := kcmapp.NewControllerManagerCommand()
	command.SetArgs(args)
	return cli.Run(command)
}

func runScheduler(args []string) int {
	command := schedulerapp.NewSchedulerCommand()
	command.SetArgs(args)
	return cli.Run(command)
}

func runKubectl(args []string) int {
	// kubectl reads os.Args itself (plugin lookup, early -v parsing), so
	// present it with the argv it would have had as a standalone binary.
	os.Args = append([]string{"kubectl"}, args...)
	logs.GlogSetter(cmd.GetLogVerbosity(os.Args)) // nolint:errcheck
	command := cmd.NewDefaultKubectlCommand()
	if err := cli.RunNoErrOutput(command); err != nil {
		// Prints the error like kubectl does and exits non-zero.
		kubectlutil.CheckErr(err)
	}
	return 0
}
