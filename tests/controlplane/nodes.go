package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/workqueue"
)

// The node simulator ("controlplane nodes") stands in for N kubelets: it
// registers Node objects, keeps them alive (Lease + Ready heartbeat), and
// drives the Pods bound to them through the status changes a kubelet would
// make: Running with an IP at once, Ready a moment later, and removal with a
// zero grace period once deleted. No container ever runs.

const (
	// simulatedLabel marks the nodes this simulator owns; stale ones (from a
	// run with a larger --nodes on the same data) are deleted at start.
	simulatedLabel = "controlplane.appinfra.dev/simulated-node"
	// notReadyMarker in a container image keeps that container, and so its
	// Pod, from ever becoming ready: tests use it to make a rollout hang.
	notReadyMarker   = "not-ready"
	nodeLeaseNS      = "kube-node-lease"
	leaseDuration    = 40 // seconds, as the kubelet's default
	defaultNodeCount = 2
	maxNodeCount     = 250 // node IPs are 10.0.0.1..N
)

// nodeName is shared with the supervisor, which waits for these names.
func nodeName(i int) string { return fmt.Sprintf("fake-node-%d", i) }

type nodesOptions struct {
	kubeconfig     string
	count          int
	readyDelay     time.Duration
	leaseInterval  time.Duration
	statusInterval time.Duration
	workers        int
}

func runNodes(args []string) int {
	var o nodesOptions
	fs := flag.NewFlagSet("controlplane nodes", flag.ContinueOnError)
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig of a user allowed to manage nodes, leases and pods (required)")
	fs.IntVar(&o.count, "count", defaultNodeCount, fmt.Sprintf("number of nodes to simulate, named fake-node-1..N (1..%d)", maxNodeCount))
	fs.DurationVar(&o.readyDelay, "ready-delay", time.Second, "how long a Pod is Running before its containers become ready")
	fs.DurationVar(&o.leaseInterval, "lease-interval", 10*time.Second, "how often each node's Lease in kube-node-lease is renewed")
	fs.DurationVar(&o.statusInterval, "status-interval", time.Minute, "how often each node's Ready condition heartbeat is refreshed")
	fs.IntVar(&o.workers, "workers", 4, "Pods processed concurrently")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if o.kubeconfig == "" || fs.NArg() != 0 || o.count < 1 || o.count > maxNodeCount || o.workers < 1 {
		fmt.Fprintf(os.Stderr, "controlplane nodes: --kubeconfig is required, --count must be 1..%d, no positional arguments\n", maxNodeCount)
		fs.Usage()
		return 2
	}
	log.SetPrefix("nodes: ")
	log.SetFlags(log.Ltime | log.Lmicroseconds)

	cfg, err := clientcmd.BuildConfigFromFlags("", o.kubeconfig)
	if err != nil {
		log.Printf("kubeconfig: %v", err)
		return 1
	}
	// One status write per Pod start and one per Pod readiness: the client-go
	// default of 5 QPS would make a 50-replica rollout crawl.
	cfg.QPS, cfg.Burst = 100, 200
	cfg.UserAgent = "controlplane-nodes"
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		log.Printf("client: %v", err)
		return 1
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer stop()
	err = newSimulator(client, o).run(ctx)
	if err != nil && !errors.Is(err, context.Canceled) {
		log.Printf("error: %v", err)
		return 1
	}
	log.Print("stopped")
	return 0
}

type simNode struct {
	name string
	ip   string
	uid  types.UID // of the Node object, for the Lease's owner reference
}

type simulator struct {
	client kubernetes.Interface
	opts   nodesOptions
	nodes  []*simNode
	byName map[string]*simNode
	pods   corelisters.PodLister
	queue  workqueue.TypedRateLimitingInterface[string]

	mu           sync.Mutex
	ipOf         map[types.UID]uint32 // pod -> offset in 10.244.0.0/16
	ipUsed       map[uint32]bool
	nextIP       uint32
	runningSince map[types.UID]time.Time // when we set the Pod Running (full precision)
}

