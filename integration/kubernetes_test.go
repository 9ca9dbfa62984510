package integration

// Static validation of deploy/kubernetes: every manifest is parsed strictly
// (unknown fields are errors) into the Kubernetes API types, and the
// invariants a deployment needs are checked: probes and resources on every
// container, streamer command lines and STREAMER_* variables that the
// binary built from this tree accepts, probes on the admin port, Services
// and the PodDisruptionBudget selecting a workload, the autoscaler targeting
// the nodes on CPU and on event-log lag, a termination grace longer than the
// drain, and addresses that name Services and their ports.

import (
	"bytes"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"

	"github.com/streamerd/streamer/internal/testbin"
)

const kubeDir = "../deploy/kubernetes"

// minGrace is the termination grace a streamer pod needs: its drain is a
// few steps of at most 5 s each (closing sessions, finishing batches,
// releasing leases).
const minGrace = 20

func TestKubernetesManifests(t *testing.T) {
	cli := composeLoadCLI(t, testbin.Streamer(t))
	files := map[string][]byte{}
	names, err := filepath.Glob(filepath.Join(kubeDir, "*.yaml"))
	if err != nil || len(names) == 0 {
		t.Fatalf("no manifests in %s: %v", kubeDir, err)
	}
	for _, n := range names {
		data, err := os.ReadFile(n)
		if err != nil {
			t.Fatal(err)
		}
		files[filepath.Base(n)] = data
	}

	t.Run("checked-in manifests", func(t *testing.T) {
		for _, p := range kubeCheck(files, cli) {
			t.Error(p)
		}
	})

	// Each case breaks one thing the way an edit could; the checks must name it.
	t.Run("mistakes are caught", func(t *testing.T) {
		for _, tc := range []struct{ name, file, old, new, want string }{
			{"unknown field", "node.yaml", "terminationGracePeriodSeconds: 30", "terminationGracePeriod: 30", `node.yaml document 1 (Deployment): error unmarshaling JSON: while decoding JSON: json: unknown field "terminationGracePeriod"`},
			{"missing readiness probe", "gateway.yaml", "          readinessProbe:\n            httpGet:\n              path: /readyz\n              port: admin\n            periodSeconds: 5\n", "",
				"Deployment streamer-gateway: container gateway has no readinessProbe"},
			{"probe on the wrong port", "node.yaml", "            - name: admin\n              containerPort: 7071", "            - name: admin\n              containerPort: 7072",
				"Deployment streamer-node: container node probes port 7072, but --http serves 7071"},
			{"unknown flag", "node.yaml", "--partitions=16", "--partition=16", `Deployment streamer-node: container node: --partition is not a flag of "streamer serve"`},
			{"environment of no flag", "puller.yaml", "STREAMER_OWNER", "STREAMER_OWNERS", "STREAMER_OWNERS matches no flag of streamer puller"},
			{"HPA on another deployment", "node-autoscaling.yaml", "    name: streamer-node\n  minReplicas", "    name: streamer-nodes\n  minReplicas",
				"HorizontalPodAutoscaler streamer-node targets Deployment streamer-nodes, which is not defined"},
			{"HPA without the lag metric", "node-autoscaling.yaml", "name: streamer_partition_lag_entries", "name: streamer_lag",
				"HorizontalPodAutoscaler streamer-node does not scale on streamer_partition_lag_entries"},
			{"PDB selecting nothing", "node-autoscaling.yaml", "  selector:\n    matchLabels:\n      app.kubernetes.io/name: streamer-node", "  selector:\n    matchLabels:\n      app.kubernetes.io/name: streamer",
				"PodDisruptionBudget streamer-node selects no workload"},
			{"short grace", "node.yaml", "terminationGracePeriodSeconds: 30", "terminationGracePeriodSeconds: 5", "Deployment streamer-node: terminationGracePeriodSeconds 5"},
			{"gateway dials a port the Service lacks", "gateway.yaml", "--addr=streamer-node:7070", "--addr=streamer-node:7071",
				"Deployment streamer-gateway: container gateway: --addr streamer-node:7071: Service streamer-node has no port 7071"},
			{"file not in the kustomization", "kustomization.yaml", "  - puller.yaml\n", "", "puller.yaml is not listed in kustomization.yaml"},
			{"partitions differ", "puller.yaml", "--partitions=16", "--partitions=8", "--partitions differs"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				broken := maps.Clone(files)
				if !bytes.Contains(broken[tc.file], []byte(tc.old)) {
					t.Fatalf("%s does not contain %q: update the case", tc.file, tc.old)
				}
				broken[tc.file] = bytes.Replace(broken[tc.file], []byte(tc.old), []byte(tc.new), 1)
				problems := kubeCheck(broken, cli)
				if !slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, tc.want) }) {
					t.Fatalf("no problem mentions %q; problems:\n  %s", tc.want, strings.Join(problems, "\n  "))
				}
			})
		}
	})
}

