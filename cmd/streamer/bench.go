package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/streamerd/streamer/internal/bench"
	"github.com/streamerd/streamer/store"
)

const benchSynopsis = `bench [--redis URL] [--nodes N] [--gateways G] [--subs S] [--rate R|max] [--duration D] [--json] [--plot FILE.png] [flags]

Load harness. Starts N streamer nodes in this process (embedded in-memory
backend, or Redis with --redis; the in-memory backend serves one node only),
connects G gateways to them with the client library over loopback gRPC, gives
each S subscriptions (--mix: equality filters over --distinct-values values,
document ids, CEL expressions), publishes events at --rate for --duration
after a --warmup, and reports publish → gateway latency (p50 p90 p99 p99.9
max), events/s and deliveries/s.

Every run verifies completeness: the (event, subscription) pairs that should
arrive are computed by brute force over the published documents and compared
with what arrived. Anything lost, wrongly delivered or resynced is reported
loudly and the command exits non-zero. Baselines measured in the same run:
the naive design (every gateway evaluates all its subscriptions against every
event) and, with --redis, the raw Redis Streams XADD → XREADGROUP → XACK loop.
Their ratios compare capacities only with --rate max.

"streamer bench ws" measures the fan-out through real WebSocket connections
to the reference gateway instead ("streamer bench ws --help").

Progress goes to stderr every second. --json prints one JSON object as the
last line of stdout (the summary then goes to stderr). Every flag also reads
STREAMER_<FLAG>, e.g. STREAMER_REDIS.`

// benchOptions are bench's flags.
type benchOptions struct {
	redisURL, rate, mix, redisCluster, waitReplicas                     string
	clusterReplicas                                                     int
	nodes, gateways, subs, partitions, collections, distinct, documents int
	publishers, batch, maxInFlight                                      int
	duration, warmup, baseline, drain                                   time.Duration
	seed                                                                uint64
	asJSON, scale, syntrix                                              bool
	plotFile, cpuProfile, traceFile, memProfile, logLevel, abuse        string
	gcHeadroom                                                          *int
}

// benchFlags defines bench's flags on fs.
func benchFlags(fs *flag.FlagSet) *benchOptions {
	o := &benchOptions{}
	fs.StringVar(&o.redisURL, "redis", "", "Redis `URL` of the backend; empty = embedded in-memory backend (one node)")
	fs.StringVar(&o.redisCluster, "redis-cluster", "", "run on Redis Clusters the bench starts (redis-server and redis-cli from PATH), one run per `list` entry: the number of masters (shards), e.g. 1,3; prints a comparison, with each Redis master's CPU")
	fs.IntVar(&o.clusterReplicas, "redis-cluster-replicas", 0, "replicas of each master with --redis-cluster")
	fs.StringVar(&o.waitReplicas, "redis-wait-replicas", "0", "the nodes' --redis-wait-replicas; a `list` (e.g. 0,1) runs each value (with --redis-cluster)")
	fs.IntVar(&o.nodes, "nodes", bench.DefaultNodes, "streamer nodes started in this process (more than one needs --redis)")
	fs.IntVar(&o.gateways, "gateways", bench.DefaultGateways, "gateways (client library over loopback gRPC), spread over the nodes")
	fs.IntVar(&o.subs, "subs", bench.DefaultSubsPerGateway, "subscriptions per gateway")
	fs.StringVar(&o.rate, "rate", "10000", "events per second to publish, or `max` to publish as fast as the system absorbs")
	fs.DurationVar(&o.duration, "duration", bench.DefaultDuration, "length of the measured phase")
	fs.DurationVar(&o.warmup, "warmup", bench.DefaultWarmup, "phase at the same rate before the measured one (0 = none)")
	fs.IntVar(&o.partitions, "partitions", store.DefaultPartitions, "event-log partitions")
	fs.IntVar(&o.collections, "collections", bench.DefaultCollections, "collections the events and subscriptions are spread over")
	fs.IntVar(&o.distinct, "distinct-values", bench.DefaultDistinctValues, "distinct values of the field equality filters test (fewer = more matches per event)")
	fs.IntVar(&o.documents, "documents", bench.DefaultDocuments, "distinct document ids per collection")
	fs.StringVar(&o.mix, "mix", bench.DefaultMix.String(), "subscription mix in percent: `eq=P,doc=P,cel=P` (sum 100)")
	fs.IntVar(&o.publishers, "publishers", bench.DefaultPublishers, "concurrent Publish calls")
	fs.IntVar(&o.batch, "batch", bench.DefaultBatch, "most events per Publish call")
	fs.IntVar(&o.maxInFlight, "max-in-flight", bench.DefaultMaxInFlight, "with --rate max: how far publishing may run ahead of what gateways received, in events")
	fs.DurationVar(&o.baseline, "baseline-duration", bench.DefaultBaselineDuration, "how long each baseline runs (0 = no baselines)")
	fs.DurationVar(&o.drain, "drain-timeout", bench.DefaultDrainTimeout, "longest wait for the last matches after publishing stops")
	fs.Uint64Var(&o.seed, "seed", 1, "workload seed")
	fs.BoolVar(&o.asJSON, "json", false, "print the result as one JSON object on the last line of stdout")
	fs.StringVar(&o.plotFile, "plot", "", "write latency distribution and throughput over time to this PNG `file`")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a pprof CPU profile of the measured phase to `file` (with --abuse, of the run with the neighbour)")
	fs.StringVar(&o.traceFile, "trace", "", "write a runtime execution trace of the measured phase to `file` (go tool trace; a few MB per second)")
	fs.StringVar(&o.memProfile, "memprofile", "", "write the pprof allocation profile, taken after the measured phase, to `file`")
	fs.BoolVar(&o.syntrix, "syntrix", false, "compat-subscriber scenario: the gateways are clients of Syntrix's streamer service (syntrix.streamer.v1), as Syntrix's gateways are, instead of the client library; the mix defaults to eq=90,doc=10 (no CEL in Syntrix's filters)")
	fs.BoolVar(&o.scale, "scale", false, "scale scenario (needs --redis): start with one node, grow to four and shrink back to one, a node at a time, during the measured phase; reports each step's rebalancing time and latency (give a --duration of a minute or so)")
	fs.StringVar(&o.abuse, "abuse", "", "noisy neighbour `kind` (cel, docs or subs): run twice, without and with an abusive tenant next to the workload, and compare the workload's latency")
	fs.StringVar(&o.logLevel, "log-level", "error", "`level` of the nodes' and gateways' logs on stderr: debug, info, warn or error")
	o.gcHeadroom = gcHeadroomFlag(fs)
	return o
}

