package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

const (
	serviceAccountIssuer = "https://kubernetes.default.svc.cluster.local"
	serviceClusterIPs    = "10.96.0.0/16"
	firstServiceIP       = "10.96.0.1" // the "kubernetes" Service; in the serving cert
)

type upOptions struct {
	kubeconfig     string
	dataDir        string
	keepData       bool
	port           int
	etcdPort       int
	logDir         string
	timeout        time.Duration
	apiserverArgs  stringList
	controllerArgs stringList
	schedulerArgs  stringList
	nodesArgs      stringList
	nodes          int
}

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, " ") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

func runUp(args []string) int {
	var o upOptions
	fs := flag.NewFlagSet("controlplane up", flag.ContinueOnError)
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "where to write the admin kubeconfig once the control plane is ready (required); removed again on shutdown")
	fs.StringVar(&o.dataDir, "data-dir", "", "directory for etcd data, certificates and logs (default: a new temporary directory)")
	fs.BoolVar(&o.keepData, "keep-data", false, "keep the data dir on shutdown; a later run with the same --data-dir reuses its etcd data and certificates")
	fs.IntVar(&o.port, "port", 0, "kube-apiserver secure port on 127.0.0.1 (0: a free port)")
	fs.IntVar(&o.etcdPort, "etcd-port", 0, "etcd client port on 127.0.0.1 (0: a free port)")
	fs.StringVar(&o.logDir, "log-dir", "", "directory for the components' logs (default: DATA_DIR/logs)")
	fs.DurationVar(&o.timeout, "timeout", 3*time.Minute, "how long to wait for the control plane to become ready")
	fs.Var(&o.apiserverArgs, "apiserver-arg", "extra kube-apiserver flag, e.g. --apiserver-arg=--v=4 (repeatable; later flags win)")
	fs.Var(&o.controllerArgs, "controller-manager-arg", "extra kube-controller-manager flag (repeatable; later flags win)")
	fs.IntVar(&o.nodes, "nodes", defaultNodeCount, fmt.Sprintf("simulated nodes (0..%d); 0 runs neither kube-scheduler nor the node simulator, so Pods stay Pending", maxNodeCount))
	fs.Var(&o.schedulerArgs, "scheduler-arg", "extra kube-scheduler flag (repeatable; later flags win)")
	fs.Var(&o.nodesArgs, "nodes-arg", `extra node simulator flag, e.g. --nodes-arg=--ready-delay=3s (repeatable; see "controlplane nodes -h"; set the count with --nodes)`)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if o.kubeconfig == "" || fs.NArg() != 0 || o.nodes < 0 || o.nodes > maxNodeCount {
		fmt.Fprintf(os.Stderr, "controlplane up: --kubeconfig is required, --nodes must be 0..%d, and no positional arguments are accepted\n", maxNodeCount)
		fs.Usage()
		return 2
	}

	log.SetPrefix("controlplane: ")
	log.SetFlags(log.Ltime | log.Lmicroseconds)

	// Children are started with Pdeathsig so that they die if the supervisor
	// is killed outright. The kernel ties Pdeathsig to the *thread* that
	// forked, so pin this goroutine (which starts every child) to its thread;
	// otherwise the Go runtime could retire that thread and kill a child.
	runtime.LockOSThread()

	s := &supervisor{opts: o}
	err := s.run()
	code := 0
	if err != nil && !errors.Is(err, errInterrupted) {
		// Reported before the teardown so that it sits next to its cause.
		log.Printf("error: %v", err)
		code = 1
	}
	s.teardown()
	log.Printf("stopped (exit code %d)", code)
	return code
}

var errInterrupted = errors.New("interrupted by signal")

type supervisor struct {
	opts        upOptions
	kubeconfig  string // absolute
	dataDir     string
	tempDataDir bool // we created dataDir, so we may remove all of it
	logDir      string
	pki         *pki
	etcd        *embed.Etcd
	apiserver   *child
	kcm         *child
	scheduler   *child // nil with --nodes 0
	nodes       *child // the node simulator; nil with --nodes 0
	signals     chan os.Signal
	force       chan struct{} // closed by a second signal: stop waiting, kill
}

