package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
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

Progress goes to stderr every second. --json prints one JSON object as the
last line of stdout (the summary then goes to stderr). Every flag also reads
STREAMER_<FLAG>, e.g. STREAMER_REDIS.`

func runBench(ctx context.Context, args []string, sio stdio) error {
	fs := newFlagSet("bench", benchSynopsis, sio)
	redisURL := fs.String("redis", "", "Redis `URL` of the backend; empty = embedded in-memory backend (one node)")
	nodes := fs.Int("nodes", bench.DefaultNodes, "streamer nodes started in this process (more than one needs --redis)")
	gateways := fs.Int("gateways", bench.DefaultGateways, "gateways (client library over loopback gRPC), spread over the nodes")
	subs := fs.Int("subs", bench.DefaultSubsPerGateway, "subscriptions per gateway")
	rate := fs.String("rate", "10000", "events per second to publish, or `max` to publish as fast as the system absorbs")
	duration := fs.Duration("duration", bench.DefaultDuration, "length of the measured phase")
	warmup := fs.Duration("warmup", bench.DefaultWarmup, "phase at the same rate before the measured one (0 = none)")
	partitions := fs.Int("partitions", store.DefaultPartitions, "event-log partitions")
	collections := fs.Int("collections", bench.DefaultCollections, "collections the events and subscriptions are spread over")
	distinct := fs.Int("distinct-values", bench.DefaultDistinctValues, "distinct values of the field equality filters test (fewer = more matches per event)")
	documents := fs.Int("documents", bench.DefaultDocuments, "distinct document ids per collection")
	mix := fs.String("mix", bench.DefaultMix.String(), "subscription mix in percent: `eq=P,doc=P,cel=P` (sum 100)")
	publishers := fs.Int("publishers", bench.DefaultPublishers, "concurrent Publish calls")
	batch := fs.Int("batch", bench.DefaultBatch, "most events per Publish call")
	maxInFlight := fs.Int("max-in-flight", bench.DefaultMaxInFlight, "with --rate max: how far publishing may run ahead of what gateways received, in events")
	baseline := fs.Duration("baseline-duration", bench.DefaultBaselineDuration, "how long each baseline runs (0 = no baselines)")
	drain := fs.Duration("drain-timeout", bench.DefaultDrainTimeout, "longest wait for the last matches after publishing stops")
	seed := fs.Uint64("seed", 1, "workload seed")
	asJSON := fs.Bool("json", false, "print the result as one JSON object on the last line of stdout")
	plotFile := fs.String("plot", "", "write latency distribution and throughput over time to this PNG `file`")
	cpuProfile := fs.String("cpuprofile", "", "write a pprof CPU profile of the measured phase to `file`")
	traceFile := fs.String("trace", "", "write a runtime execution trace of the measured phase to `file` (go tool trace; a few MB per second)")
	memProfile := fs.String("memprofile", "", "write the pprof allocation profile, taken after the measured phase, to `file`")
	logLevel := fs.String("log-level", "error", "`level` of the nodes' and gateways' logs on stderr: debug, info, warn or error")
	gcHeadroom := gcHeadroomFlag(fs)
	if err := parseFlagsEnv(fs, args); err != nil {
		return err
	}

	usage := func(format string, a ...any) error {
		fmt.Fprintf(sio.err, format+"\n", a...)
		return errUsage
	}
	r, err := bench.ParseRate(*rate)
	if err != nil {
		return usage("--rate: %v", err)
	}
	m, err := bench.ParseMix(*mix)
	if err != nil {
		return usage("--mix: %v", err)
	}
	for _, f := range []struct {
		name string
		v    int
	}{{"nodes", *nodes}, {"gateways", *gateways}, {"subs", *subs}, {"partitions", *partitions}, {"collections", *collections},
		{"distinct-values", *distinct}, {"documents", *documents}, {"publishers", *publishers}, {"batch", *batch}, {"max-in-flight", *maxInFlight}} {
		if f.v < 1 {
			return usage("--%s must be at least 1", f.name)
		}
	}
	if *duration <= 0 || *warmup < 0 || *baseline < 0 || *drain <= 0 || *seed == 0 {
		return usage("--duration and --drain-timeout must be positive, --warmup and --baseline-duration not negative, --seed not 0")
	}
	if *nodes > 1 && *redisURL == "" {
		return usage("--nodes %d: the embedded in-memory backend serves exactly one node; add --redis URL to run several nodes on one Redis", *nodes)
	}
	logger, err := newLogger(sio, *logLevel, "text")
	if err != nil {
		return usage("%v", err)
	}
	// The nodes run in this process: they get the GC pacing streamer serve
	// gives them.
	gcp, gcPacing, err := startGCPolicy(*gcHeadroom, logger)
	if err != nil {
		return usage("%v", err)
	}
	defer gcp.Stop()
	fmt.Fprintf(sio.err, "GC pacing: %s\n", gcPacing)

	cfg := bench.Config{
		RedisURL: *redisURL, Nodes: *nodes, Gateways: *gateways, SubsPerGateway: *subs, Rate: r,
		Duration: *duration, Warmup: negativeIfZero(*warmup), Partitions: *partitions, Collections: *collections,
		DistinctValues: *distinct, Documents: *documents, Mix: m, Publishers: *publishers, Batch: *batch,
		MaxInFlight: *maxInFlight, BaselineDuration: negativeIfZero(*baseline), DrainTimeout: *drain, Seed: *seed,
		Progress: sio.err, Logger: logger,
	}
	var files []*os.File
	defer func() {
		for _, f := range files {
			_ = f.Close()
		}
	}()
	create := func(name string) (io.Writer, error) {
		f, err := os.Create(name)
		if err != nil {
			return nil, err
		}
		files = append(files, f)
		return f, nil
	}
	if *cpuProfile != "" {
		if cfg.CPUProfile, err = create(*cpuProfile); err != nil {
			return err
		}
	}
	if *memProfile != "" {
		if cfg.MemProfile, err = create(*memProfile); err != nil {
			return err
		}
	}
	if *traceFile != "" {
		if cfg.Trace, err = create(*traceFile); err != nil {
			return err
		}
	}

	res, err := bench.Run(ctx, cfg)
	if err != nil {
		return err
	}
	res.GCPacing = gcPacing
	summary := sio.out
	if *asJSON {
		summary = sio.err
	}
	res.WriteSummary(summary)
	if *plotFile != "" {
		if err := writePlot(*plotFile, res); err != nil {
			return err
		}
		fmt.Fprintf(sio.err, "plot written to %s\n", *plotFile)
	}
	if *asJSON {
		b, err := json.Marshal(res)
		if err != nil {
			return err
		}
		fmt.Fprintf(sio.out, "%s\n", b)
	}
	for _, f := range files {
		if err := f.Close(); err != nil {
			return err
		}
	}
	files = nil
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