// config checks the flags and returns the run's configuration (without its
// outputs, logger and progress writer).
func (o *benchOptions) config() (bench.Config, error) {
	r, err := bench.ParseRate(o.rate)
	if err != nil {
		return bench.Config{}, fmt.Errorf("--rate: %v", err)
	}
	m, err := bench.ParseMix(o.mix)
	if err != nil {
		return bench.Config{}, fmt.Errorf("--mix: %v", err)
	}
	if o.syntrix && o.mix == bench.DefaultMix.String() {
		m = bench.SyntrixMix // Syntrix's filters have no CEL
	}
	for _, f := range []struct {
		name string
		v    int
	}{{"nodes", o.nodes}, {"gateways", o.gateways}, {"subs", o.subs}, {"partitions", o.partitions}, {"collections", o.collections},
		{"distinct-values", o.distinct}, {"documents", o.documents}, {"publishers", o.publishers}, {"batch", o.batch}, {"max-in-flight", o.maxInFlight}} {
		if f.v < 1 {
			return bench.Config{}, fmt.Errorf("--%s must be at least 1", f.name)
		}
	}
	if o.duration <= 0 || o.warmup < 0 || o.baseline < 0 || o.drain <= 0 || o.seed == 0 {
		return bench.Config{}, errors.New("--duration and --drain-timeout must be positive, --warmup and --baseline-duration not negative, --seed not 0")
	}
	if o.redisCluster != "" && o.redisURL != "" {
		return bench.Config{}, errors.New("--redis-cluster starts its own Redis: leave --redis out")
	}
	if o.clusterReplicas < 0 || (o.clusterReplicas > 0 && o.redisCluster == "") {
		return bench.Config{}, errors.New("--redis-cluster-replicas must not be negative and needs --redis-cluster")
	}
	if o.nodes > 1 && o.redisURL == "" && o.redisCluster == "" {
		return bench.Config{}, fmt.Errorf("--nodes %d: the embedded in-memory backend serves exactly one node; add --redis URL to run several nodes on one Redis", o.nodes)
	}
	return bench.Config{
		RedisURL: o.redisURL, Nodes: o.nodes, Gateways: o.gateways, SubsPerGateway: o.subs, Rate: r, Scale: o.scale, Syntrix: o.syntrix,
		Duration: o.duration, Warmup: negativeIfZero(o.warmup), Partitions: o.partitions, Collections: o.collections,
		DistinctValues: o.distinct, Documents: o.documents, Mix: m, Publishers: o.publishers, Batch: o.batch,
		MaxInFlight: o.maxInFlight, BaselineDuration: negativeIfZero(o.baseline), DrainTimeout: o.drain, Seed: o.seed,
	}, nil
}