func (s *supervisor) run() error {
	o := s.opts
	s.signals = make(chan os.Signal, 2)
	s.force = make(chan struct{})
	signal.Notify(s.signals, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)

	var err error
	if s.kubeconfig, err = filepath.Abs(o.kubeconfig); err != nil {
		return err
	}
	// The kubeconfig exists exactly while the control plane is ready: a
	// stale one from an earlier run would let a watcher start too early.
	if err := os.Remove(s.kubeconfig); err != nil && !os.IsNotExist(err) {
		return err
	}

	if o.dataDir == "" {
		if s.dataDir, err = os.MkdirTemp("", "controlplane-"); err != nil {
			return err
		}
		s.tempDataDir = true
	} else {
		if s.dataDir, err = filepath.Abs(o.dataDir); err != nil {
			return err
		}
		if err := os.MkdirAll(s.dataDir, 0o700); err != nil {
			return err
		}
	}
	s.logDir = o.logDir
	if s.logDir == "" {
		s.logDir = filepath.Join(s.dataDir, "logs")
	}
	if err := os.MkdirAll(s.logDir, 0o755); err != nil {
		return err
	}
	components := []string{"etcd", "kube-apiserver", "kube-controller-manager"}
	if o.nodes > 0 {
		components = append(components, "kube-scheduler", "nodes")
	}
	logs := map[string]string{}
	var logLine strings.Builder
	for _, c := range components {
		logs[c] = filepath.Join(s.logDir, c+".log")
		fmt.Fprintf(&logLine, " %s=%s", c, logs[c])
	}
	fmt.Printf("data-dir %s\n", s.dataDir)
	fmt.Printf("logs%s\n", logLine.String())

	s.pki = newPKI(filepath.Join(s.dataDir, "pki"))
	reused, err := s.pki.ensure()
	if err != nil {
		return fmt.Errorf("certificates: %w", err)
	}
	if reused {
		log.Printf("reusing certificates in %s", s.pki.dir)
	}

	etcdDir := filepath.Join(s.dataDir, "etcd")
	if _, err := os.Stat(filepath.Join(etcdDir, "member")); err == nil {
		log.Printf("reusing etcd data in %s", etcdDir)
	}
	var etcdURL string
	s.etcd, etcdURL, err = startEtcd(etcdDir, logs["etcd"], o.etcdPort)
	if err != nil {
		return err
	}
	log.Printf("etcd ready at %s", etcdURL)
	if err := s.checkSignal(); err != nil {
		return err
	}

	port := o.port
	if port == 0 {
		if port, err = freePort(); err != nil {
			return err
		}
	}
	server := "https://127.0.0.1:" + strconv.Itoa(port)

	kcmKubeconfig := filepath.Join(s.dataDir, "kube-controller-manager.kubeconfig")
	if err := writeKubeconfig(kcmKubeconfig, server, s.pki.caCert, s.pki.kcmCert, s.pki.kcmKey, "system:kube-controller-manager"); err != nil {
		return err
	}
	schedulerKubeconfig := filepath.Join(s.dataDir, "kube-scheduler.kubeconfig")
	nodesKubeconfig := filepath.Join(s.dataDir, "nodes.kubeconfig")
	if o.nodes > 0 {
		if err := writeKubeconfig(schedulerKubeconfig, server, s.pki.caCert, s.pki.schedulerCert, s.pki.schedKey, "system:kube-scheduler"); err != nil {
			return err
		}
		if err := writeKubeconfig(nodesKubeconfig, server, s.pki.caCert, s.pki.nodesCert, s.pki.nodesKey, "controlplane:nodes"); err != nil {
			return err
		}
	}

	s.apiserver, err = startChild("kube-apiserver", logs["kube-apiserver"], append(s.apiserverFlags(port, etcdURL), o.apiserverArgs...))
	if err != nil {
		return err
	}
	probe, err := newProber(server, s.pki)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	if err := s.waitFor(ctx, "kube-apiserver /readyz", probe.apiserverReady, s.apiserver); err != nil {
		return err
	}
	log.Printf("kube-apiserver ready at %s", server)

	// kcm gives up if the apiserver is not healthy within 10s, so it starts
	// only now.
	s.kcm, err = startChild("kube-controller-manager", logs["kube-controller-manager"], append(s.controllerManagerFlags(kcmKubeconfig), o.controllerArgs...))
	if err != nil {
		return err
	}
	running := []*child{s.apiserver, s.kcm}
	// Heartbeats have one-second precision.
	nodesStart := time.Now().Add(-time.Second)
	if o.nodes > 0 {
		// Both only need a ready apiserver; they start alongside kcm, whose
		// node-lifecycle controller lifts the not-ready taint off new nodes.
		s.scheduler, err = startChild("kube-scheduler", logs["kube-scheduler"], append(s.schedulerFlags(schedulerKubeconfig), o.schedulerArgs...))
		if err != nil {
			return err
		}
		s.nodes, err = startChild("nodes", logs["nodes"], append(s.nodesFlags(nodesKubeconfig), o.nodesArgs...))
		if err != nil {
			return err
		}
		running = append(running, s.scheduler, s.nodes)
	}
	// The default ServiceAccount appears once kcm's controllers run; waiting
	// for it means tests can create Pods (ServiceAccount admission needs it)
	// and rely on controllers from the first request.
	if err := s.waitFor(ctx, "kube-controller-manager (default ServiceAccount)", probe.defaultServiceAccountExists, running...); err != nil {
		return err
	}
	if o.nodes > 0 {
		// Ready, heartbeat from this run, and schedulable (no taint left):
		// a Deployment created right after "ready" gets scheduled at once.
		names := make([]string, o.nodes)
		for i := range names {
			names[i] = nodeName(i + 1)
		}
		check := func(ctx context.Context) error { return probe.nodesReady(ctx, names, nodesStart) }
		if err := s.waitFor(ctx, fmt.Sprintf("%d nodes Ready and untainted", o.nodes), check, running...); err != nil {
			return err
		}
	}

	if err := writeKubeconfig(s.kubeconfig, server, s.pki.caCert, s.pki.adminCert, s.pki.adminKey, "kubernetes-admin"); err != nil {
		return err
	}
	fmt.Printf("ready kubeconfig=%s server=%s\n", s.kubeconfig, server)

	// Run until told to stop or until a component dies.
	select {
	case sig := <-s.signals:
		log.Printf("received %v, shutting down", sig)
		return errInterrupted
	case <-s.apiserver.done:
		return s.apiserver.unexpectedExit()
	case <-s.kcm.done:
		return s.kcm.unexpectedExit()
	case <-s.schedulerDone():
		return s.scheduler.unexpectedExit()
	case <-s.nodesDone():
		return s.nodes.unexpectedExit()
	case err := <-s.etcd.Err():
		return fmt.Errorf("etcd failed: %w (log: %s)", err, logs["etcd"])
	}
}

