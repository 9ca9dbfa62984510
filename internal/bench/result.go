package bench

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
)

// Result is the outcome of a run. Its JSON form is the object `streamer
// bench --json` prints.
type Result struct {
	// Mode is "embedded" or "redis".
	Mode           string  `json:"mode"`
	Nodes          int     `json:"nodes"`
	Gateways       int     `json:"gateways"`
	SubsPerGateway int     `json:"subs_per_gateway"`
	Partitions     int     `json:"partitions"`
	Collections    int     `json:"collections"`
	DistinctValues int     `json:"distinct_values"`
	Mix            Mix     `json:"mix"`
	DistinctCrit   int     `json:"distinct_criteria"`
	Rate           float64 `json:"rate"` // target events/s; 0 = max
	DurationSec    float64 `json:"duration_sec"`

	// Events is the number of events published in the measured phase.
	Events int64 `json:"events"`
	// EventsPerSec is Events over the measured phase's span: from its first
	// publish until every gateway had its last match (publishing + drain).
	EventsPerSec float64 `json:"events_per_sec"`
	// PublishedPerSec is Events over the publishing time alone (the offered
	// load achieved).
	PublishedPerSec float64 `json:"published_per_sec"`
	// DeliveriesPerSec is the (event, subscription) pairs of the measured
	// events delivered, over the same span as EventsPerSec.
	DeliveriesPerSec float64 `json:"deliveries_per_sec"`
	// DrainMs is how long the last matches took to arrive after publishing
	// stopped.
	DrainMs float64 `json:"drain_ms"`
	// Abuse is the noisy neighbour that ran next to the workload, if any.
	Abuse string `json:"abuse,omitempty"`
	// Latency is publish → gateway, one sample per (event, gateway) match of
	// the measured phase.
	Latency Latency `json:"latency_ms"`

	Completeness
	// ClientDuplicatesDropped counts events the client library dropped as
	// already delivered (at-least-once redelivery it absorbed).
	ClientDuplicatesDropped uint64 `json:"client_duplicates_dropped"`
	// Resyncs and Reconnects are the gateways' totals; both should be 0.
	Resyncs    int64  `json:"resyncs"`
	Reconnects uint64 `json:"reconnects"`

	Baselines Baselines `json:"baselines"`

	// CPUs and GoMaxProcs describe the machine; LoadAvg* are /proc/loadavg
	// (1, 5, 15 min) at start and end: a loaded machine gives lower figures.
	CPUs         int        `json:"cpus"`
	GoMaxProcs   int        `json:"gomaxprocs"`
	LoadAvgStart [3]float64 `json:"loadavg_start"`
	LoadAvgEnd   [3]float64 `json:"loadavg_end"`
	// CPUStealPct is the share of the machine's CPU time taken by the
	// hypervisor for others during the measured phase, and
	// CPUPressurePct the share of that phase's wall time in which some
	// task (of this process, Redis or anything else) waited for a CPU
	// (Linux PSI). Both are -1 where not available. They tell a noisy
	// neighbour (steal) from a saturated machine (pressure).
	CPUStealPct    float64 `json:"cpu_steal_pct"`
	CPUPressurePct float64 `json:"cpu_pressure_pct"`
	// CPUUsPerEvent is this process's CPU time (user + system: nodes,
	// gateways and harness) during the measured phase per event published.
	CPUUsPerEvent float64 `json:"cpu_us_per_event"`
	// RedisMasterCPUPct is the CPU of each Redis master the bench started,
	// in percent of one core over the measured phase, and
	// RedisCPUUsPerEvent the CPU time of all of them (masters and
	// replicas) per event published. Empty and 0 otherwise.
	RedisMasterCPUPct  []float64 `json:"redis_master_cpu_pct,omitempty"`
	RedisReplicaCPUPct []float64 `json:"redis_replica_cpu_pct,omitempty"`
	RedisCPUUsPerEvent float64   `json:"redis_cpu_us_per_event,omitempty"`
	// WaitReplicas is the nodes' --redis-wait-replicas.
	WaitReplicas int `json:"wait_replicas,omitempty"`
	// PeakRSSMB is the process's peak resident memory (Linux VmHWM) after
	// the measured phase: nodes, gateways and harness together, so an upper
	// bound of a node's. 0 where not available.
	PeakRSSMB float64 `json:"peak_rss_mb"`
	// AllocKBPerEvent is what the whole process allocated during the
	// measured phase (runtime MemStats.TotalAlloc) per event published, and
	// GCCycles the garbage collections in it: the GC's work grows with the
	// first, and each cycle competes with delivery for the CPUs.
	AllocKBPerEvent float64 `json:"alloc_kb_per_event"`
	GCCycles        uint32  `json:"gc_cycles"`
	// GCPercent is the GC percent in effect at the end of the measured phase
	// (runtime/metrics /gc/gogc:percent) and GCPacing says how it was set:
	// the headroom policy the streamer commands apply (--gc-headroom-mb),
	// or GOGC.
	GCPercent uint64 `json:"gc_percent"`
	GCPacing  string `json:"gc_pacing,omitempty"`

	// Timeline is the measured phase second by second.
	Timeline []Second `json:"timeline"`
	// Scale is the scale scenario's steps, when it ran.
	Scale []ScaleStep `json:"scale,omitempty"`

	hist *Histogram // the latency samples, for the plot
}