// kubeWorkload is a Deployment or StatefulSet.
type kubeWorkload struct {
	kind, name string
	labels     map[string]string
	pod        corev1.PodSpec
}

type kubeChecks struct {
	cli       *composeCLI
	problems  []string
	workloads []kubeWorkload
	services  []corev1.Service
	hpas      []autoscalingv2.HorizontalPodAutoscaler
	pdbs      []policyv1.PodDisruptionBudget
	flagVals  map[string]map[string]string // flag → workload → value, for agreement checks
}

func (k *kubeChecks) problemf(format string, args ...any) {
	k.problems = append(k.problems, fmt.Sprintf(format, args...))
}

// kubeCheck returns the problems of a set of manifests (file name → content).
func kubeCheck(files map[string][]byte, cli *composeCLI) []string {
	k := &kubeChecks{cli: cli, flagVals: map[string]map[string]string{}}
	var kust struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Namespace  string `json:"namespace"`
		Labels     []struct {
			Pairs map[string]string `json:"pairs"`
		} `json:"labels"`
		Resources []string `json:"resources"`
		Images    []struct {
			Name    string `json:"name"`
			NewName string `json:"newName"`
			NewTag  string `json:"newTag"`
		} `json:"images"`
	}
	if err := yaml.UnmarshalStrict(files["kustomization.yaml"], &kust); err != nil {
		k.problemf("kustomization.yaml: %v", err)
	}
	for name := range files {
		if name == "kustomization.yaml" || name == "prometheus-adapter.yaml" {
			continue
		}
		if !slices.Contains(kust.Resources, name) {
			k.problemf("%s is not listed in kustomization.yaml", name)
		}
	}
	for _, r := range kust.Resources {
		if _, ok := files[r]; !ok {
			k.problemf("kustomization.yaml lists %s, which does not exist", r)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(files)) {
		if name == "kustomization.yaml" {
			continue
		}
		for i, doc := range bytes.Split(files[name], []byte("\n---\n")) {
			k.decode(fmt.Sprintf("%s document %d", name, i+1), doc)
		}
	}
	for _, w := range k.workloads {
		k.checkWorkload(w)
	}
	k.checkServices()
	k.checkAutoscaling()
	for flag, vals := range k.flagVals {
		if len(slices.Compact(slices.Sorted(maps.Values(vals)))) > 1 {
			k.problemf("--%s differs between workloads: %v", flag, vals)
		}
	}
	return k.problems
}

// decode parses one manifest strictly into its API type.
func (k *kubeChecks) decode(where string, doc []byte) {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		k.problemf("%s: %v", where, err)
		return
	}
	strict := func(v any) bool {
		if err := yaml.UnmarshalStrict(doc, v); err != nil {
			k.problemf("%s (%s): %v", where, tm.Kind, err)
			return false
		}
		return true
	}
	switch tm.Kind {
	case "Deployment":
		var d appsv1.Deployment
		if strict(&d) {
			k.workloads = append(k.workloads, kubeWorkload{"Deployment", d.Name, d.Spec.Template.Labels, d.Spec.Template.Spec})
			if d.Spec.Selector == nil || !labels.SelectorFromSet(d.Spec.Selector.MatchLabels).Matches(labels.Set(d.Spec.Template.Labels)) {
				k.problemf("Deployment %s: its selector does not match its pod template's labels", d.Name)
			}
		}
	case "StatefulSet":
		var s appsv1.StatefulSet
		if strict(&s) {
			k.workloads = append(k.workloads, kubeWorkload{"StatefulSet", s.Name, s.Spec.Template.Labels, s.Spec.Template.Spec})
		}
	case "Service":
		var s corev1.Service
		if strict(&s) {
			k.services = append(k.services, s)
		}
	case "HorizontalPodAutoscaler":
		var h autoscalingv2.HorizontalPodAutoscaler
		if strict(&h) {
			k.hpas = append(k.hpas, h)
		}
	case "PodDisruptionBudget":
		var p policyv1.PodDisruptionBudget
		if strict(&p) {
			k.pdbs = append(k.pdbs, p)
		}
	case "Namespace":
		var n corev1.Namespace
		strict(&n)
	case "ConfigMap":
		var c corev1.ConfigMap
		strict(&c)
	default:
		k.problemf("%s: kind %q is not one these checks know", where, tm.Kind)
	}
}