func (s *supervisor) apiserverFlags(port int, etcdURL string) []string {
	p := s.pki
	return []string{
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		"--etcd-servers=" + etcdURL,
		// Never fall back to writing self-signed certs to /var/run/kubernetes.
		"--cert-dir=" + p.dir,
		"--tls-cert-file=" + p.servingCert,
		"--tls-private-key-file=" + p.servingKey,
		"--client-ca-file=" + p.caCert,
		"--service-account-key-file=" + p.saPub,
		"--service-account-signing-key-file=" + p.saKey,
		"--service-account-issuer=" + serviceAccountIssuer,
		"--api-audiences=" + serviceAccountIssuer + ",https://kubernetes.default.svc",
		"--authorization-mode=Node,RBAC",
		"--service-cluster-ip-range=" + serviceClusterIPs,
		"--allow-privileged=true",
		// The "kubernetes" Service's Endpoints would have to point at
		// 127.0.0.1, which Endpoints validation rejects; nothing in-cluster
		// needs them (no Pod runs for real, not even on simulated nodes).
		"--endpoint-reconciler-type=none",
		// Tests stop the control plane often; do not linger on shutdown.
		"--shutdown-delay-duration=0s",
	}
}

// schedulerDone and nodesDone never fire when the component is not running.
func (s *supervisor) schedulerDone() <-chan struct{} {
	if s.scheduler == nil {
		return nil
	}
	return s.scheduler.done
}

func (s *supervisor) nodesDone() <-chan struct{} {
	if s.nodes == nil {
		return nil
	}
	return s.nodes.done
}

func (s *supervisor) schedulerFlags(kubeconfig string) []string {
	return []string{
		"--kubeconfig=" + kubeconfig,
		"--leader-elect=false",
		// As for kcm: no HTTPS endpoint of its own (so no authn/authz
		// kubeconfigs either), one port less to find.
		"--secure-port=0",
	}
}

func (s *supervisor) nodesFlags(kubeconfig string) []string {
	return []string{
		"--kubeconfig=" + kubeconfig,
		"--count=" + strconv.Itoa(s.opts.nodes),
	}
}