func runBench(ctx context.Context, args []string, sio stdio) error {
	if len(args) > 0 && args[0] == "ws" {
		return runBenchWS(ctx, args[1:], sio)
	}
	fs := newFlagSet("bench", benchSynopsis, sio)
	o := benchFlags(fs)
	if err := parseFlagsEnv(fs, args); err != nil {
		return err
	}
	cfg, err := o.config()
	if err != nil {
		return usageError(sio, err)
	}
	logger, err := newLogger(sio, o.logLevel, "text")
	if err != nil {
		return usageError(sio, err)
	}
	// The nodes run in this process: they get the GC pacing streamer serve
	// gives them.
	gcp, gcPacing, err := startGCPolicy(*o.gcHeadroom, logger)
	if err != nil {
		return usageError(sio, err)
	}
	defer gcp.Stop()
	fmt.Fprintf(sio.err, "GC pacing: %s\n", gcPacing)
	cfg.Progress, cfg.Logger = sio.err, logger

	outs := &outputFiles{}
	defer outs.closeAll()
	for _, out := range []struct {
		name string
		w    *io.Writer
	}{{o.cpuProfile, &cfg.CPUProfile}, {o.memProfile, &cfg.MemProfile}, {o.traceFile, &cfg.Trace}} {
		if out.name == "" {
			continue
		}
		if *out.w, err = outs.create(out.name); err != nil {
			return err
		}
	}

	if o.redisCluster != "" {
		return o.runOnClusters(ctx, sio, cfg, gcPacing)
	}
	w, err := parseCounts(o.waitReplicas, 0)
	if err != nil || len(w) != 1 {
		return usageError(sio, fmt.Errorf("--redis-wait-replicas %q: one number without --redis-cluster (%v)", o.waitReplicas, err))
	}
	cfg.WaitReplicas = w[0]
	var quiet *bench.Result
	if o.abuse != "" { // the same run without the neighbour first
		fmt.Fprintf(sio.err, "--- without the noisy neighbour\n")
		qcfg := cfg // profiles and traces are of the run with the neighbour
		qcfg.CPUProfile, qcfg.MemProfile, qcfg.Trace = nil, nil, nil
		if quiet, err = bench.Run(ctx, qcfg); err != nil {
			return err
		}
		quiet.GCPacing = gcPacing
		quiet.WriteSummary(sio.out)
		fmt.Fprintf(sio.err, "--- with the noisy neighbour (%s)\n", o.abuse)
		cfg.Abuse = o.abuse
	}
	res, err := bench.Run(ctx, cfg)
	if err != nil {
		return err
	}
	res.GCPacing = gcPacing
	if err := o.report(sio, res); err != nil {
		return err
	}
	if quiet != nil {
		q, a := quiet.Latency, res.Latency
		fmt.Fprintf(sio.out, "noisy neighbour (%s): the workload's p50 %.2f → %.2f ms (×%.2f), p99 %.2f → %.2f ms (×%.2f)\n",
			o.abuse, q.P50, a.P50, a.P50/max(q.P50, 1e-9), q.P99, a.P99, a.P99/max(q.P99, 1e-9))
	}
	if err := outs.closeAll(); err != nil {
		return err
	}
	if failures := res.Failures(); len(failures) > 0 {
		fmt.Fprintln(sio.err, "\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!")
		for _, f := range failures {
			fmt.Fprintf(sio.err, "!!! BENCH FAILED: %s\n", f)
		}
		for _, e := range res.Examples {
			fmt.Fprintf(sio.err, "!!!   e.g. %s\n", e)
		}
		fmt.Fprintln(sio.err, "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!")
		return errors.New(strings.Join(failures, "; "))
	}
	return nil
}