func (k *kubeChecks) checkWorkload(w kubeWorkload) {
	streamer := false
	for _, c := range w.pod.Containers {
		where := fmt.Sprintf("%s %s: container %s", w.kind, w.name, c.Name)
		if c.ReadinessProbe == nil {
			k.problemf("%s has no readinessProbe", where)
		}
		if c.LivenessProbe == nil {
			k.problemf("%s has no livenessProbe", where)
		}
		if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
			k.problemf("%s: set CPU and memory requests and a memory limit", where)
		}
		if c.Image == "streamer" {
			streamer = true
			k.checkStreamerContainer(w, c, where)
		}
	}
	if streamer && (w.pod.TerminationGracePeriodSeconds == nil || *w.pod.TerminationGracePeriodSeconds < minGrace) {
		g := int64(-1)
		if w.pod.TerminationGracePeriodSeconds != nil {
			g = *w.pod.TerminationGracePeriodSeconds
		}
		k.problemf("%s %s: terminationGracePeriodSeconds %d is shorter than a drain (want at least %d)", w.kind, w.name, g, minGrace)
	}
}

// checkStreamerContainer checks a container running the streamer image: its
// command line and environment against the binary's flags, its probes
// against its admin port, and the Services it dials.
func (k *kubeChecks) checkStreamerContainer(w kubeWorkload, c corev1.Container, where string) {
	if len(c.Args) == 0 {
		k.problemf("%s: no args; name the streamer subcommand", where)
		return
	}
	sub := c.Args[0]
	flags, ok := k.cli.commands[sub]
	if !ok {
		k.problemf("%s: %q is not a streamer subcommand", where, sub)
		return
	}
	values := map[string]string{}
	for name, f := range flags {
		values[name] = f.def
	}
	for _, a := range c.Args[1:] {
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		f, ok := flags[name]
		switch {
		case !strings.HasPrefix(a, "--"):
			k.problemf("%s: argument %q: write flags as --name=value", where, a)
		case !ok:
			k.problemf("%s: --%s is not a flag of \"streamer %s\"", where, name, sub)
		case f.takesValue && !hasVal:
			k.problemf("%s: --%s needs =value in one argument", where, name)
		default:
			if !hasVal {
				val = "true"
			}
			values[name] = val
		}
	}
	for _, e := range c.Env {
		name := ""
		for f := range flags {
			if composeEnvName(f) == e.Name {
				name = f
			}
		}
		if name == "" {
			k.problemf("%s: %s matches no flag of streamer %s", where, e.Name, sub)
			continue
		}
		if e.ValueFrom == nil {
			values[name] = e.Value
		}
	}
	if _, ok := flags["partitions"]; ok { // the node's and the puller's: they must agree
		if k.flagVals["partitions"] == nil {
			k.flagVals["partitions"] = map[string]string{}
		}
		k.flagVals["partitions"][w.name] = values["partitions"]
	}
	// Probes ask the admin listener (--http).
	_, httpPort, _ := net.SplitHostPort(values["http"])
	for _, p := range []*corev1.Probe{c.ReadinessProbe, c.LivenessProbe} {
		if p == nil || p.HTTPGet == nil {
			continue
		}
		port := p.HTTPGet.Port.String()
		for _, cp := range c.Ports {
			if cp.Name == port {
				port = strconv.Itoa(int(cp.ContainerPort))
			}
		}
		if port != httpPort {
			k.problemf("%s probes port %s, but --http serves %s", where, port, httpPort)
		}
		if p.HTTPGet.Path != "/readyz" && p.HTTPGet.Path != "/healthz" {
			k.problemf("%s probes %s; the admin listener serves /readyz and /healthz", where, p.HTTPGet.Path)
		}
	}
	// Addresses dialed name a Service and one of its ports.
	for _, flag := range []string{"addr", "redis"} {
		v := values[flag]
		if v == "" || (flag == "addr" && sub != "gateway") {
			continue
		}
		hostPort := strings.TrimPrefix(strings.TrimPrefix(v, "redis://"), "rediss://")
		host, port, err := net.SplitHostPort(hostPort)
		if err != nil {
			k.problemf("%s: --%s %s: %v", where, flag, v, err)
			continue
		}
		k.checkDial(where, flag, v, host, port)
	}
}