func newSimulator(client kubernetes.Interface, o nodesOptions) *simulator {
	s := &simulator{
		client:       client,
		opts:         o,
		byName:       map[string]*simNode{},
		ipOf:         map[types.UID]uint32{},
		ipUsed:       map[uint32]bool{},
		nextIP:       1,
		runningSince: map[types.UID]time.Time{},
	}
	for i := 1; i <= o.count; i++ {
		n := &simNode{name: nodeName(i), ip: fmt.Sprintf("10.0.0.%d", i)}
		s.nodes = append(s.nodes, n)
		s.byName[n.name] = n
	}
	s.queue = workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.DefaultTypedControllerRateLimiter[string](),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "pods"})
	return s
}

func (s *simulator) run(ctx context.Context) error {
	defer s.queue.ShutDown()

	// The apiserver is ready before "up" starts us, but retry anyway: a
	// transient error must not take the whole control plane down.
	if err := wait.PollUntilContextCancel(ctx, 500*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		if err := s.registerNodes(ctx); err != nil {
			log.Printf("registering nodes: %v (retrying)", err)
			return false, nil
		}
		return true, nil
	}); err != nil {
		return err
	}
	s.renewLeases(ctx)

	factory := informers.NewSharedInformerFactoryWithOptions(s.client, 0,
		informers.WithTweakListOptions(func(lo *metav1.ListOptions) {
			lo.FieldSelector = fields.OneTermNotEqualSelector("spec.nodeName", "").String()
		}))
	podInformer := factory.Core().V1().Pods()
	s.pods = podInformer.Lister()
	if _, err := podInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    s.enqueue,
		UpdateFunc: func(_, obj any) { s.enqueue(obj) },
		DeleteFunc: s.forget,
	}); err != nil {
		return err
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), podInformer.Informer().HasSynced) {
		return ctx.Err()
	}
	// Claim the IPs of Pods that already have one (a restart on kept data)
	// before any new Pod gets an address.
	existing, _ := s.pods.List(labels.Everything())
	for _, p := range existing {
		s.claimIP(p)
	}
	log.Printf("%d nodes registered, %d pods bound to nodes; simulating", len(s.nodes), len(existing))

	var wg sync.WaitGroup
	for range s.opts.workers {
		wg.Go(func() {
			for s.processNext(ctx) {
			}
		})
	}
	wg.Go(func() { s.heartbeat(ctx) })
	<-ctx.Done()
	s.queue.ShutDown()
	wg.Wait()
	return ctx.Err()
}

// ---- nodes ----

func (s *simulator) newNode(n *simNode) *corev1.Node {
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name: n.name,
			Labels: map[string]string{
				"kubernetes.io/hostname": n.name,
				"kubernetes.io/os":       "linux",
				"kubernetes.io/arch":     runtime.GOARCH,
				"kwok.x-k8s.io/node":     "fake",
				"type":                   "simulated",
				simulatedLabel:           "true",
			},
		},
		// No taints: the apiserver's TaintNodesByCondition admission adds
		// node.kubernetes.io/not-ready:NoSchedule on create, and
		// kube-controller-manager's node-lifecycle controller removes it once
		// it sees the Ready condition.
	}
}

func quantity(s string) resource.Quantity { return resource.MustParse(s) }