// Latency holds quantiles in milliseconds.
type Latency struct {
	P50     float64 `json:"p50"`
	P90     float64 `json:"p90"`
	P99     float64 `json:"p99"`
	P999    float64 `json:"p999"`
	Max     float64 `json:"max"`
	Mean    float64 `json:"mean"`
	Samples uint64  `json:"samples"`
}

func latencyOf(h *Histogram) Latency {
	return Latency{
		P50: ms(h.Quantile(0.5)), P90: ms(h.Quantile(0.9)), P99: ms(h.Quantile(0.99)), P999: ms(h.Quantile(0.999)),
		Max: ms(h.Max()), Mean: ms(h.Mean()), Samples: h.Count(),
	}
}

// Failures lists why the run is not healthy: anything lost, delivered
// wrongly, or resynced. Duplicates are allowed (at-least-once) and only
// reported.
func (r *Result) Failures() []string {
	var out []string
	if r.Lost > 0 {
		out = append(out, fmt.Sprintf("%d of %d expected deliveries were LOST", r.Lost, r.Expected))
	}
	if r.Unexpected > 0 {
		out = append(out, fmt.Sprintf("%d deliveries did not match their subscription", r.Unexpected))
	}
	if r.WrongOp > 0 {
		out = append(out, fmt.Sprintf("%d deliveries carried the wrong operation", r.WrongOp))
	}
	if r.Resyncs > 0 {
		out = append(out, fmt.Sprintf("%d Resync notices (outbox overflow)", r.Resyncs))
	}
	return out
}