// checkDial reports an address that is not a Service port.
func (k *kubeChecks) checkDial(where, flag, v, host, port string) {
	for _, s := range k.services {
		if s.Name != host {
			continue
		}
		for _, p := range s.Spec.Ports {
			if strconv.Itoa(int(p.Port)) == port {
				return
			}
		}
		k.problemf("%s: --%s %s: Service %s has no port %s", where, flag, v, host, port)
		return
	}
	k.problemf("%s: --%s %s: no Service %s", where, flag, v, host)
}

// selects returns the workloads whose pod labels a selector matches.
func (k *kubeChecks) selects(sel map[string]string) []kubeWorkload {
	var out []kubeWorkload
	if len(sel) == 0 {
		return nil
	}
	for _, w := range k.workloads {
		if labels.SelectorFromSet(sel).Matches(labels.Set(w.labels)) {
			out = append(out, w)
		}
	}
	return out
}

func (k *kubeChecks) checkServices() {
	for _, s := range k.services {
		ws := k.selects(s.Spec.Selector)
		if len(ws) == 0 {
			k.problemf("Service %s selects no workload", s.Name)
			continue
		}
		for _, p := range s.Spec.Ports {
			found := false
			for _, c := range ws[0].pod.Containers {
				for _, cp := range c.Ports {
					if cp.Name == p.TargetPort.String() || strconv.Itoa(int(cp.ContainerPort)) == p.TargetPort.String() {
						found = true
					}
				}
			}
			if !found {
				k.problemf("Service %s: targetPort %s is no port of %s %s", s.Name, p.TargetPort.String(), ws[0].kind, ws[0].name)
			}
		}
	}
}

func (k *kubeChecks) checkAutoscaling() {
	deployments := map[string]kubeWorkload{}
	for _, w := range k.workloads {
		if w.kind == "Deployment" {
			deployments[w.name] = w
		}
	}
	if len(k.hpas) == 0 {
		k.problemf("no HorizontalPodAutoscaler")
	}
	for _, h := range k.hpas {
		ref := h.Spec.ScaleTargetRef
		if _, ok := deployments[ref.Name]; ref.Kind != "Deployment" || !ok {
			k.problemf("HorizontalPodAutoscaler %s targets %s %s, which is not defined", h.Name, ref.Kind, ref.Name)
		}
		var cpu, lag bool
		for _, m := range h.Spec.Metrics {
			cpu = cpu || m.Resource != nil && m.Resource.Name == corev1.ResourceCPU
			lag = lag || m.Pods != nil && m.Pods.Metric.Name == "streamer_partition_lag_entries"
		}
		if !cpu {
			k.problemf("HorizontalPodAutoscaler %s does not scale on CPU", h.Name)
		}
		if !lag {
			k.problemf("HorizontalPodAutoscaler %s does not scale on streamer_partition_lag_entries (the event-log lag)", h.Name)
		}
	}
	if len(k.pdbs) == 0 {
		k.problemf("no PodDisruptionBudget")
	}
	for _, p := range k.pdbs {
		var sel map[string]string
		if p.Spec.Selector != nil {
			sel = p.Spec.Selector.MatchLabels
		}
		ws := k.selects(sel)
		if len(ws) == 0 {
			k.problemf("PodDisruptionBudget %s selects no workload", p.Name)
		}
	}
}
