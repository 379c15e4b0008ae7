package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"
	_ "unsafe" // for go:linkname

	"k8s.io/component-base/version"
)

// Release builds of Kubernetes stamp their version into
// k8s.io/component-base/version with -ldflags -X. Our build command is a plain
// `go build`, which would leave "v0.0.0-master+$Format:%H$" there: kubectl
// version, /version and the apiserver's compatibility version would all show
// it. The module versions are in the binary's build info anyway, so we set the
// same variables from there at start-up instead.

//go:linkname gitVersion k8s.io/component-base/version.gitVersion
var gitVersion string

//go:linkname gitMajor k8s.io/component-base/version.gitMajor
var gitMajor string

//go:linkname gitMinor k8s.io/component-base/version.gitMinor
var gitMinor string

//go:linkname gitTreeState k8s.io/component-base/version.gitTreeState
var gitTreeState string

//go:linkname gitCommit k8s.io/component-base/version.gitCommit
var gitCommit string

const (
	kubernetesModule = "k8s.io/kubernetes"
	etcdModule       = "go.etcd.io/etcd/server/v3"
)

// moduleVersion returns the version of a dependency as linked into this
// binary (following replace directives), or "unknown".
func moduleVersion(path string) string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	for _, dep := range info.Deps {
		if dep.Path != path {
			continue
		}
		if dep.Replace != nil && dep.Replace.Version != "" {
			return dep.Replace.Version
		}
		return dep.Version
	}
	return "unknown"
}

// stampKubernetesVersion must run before any component reads the version.
func stampKubernetesVersion() {
	v := moduleVersion(kubernetesModule)
	if !strings.HasPrefix(v, "v1.") {
		return // not built as a module (e.g. unknown); keep the defaults
	}
	parts := strings.SplitN(strings.TrimPrefix(v, "v"), ".", 3)
	if len(parts) < 2 {
		return
	}
	gitVersion, gitMajor, gitMinor, gitTreeState = v, parts[0], parts[1], "clean"
	gitCommit = "" // unknown: the module zip carries no commit; better than "$Format:%H$"
	// The package copied gitVersion into its "dynamic" version during init;
	// SetDynamicVersion accepts the new value since it now equals gitVersion.
	_ = version.SetDynamicVersion(v)
}

func printVersion(w io.Writer) {
	fmt.Fprintf(w, "kubernetes %s\n", moduleVersion(kubernetesModule))
	fmt.Fprintf(w, "etcd %s\n", moduleVersion(etcdModule))
	fmt.Fprintf(w, "go %s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