// runOnClusters runs cfg on a Redis Cluster of each --redis-cluster size
// and with each --redis-wait-replicas value, the bench starting each
// cluster, and prints a comparison of the runs.
func (o *benchOptions) runOnClusters(ctx context.Context, sio stdio, cfg bench.Config, gcPacing string) error {
	shards, err := parseCounts(o.redisCluster, 1)
	if err != nil {
		return usageError(sio, fmt.Errorf("--redis-cluster %q: %v", o.redisCluster, err))
	}
	waits, err := parseCounts(o.waitReplicas, 0)
	if err != nil {
		return usageError(sio, fmt.Errorf("--redis-wait-replicas %q: %v", o.waitReplicas, err))
	}
	if w := slices.Max(waits); w > o.clusterReplicas {
		return usageError(sio, fmt.Errorf("--redis-wait-replicas %d needs at least %d --redis-cluster-replicas (every write would fail)", w, w))
	}
	var results []*bench.Result
	var failed []string
	for _, n := range shards {
		for _, w := range waits {
			fmt.Fprintf(sio.err, "--- Redis Cluster of %d master(s), %d replica(s) each, --redis-wait-replicas %d\n", n, o.clusterReplicas, w)
			rc, err := bench.StartRedisCluster(ctx, n, o.clusterReplicas)
			if err != nil {
				return err
			}
			run := cfg
			run.RedisURL, run.RedisMasters, run.RedisReplicas, run.WaitReplicas = rc.URL, rc.Masters, rc.Replicas, w
			res, err := bench.Run(ctx, run)
			rc.Close()
			if err != nil {
				return err
			}
			res.GCPacing = gcPacing
			res.WriteSummary(sio.err)
			results = append(results, res)
			for _, f := range res.Failures() {
				failed = append(failed, fmt.Sprintf("%d shard(s), wait %d: %s", n, w, f))
			}
		}
	}
	fmt.Fprintf(sio.out, "%-7s %-5s %12s %10s %10s %12s %14s  %s\n", "shards", "wait", "events/s", "p50 ms", "p99 ms", "CPU µs/ev", "Redis µs/ev", "Redis masters' CPU (% of a core)")
	for _, r := range results {
		fmt.Fprintf(sio.out, "%-7d %-5d %12.0f %10.2f %10.2f %12.1f %14.1f  %s\n", len(r.RedisMasterCPUPct), r.WaitReplicas, r.EventsPerSec,
			r.Latency.P50, r.Latency.P99, r.CPUUsPerEvent, r.RedisCPUUsPerEvent, bench.Percents(r.RedisMasterCPUPct, ""))
	}
	if len(results) > 0 {
		steal := make([]string, len(results))
		for i, r := range results {
			steal[i] = fmt.Sprintf("%.1f %%", r.CPUStealPct)
		}
		fmt.Fprintf(sio.out, "hypervisor steal while measuring: %s\n", strings.Join(steal, ", "))
	}
	if o.asJSON {
		b, err := json.Marshal(results)
		if err != nil {
			return err
		}
		fmt.Fprintf(sio.out, "%s\n", b)
	}
	if len(failed) > 0 {
		for _, f := range failed {
			fmt.Fprintf(sio.err, "!!! BENCH FAILED: %s\n", f)
		}
		return errors.New(strings.Join(failed, "; "))
	}
	return nil
}

// parseCounts parses a comma-separated list of integers of at least min.
func parseCounts(list string, min int) ([]int, error) {
	var out []int
	for _, f := range strings.Split(list, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < min {
			return nil, fmt.Errorf("%q is not a number of at least %d", f, min)
		}
		out = append(out, n)
	}
	return out, nil
}

// report writes the run's summary (on stdout, or on stderr with --json), its
// plot and its JSON line.
func (o *benchOptions) report(sio stdio, res *bench.Result) error {
	summary := sio.out
	if o.asJSON {
		summary = sio.err
	}
	res.WriteSummary(summary)
	if o.plotFile != "" {
		if err := writePlot(o.plotFile, res); err != nil {
			return err
		}
		fmt.Fprintf(sio.err, "plot written to %s\n", o.plotFile)
	}
	if o.asJSON {
		b, err := json.Marshal(res)
		if err != nil {
			return err
		}
		fmt.Fprintf(sio.out, "%s\n", b)
	}
	return nil
}

// outputFiles are the files a run writes its profiles to.
type outputFiles struct{ files []*os.File }

func (f *outputFiles) create(name string) (io.Writer, error) {
	file, err := os.Create(name)
	if err != nil {
		return nil, err
	}
	f.files = append(f.files, file)
	return file, nil
}

// closeAll closes the files once, reporting the first error.
func (f *outputFiles) closeAll() error {
	var first error
	for _, file := range f.files {
		if err := file.Close(); err != nil && first == nil {
			first = err
		}
	}
	f.files = nil
	return first
}

// negativeIfZero maps the CLI's "0 = none" to the library's negative value
// (its zero means the default).
func negativeIfZero(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

func writePlot(name string, res *bench.Result) error {
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	if err := bench.WritePlot(f, res); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