func (s *supervisor) controllerManagerFlags(kubeconfig string) []string {
	p := s.pki
	return []string{
		// kcm creates this directory if missing; the default is under
		// /usr/libexec, which a test must not touch.
		"--flex-volume-plugin-dir=" + filepath.Join(s.dataDir, "flexvolume"),
		"--kubeconfig=" + kubeconfig,
		"--authentication-kubeconfig=" + kubeconfig,
		"--authorization-kubeconfig=" + kubeconfig,
		// Every controller enabled by default (deployment, replicaset,
		// garbage-collector, namespace, serviceaccount, serviceaccount-token,
		// node-lifecycle, ...). v1.37 has no cloud-provider controllers left
		// in kcm; the node ones are idle without (simulated) nodes.
		"--controllers=*",
		"--service-account-private-key-file=" + p.saKey,
		"--root-ca-file=" + p.caCert,
		"--use-service-account-credentials=true",
		// CSRs for the built-in signers get signed by our CA.
		"--cluster-signing-cert-file=" + p.caCert,
		"--cluster-signing-key-file=" + p.caKey,
		"--leader-elect=false",
		"--bind-address=127.0.0.1",
		// 0 turns kcm's own HTTPS endpoint (healthz/metrics) off: one port
		// less to find, and readiness is observed through the apiserver.
		"--secure-port=0",
	}
}

// checkSignal returns errInterrupted if a stop signal arrived during start-up.
func (s *supervisor) checkSignal() error {
	select {
	case sig := <-s.signals:
		log.Printf("received %v during start-up, shutting down", sig)
		return errInterrupted
	default:
		return nil
	}
}

// waitFor polls check until it succeeds, ctx expires, a signal arrives or one
// of the children exits.
func (s *supervisor) waitFor(ctx context.Context, what string, check func(context.Context) error, children ...*child) error {
	start := time.Now()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	var lastErr error
	for {
		if lastErr = check(ctx); lastErr == nil {
			log.Printf("%s ok after %.1fs", what, time.Since(start).Seconds())
			return nil
		}
		for _, c := range children {
			select {
			case <-c.done:
				return c.unexpectedExit()
			default:
			}
		}
		select {
		case sig := <-s.signals:
			log.Printf("received %v during start-up, shutting down", sig)
			return errInterrupted
		case err := <-s.etcd.Err():
			return fmt.Errorf("etcd failed: %w", err)
		case <-ctx.Done():
			for _, c := range children {
				c.dumpLogTail()
			}
			return fmt.Errorf("timed out waiting for %s: %v", what, lastErr)
		case <-tick.C:
		}
	}
}

// teardown stops whatever was started, in reverse dependency order: node
// simulator, scheduler, controller-manager, apiserver, then etcd (the
// apiserver needs etcd to shut down cleanly). A second signal during teardown
// skips the grace periods.
func (s *supervisor) teardown() {
	go func() {
		if s.signals == nil {
			return
		}
		// The first signal may still be queued if we failed for another
		// reason; either way, one more means "hurry".
		<-s.signals
		select {
		case <-s.force:
		default:
			log.Print("second signal: killing components")
			close(s.force)
		}
	}()
	if s.kubeconfig != "" {
		_ = os.Remove(s.kubeconfig)
	}
	if s.nodes != nil {
		s.nodes.stop(10*time.Second, s.force)
	}
	if s.scheduler != nil {
		s.scheduler.stop(10*time.Second, s.force)
	}
	if s.kcm != nil {
		s.kcm.stop(10*time.Second, s.force)
	}
	if s.apiserver != nil {
		s.apiserver.stop(20*time.Second, s.force)
	}
	if s.etcd != nil {
		s.etcd.Close()
		log.Print("etcd stopped")
	}
	if s.dataDir != "" && !s.opts.keepData {
		s.removeData()
	}
}

// removeData deletes the data dir. A directory we did not create is only
// emptied of what we put there, then removed if nothing else is left, so a
// mistaken --data-dir cannot wipe unrelated files.
func (s *supervisor) removeData() {
	if s.tempDataDir {
		if err := os.RemoveAll(s.dataDir); err != nil {
			log.Printf("removing %s: %v", s.dataDir, err)
		}
		return
	}
	for _, p := range []string{"etcd", "pki", "logs", "flexvolume", "kube-controller-manager.kubeconfig", "kube-scheduler.kubeconfig", "nodes.kubeconfig"} {
		if err := os.RemoveAll(filepath.Join(s.dataDir, p)); err != nil {
			log.Printf("removing %s: %v", p, err)
		}
	}
	if err := os.Remove(s.dataDir); err != nil {
		log.Printf("left %s in place: %v", s.dataDir, err)
	}
}