// setNodeStatus writes what a kubelet reports into node.Status, refreshing
// the heartbeat and keeping transition times (and foreign conditions).
func (s *simulator) setNodeStatus(node *corev1.Node, n *simNode, now metav1.Time) {
	resources := corev1.ResourceList{
		corev1.ResourceCPU:              quantity("32"),
		corev1.ResourceMemory:           quantity("256Gi"),
		corev1.ResourcePods:             quantity("110"),
		corev1.ResourceEphemeralStorage: quantity("1Ti"),
	}
	st := &node.Status
	st.Capacity, st.Allocatable = resources, resources.DeepCopy()
	st.Phase = ""
	st.Addresses = []corev1.NodeAddress{
		{Type: corev1.NodeInternalIP, Address: n.ip},
		{Type: corev1.NodeHostName, Address: n.name},
	}
	st.DaemonEndpoints = corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: 10250}}
	st.NodeInfo = corev1.NodeSystemInfo{
		MachineID:               n.name,
		SystemUUID:              n.name,
		BootID:                  n.name,
		KernelVersion:           "simulated",
		OSImage:                 "controlplane simulated node",
		ContainerRuntimeVersion: "simulated://1",
		KubeletVersion:          moduleVersion(kubernetesModule),
		OperatingSystem:         "linux",
		Architecture:            runtime.GOARCH,
	}
	want := []corev1.NodeCondition{
		{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasSufficientMemory", Message: "simulated node has sufficient memory available"},
		{Type: corev1.NodeDiskPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasNoDiskPressure", Message: "simulated node has no disk pressure"},
		{Type: corev1.NodePIDPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasSufficientPID", Message: "simulated node has sufficient PID available"},
		{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", Message: "simulated by controlplane nodes"},
	}
	for i := range want {
		want[i].LastHeartbeatTime, want[i].LastTransitionTime = now, now
		for _, old := range st.Conditions {
			if old.Type == want[i].Type && old.Status == want[i].Status && !old.LastTransitionTime.IsZero() {
				want[i].LastTransitionTime = old.LastTransitionTime
			}
		}
	}
	for _, old := range st.Conditions {
		if !hasNodeCondition(want, old.Type) {
			want = append(want, old)
		}
	}
	st.Conditions = want
}

func hasNodeCondition(conds []corev1.NodeCondition, t corev1.NodeConditionType) bool {
	for _, c := range conds {
		if c.Type == t {
			return true
		}
	}
	return false
}

// registerNodes creates our nodes (or adopts them on kept data) and deletes
// simulated nodes that are no longer wanted.
func (s *simulator) registerNodes(ctx context.Context) error {
	api := s.client.CoreV1().Nodes()
	for _, n := range s.nodes {
		want := s.newNode(n)
		s.setNodeStatus(want, n, metav1.Now())
		created, err := api.Create(ctx, want, metav1.CreateOptions{})
		if err == nil {
			n.uid = created.UID
			log.Printf("node %s created (%s)", n.name, n.ip)
			continue
		}
		if !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create node %s: %w", n.name, err)
		}
		cur, err := api.Get(ctx, n.name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		changed := false
		if cur.Labels == nil {
			cur.Labels = map[string]string{}
		}
		for k, v := range want.Labels {
			if cur.Labels[k] != v {
				cur.Labels[k], changed = v, true
			}
		}
		if changed {
			if cur, err = api.Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
				return fmt.Errorf("update node %s: %w", n.name, err)
			}
		}
		n.uid = cur.UID
		if err := s.updateNodeStatus(ctx, n, cur); err != nil {
			return err
		}
		log.Printf("node %s adopted (%s)", n.name, n.ip)
	}

	stale, err := api.List(ctx, metav1.ListOptions{LabelSelector: simulatedLabel + "=true"})
	if err != nil {
		return err
	}
	for _, node := range stale.Items {
		if _, ok := s.byName[node.Name]; ok {
			continue
		}
		if err := api.Delete(ctx, node.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete stale node %s: %w", node.Name, err)
		}
		log.Printf("stale node %s deleted", node.Name)
	}
	return nil
}

func (s *simulator) updateNodeStatus(ctx context.Context, n *simNode, cur *corev1.Node) error {
	cur = cur.DeepCopy()
	s.setNodeStatus(cur, n, metav1.Now())
	_, err := s.client.CoreV1().Nodes().UpdateStatus(ctx, cur, metav1.UpdateOptions{})
	if err != nil {
		return fmt.Errorf("update node %s status: %w", n.name, err)
	}
	return nil
}

// heartbeat renews the Leases (what node-lifecycle watches) and, less
// often, the Ready condition's lastHeartbeatTime, as a kubelet does.
func (s *simulator) heartbeat(ctx context.Context) {
	leaseTick := time.NewTicker(s.opts.leaseInterval)
	defer leaseTick.Stop()
	statusTick := time.NewTicker(s.opts.statusInterval)
	defer statusTick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-leaseTick.C:
			s.renewLeases(ctx)
		case <-statusTick.C:
			for _, n := range s.nodes {
				cur, err := s.client.CoreV1().Nodes().Get(ctx, n.name, metav1.GetOptions{})
				if err == nil {
					err = s.updateNodeStatus(ctx, n, cur)
				}
				if err != nil && ctx.Err() == nil {
					// A deleted node stays deleted, as with a real kubelet
					// that is not restarted.
					log.Printf("node %s heartbeat: %v", n.name, err)
				}
			}
		}
	}
}