// WriteSummary writes a human-readable report.
func (r *Result) WriteSummary(w io.Writer) {
	rate := "max"
	if r.Rate > 0 {
		rate = strconv.FormatFloat(r.Rate, 'f', -1, 64) + "/s"
	}
	abuse := ""
	if r.Abuse != "" {
		abuse = ", with a noisy neighbour (" + r.Abuse + ")"
	}
	fmt.Fprintf(w, "streamer bench: %s, %d node(s), %d gateways × %d subscriptions (%s; %d distinct criteria), %d partitions, rate %s, %.1fs%s\n",
		r.Mode, r.Nodes, r.Gateways, r.SubsPerGateway, r.Mix, r.DistinctCrit, r.Partitions, rate, r.DurationSec, abuse)
	fmt.Fprintf(w, "  events       %d  (%.0f events/s end to end, %.0f/s published, drain %.0f ms)\n", r.Events, r.EventsPerSec, r.PublishedPerSec, r.DrainMs)
	fmt.Fprintf(w, "  deliveries   %.0f/s  (%.2f per event)\n", r.DeliveriesPerSec, r.DeliveriesPerSec/max(r.EventsPerSec, 1e-9))
	l := r.Latency
	fmt.Fprintf(w, "  latency ms   p50 %.2f  p90 %.2f  p99 %.2f  p99.9 %.2f  max %.2f  (%d samples)\n", l.P50, l.P90, l.P99, l.P999, l.Max, l.Samples)
	fmt.Fprintf(w, "  completeness expected %d  delivered %d  lost %d  duplicates %d  unexpected %d  wrong-op %d  resyncs %d  (client dropped %d duplicates)\n",
		r.Expected, r.Delivered, r.Lost, r.Duplicates, r.Unexpected, r.WrongOp, r.Resyncs, r.ClientDuplicatesDropped)
	for _, st := range r.Scale {
		balanced := "not before the next step"
		if st.BalancedSec >= 0 {
			balanced = fmt.Sprintf("balanced in %.2fs", st.BalancedSec)
		}
		fmt.Fprintf(w, "  scale        %d → %d nodes at %4.1fs: %s; latency until the next step p50 %.2f  p99 %.2f  max %.2f ms\n",
			st.From, st.To, st.AtSec, balanced, st.P50Ms, st.P99Ms, st.MaxMs)
	}
	for _, b := range []struct {
		name string
		b    *Baseline
	}{{"naive", r.Baselines.Naive}, {"redis", r.Baselines.RedisStreams}} {
		if b.b != nil {
			fmt.Fprintf(w, "  baseline     %-6s %.0f events/s → streamer/baseline = %.2f  (%s)\n", b.name, b.b.EventsPerSec, b.b.Ratio, b.b.What)
		}
	}
	if r.Rate > 0 && (r.Baselines.Naive != nil || r.Baselines.RedisStreams != nil) {
		fmt.Fprintln(w, "               (ratios compare capacities only with --rate max)")
	}
	fmt.Fprintf(w, "  machine      %d CPUs, GOMAXPROCS %d, load average %.2f → %.2f, peak RSS %.0f MiB (whole process)\n",
		r.CPUs, r.GoMaxProcs, r.LoadAvgStart[0], r.LoadAvgEnd[0], r.PeakRSSMB)
	fmt.Fprintf(w, "  CPU          while measuring: %.1f %% stolen by the hypervisor, some task waiting for a CPU %.0f %% of the time (-1 = unknown)\n",
		r.CPUStealPct, r.CPUPressurePct)
	fmt.Fprintf(w, "  CPU / event  %.1f µs in this process (nodes, gateways, harness)\n", r.CPUUsPerEvent)
	if len(r.RedisMasterCPUPct) > 0 {
		fmt.Fprintf(w, "  Redis CPU    %.1f µs per event; masters %s, replicas %s (%% of one core; --redis-wait-replicas %d)\n",
			r.RedisCPUUsPerEvent, Percents(r.RedisMasterCPUPct, "%"), Percents(r.RedisReplicaCPUPct, "%"), r.WaitReplicas)
	}
	fmt.Fprintf(w, "  memory       %.1f KiB allocated per event, %d GC cycles while measuring (whole process)\n", r.AllocKBPerEvent, r.GCCycles)
	fmt.Fprintf(w, "  GC pacing    GC percent %d at the end; %s\n", r.GCPercent, r.GCPacing)
}

// Percents formats percentages as a space-separated list, each followed by
// unit; "none" when empty.
func Percents(v []float64, unit string) string {
	if len(v) == 0 {
		return "none"
	}
	parts := make([]string, len(v))
	for i, x := range v {
		parts[i] = fmt.Sprintf("%.0f%s", x, unit)
	}
	return strings.Join(parts, " ")
}

// loadAvg reads /proc/loadavg; zeros where it is not available.
func loadAvg() [3]float64 {
	var out [3]float64
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return out
	}
	for i, f := range strings.Fields(string(b)) {
		if i >= 3 {
			break
		}
		out[i], _ = strconv.ParseFloat(f, 64)
	}
	return out
}

// peakRSS returns this process's peak resident memory in MiB, or 0.
func peakRSS() float64 { return float64(PeakRSS("self")) / (1 << 20) }

// PeakRSS returns the peak resident memory (Linux VmHWM) of process pid
// ("self", or a number) in bytes, or 0 where it cannot be read.
func PeakRSS(pid string) int64 {
	b, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			f := strings.Fields(rest) // "123456 kB"
			if len(f) == 2 && f[1] == "kB" {
				kb, _ := strconv.ParseInt(f[0], 10, 64)
				return kb << 10
			}
		}
	}
	return 0
}

func machine(r *Result) {
	r.CPUs = runtime.NumCPU()
	r.GoMaxProcs = runtime.GOMAXPROCS(0)
}

// randomHex returns 2n random hex digits.
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return hex.EncodeToString(b)
}