func (s *simulator) renewLeases(ctx context.Context) {
	for _, n := range s.nodes {
		if err := s.renewLease(ctx, n); err != nil && ctx.Err() == nil {
			log.Printf("node %s lease: %v", n.name, err)
		}
	}
}

func (s *simulator) renewLease(ctx context.Context, n *simNode) error {
	api := s.client.CoordinationV1().Leases(nodeLeaseNS)
	now := metav1.NowMicro()
	holder, duration := n.name, int32(leaseDuration)
	lease, err := api.Get(ctx, n.name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		lease = &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{
				Name:      n.name,
				Namespace: nodeLeaseNS,
				// Garbage-collected with the Node, as the kubelet's Lease.
				OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: n.name, UID: n.uid}},
			},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: &holder, LeaseDurationSeconds: &duration, RenewTime: &now},
		}
		_, err = api.Create(ctx, lease, metav1.CreateOptions{})
		return err
	}
	if err != nil {
		return err
	}
	lease.Spec.HolderIdentity, lease.Spec.LeaseDurationSeconds, lease.Spec.RenewTime = &holder, &duration, &now
	_, err = api.Update(ctx, lease, metav1.UpdateOptions{})
	return err
}

// ---- pods ----

func (s *simulator) enqueue(obj any) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	if _, ours := s.byName[pod.Spec.NodeName]; !ours {
		return
	}
	key, err := cache.MetaNamespaceKeyFunc(pod)
	if err == nil {
		s.queue.Add(key)
	}
}

func (s *simulator) forget(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if off, ok := s.ipOf[pod.UID]; ok {
		delete(s.ipUsed, off)
		delete(s.ipOf, pod.UID)
	}
	delete(s.runningSince, pod.UID)
}

func (s *simulator) processNext(ctx context.Context) bool {
	key, quit := s.queue.Get()
	if quit {
		return false
	}
	defer s.queue.Done(key)
	after, err := s.syncPod(ctx, key)
	switch {
	case err != nil && ctx.Err() == nil:
		if !apierrors.IsConflict(err) {
			log.Printf("pod %s: %v (retrying)", key, err)
		}
		s.queue.AddRateLimited(key)
	case after > 0:
		s.queue.Forget(key)
		s.queue.AddAfter(key, after)
	default:
		s.queue.Forget(key)
	}
	return true
}

// syncPod moves one Pod towards what a kubelet would report. It returns a
// delay after which the Pod needs another look (its readiness is due).
func (s *simulator) syncPod(ctx context.Context, key string) (time.Duration, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return 0, nil
	}
	pod, err := s.pods.Pods(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	node, ours := s.byName[pod.Spec.NodeName]
	if !ours {
		return 0, nil
	}

	if pod.DeletionTimestamp != nil {
		// The kubelet "stops the containers" and then removes the Pod with
		// a zero grace period; only then do ReplicaSets and namespace
		// deletion move on. Already done if the grace period is zero (the
		// Pod is waiting for its finalizers).
		if g := pod.DeletionGracePeriodSeconds; g != nil && *g == 0 {
			return 0, nil
		}
		zero := int64(0)
		err := s.client.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{
			GracePeriodSeconds: &zero,
			Preconditions:      &metav1.Preconditions{UID: &pod.UID},
		})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return 0, err
		}
		log.Printf("pod %s deleted", key)
		return 0, nil
	}
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return 0, nil
	}

	status, after, err := s.desiredStatus(pod, node, time.Now())
	if err != nil {
		return 0, err
	}
	if apiequality.Semantic.DeepEqual(&pod.Status, status) {
		return after, nil
	}
	updated := pod.DeepCopy()
	updated.Status = *status
	if _, err := s.client.CoreV1().Pods(ns).UpdateStatus(ctx, updated, metav1.UpdateOptions{}); err != nil {
		if apierrors.IsNotFound(err) {
			return 0, nil
		}
		return 0, err
	}
	log.Printf("pod %s on %s: %s ip=%s ready=%v", key, node.name, status.Phase, status.PodIP, podReady(status))
	return after, nil
}

func podReady(st *corev1.PodStatus) bool {
	for _, c := range st.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// desiredStatus is the Pod's status as the kubelet would report it now.
// Timestamps already in the status are kept, so that a Pod whose state has
// not changed compares equal and is not written again.
func (s *simulator) desiredStatus(pod *corev1.Pod, node *simNode, now time.Time) (*corev1.PodStatus, time.Duration, error) {
	st := pod.Status.DeepCopy()
	since := s.startTime(pod, now)
	startedAt := metav1.NewTime(since)
	if st.StartTime == nil {
		st.StartTime = &startedAt
	}
	st.Phase = corev1.PodRunning
	st.Reason, st.Message = "", ""
	st.ObservedGeneration = pod.Generation
	st.HostIP, st.HostIPs = node.ip, []corev1.HostIP{{IP: node.ip}}
	ip := node.ip
	if !pod.Spec.HostNetwork {
		var err error
		if ip, err = s.podIP(pod); err != nil {
			return nil, 0, err
		}
	}
	st.PodIP, st.PodIPs = ip, []corev1.PodIP{{IP: ip}}

	var after time.Duration
	due := since.Add(s.opts.readyDelay)
	warm := !now.Before(due)
	if !warm {
		after = due.Sub(now) + 10*time.Millisecond
	}

	allReady := true
	st.ContainerStatuses = containerStatuses(pod.Spec.Containers, pod.Status.ContainerStatuses, pod.UID, startedAt, false, func(c corev1.Container) bool {
		ready := warm && !strings.Contains(c.Image, notReadyMarker)
		allReady = allReady && ready
		return ready
	})
	if len(pod.Spec.InitContainers) > 0 {
		st.InitContainerStatuses = containerStatuses(pod.Spec.InitContainers, pod.Status.InitContainerStatuses, pod.UID, startedAt, true, func(c corev1.Container) bool {
			if isSidecar(c) {
				ready := warm && !strings.Contains(c.Image, notReadyMarker)
				allReady = allReady && ready
				return ready
			}
			return true // completed
		})
	}
	// A regular init container with the marker never "completes" its
	// readiness either: keep the whole Pod unready, per the documented rule.
	for _, c := range pod.Spec.InitContainers {
		if strings.Contains(c.Image, notReadyMarker) {
			allReady = false
		}
	}

	podReady := allReady
	for _, gate := range pod.Spec.ReadinessGates {
		found := false
		for _, c := range st.Conditions {
			if c.Type == gate.ConditionType && c.Status == corev1.ConditionTrue {
				found = true
			}
		}
		podReady = podReady && found
	}

	setPodCondition(st, pod.Generation, corev1.PodScheduled, true, "", now)
	setPodCondition(st, pod.Generation, corev1.PodReadyToStartContainers, true, "", now)
	setPodCondition(st, pod.Generation, corev1.PodInitialized, true, "", now)
	setPodCondition(st, pod.Generation, corev1.ContainersReady, allReady, "ContainersNotReady", now)
	readyReason := "ContainersNotReady"
	if allReady {
		readyReason = "ReadinessGatesNotReady"
	}
	setPodCondition(st, pod.Generation, corev1.PodReady, podReady, readyReason, now)
	return st, after, nil
}

func isSidecar(c corev1.Container) bool {
	return c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways
}

// containerStatuses reports every container as started and running since
// startedAt (for init, all but sidecars as completed instead), with ready
// decided by the callback. Existing timestamps and restart counts are kept.
func containerStatuses(containers []corev1.Container, old []corev1.ContainerStatus, uid types.UID, startedAt metav1.Time, init bool, ready func(corev1.Container) bool) []corev1.ContainerStatus {
	out := make([]corev1.ContainerStatus, 0, len(containers))
	for _, c := range containers {
		var prev *corev1.ContainerStatus
		for i := range old {
			if old[i].Name == c.Name {
				prev = &old[i]
			}
		}
		started := true
		cs := corev1.ContainerStatus{
			Name:        c.Name,
			Image:       c.Image,
			ImageID:     c.Image,
			ContainerID: "simulated://" + containerID(uid, c.Name),
			Ready:       ready(c),
			Started:     &started,
		}
		at := startedAt
		if prev != nil {
			cs.RestartCount = prev.RestartCount
			cs.LastTerminationState = prev.LastTerminationState
			switch {
			case prev.State.Running != nil:
				at = prev.State.Running.StartedAt
			case prev.State.Terminated != nil:
				at = prev.State.Terminated.StartedAt
			}
		}
		if init && !isSidecar(c) {
			started = false
			cs.State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
				ExitCode: 0, Reason: "Completed", StartedAt: at, FinishedAt: at, ContainerID: cs.ContainerID,
			}}
		} else {
			cs.State = corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: at}}
		}
		out = append(out, cs)
	}
	return out
}

func containerID(uid types.UID, name string) string {
	sum := sha256.Sum256([]byte(string(uid) + "/" + name))
	return hex.EncodeToString(sum[:16])
}

// setPodCondition sets a condition, keeping its transition time if the
// status is unchanged, and appending it if missing.
func setPodCondition(st *corev1.PodStatus, generation int64, t corev1.PodConditionType, ok bool, falseReason string, now time.Time) {
	status, reason := corev1.ConditionTrue, ""
	if !ok {
		status, reason = corev1.ConditionFalse, falseReason
	}
	for i := range st.Conditions {
		c := &st.Conditions[i]
		if c.Type != t {
			continue
		}
		if c.Status != status {
			c.LastTransitionTime = metav1.NewTime(now)
		}
		c.Status, c.Reason, c.ObservedGeneration = status, reason, generation
		if ok {
			c.Message = ""
		}
		return
	}
	st.Conditions = append(st.Conditions, corev1.PodCondition{
		Type: t, Status: status, Reason: reason, ObservedGeneration: generation,
		LastTransitionTime: metav1.NewTime(now),
	})
}

// startTime is when the Pod went Running: remembered in memory (the API's
// timestamps have one-second precision), else taken from its status.
func (s *simulator) startTime(pod *corev1.Pod, now time.Time) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.runningSince[pod.UID]; ok {
		return t
	}
	t := now
	if pod.Status.StartTime != nil && pod.Status.Phase == corev1.PodRunning {
		t = pod.Status.StartTime.Time
	}
	s.runningSince[pod.UID] = t
	return t
}

// Pod IPs come from 10.244.0.0/16, each unique among the live Pods.
const podNetwork = 10<<24 | 244<<16

func offsetIP(off uint32) string {
	ip := podNetwork + off
	return fmt.Sprintf("%d.%d.%d.%d", ip>>24, ip>>16&0xff, ip>>8&0xff, ip&0xff)
}

// claimIP records the address a Pod already has (after a restart).
func (s *simulator) claimIP(pod *corev1.Pod) {
	var a, b, c, d uint32
	if _, err := fmt.Sscanf(pod.Status.PodIP, "%d.%d.%d.%d", &a, &b, &c, &d); err != nil || a != 10 || b != 244 || pod.Spec.HostNetwork {
		return
	}
	off := c<<8 | d
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.ipUsed[off] {
		s.ipUsed[off] = true
		s.ipOf[pod.UID] = off
	}
}

func (s *simulator) podIP(pod *corev1.Pod) (string, error) {
	if pod.Status.PodIP != "" {
		return pod.Status.PodIP, nil // never changes once set
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if off, ok := s.ipOf[pod.UID]; ok {
		return offsetIP(off), nil
	}
	const size = 1 << 16
	for range size {
		off := s.nextIP
		s.nextIP++
		if s.nextIP >= size-1 { // skip .0.0 and .255.255
			s.nextIP = 1
		}
		if !s.ipUsed[off] {
			s.ipUsed[off] = true
			s.ipOf[pod.UID] = off
			return offsetIP(off), nil
		}
	}
	return "", errors.New("no free pod IP in 10.244.0.0/16")
}
