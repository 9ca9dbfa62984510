package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"runtime/trace"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/streamerd/streamer/client"
)

// subscribeWorkers is how many Subscribe calls each gateway has in flight
// while setting up.
const subscribeWorkers = 32

// Run performs one run: it starts the nodes and gateways, subscribes,
// publishes a warmup phase and the measured phase (each closed by marker
// events, so that every match has arrived when it ends), stops everything,
// verifies completeness by brute force and measures the baselines. The
// error is for a run that could not be carried out; a run that lost events
// returns a Result whose Failures say so.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	r := &run{cfg: cfg, out: cfg.Progress, wl: newWorkload(cfg), res: &Result{
		Mode: "embedded", Nodes: cfg.Nodes, Gateways: cfg.Gateways, SubsPerGateway: cfg.SubsPerGateway,
		Partitions: cfg.Partitions, Collections: cfg.Collections, DistinctValues: cfg.DistinctValues,
		Mix: cfg.Mix, Rate: cfg.Rate, DurationSec: cfg.Duration.Seconds(), LoadAvgStart: loadAvg(), Abuse: cfg.Abuse,
	}}
	if cfg.RedisURL != "" {
		r.res.Mode = "redis"
	}
	machine(r.res)
	if err := r.setup(ctx); err != nil {
		r.teardown()
		return nil, err
	}
	defer r.teardown()
	if err := r.warmup(ctx); err != nil {
		return nil, err
	}
	m, err := r.measure(ctx)
	if err != nil {
		return nil, err
	}
	pairs, err := r.collect()
	if err != nil {
		return nil, err
	}
	if err := r.verify(ctx, pairs); err != nil {
		return nil, err
	}
	r.throughput(m, pairs)
	if err := r.baselines(ctx); err != nil {
		return nil, err
	}
	r.res.LoadAvgEnd = loadAvg()
	return r.res, nil
}

// run is one Run's state, phase by phase.
type run struct {
	cfg Config
	out io.Writer // progress
	res *Result
	wl  *workload

	cl    *cluster
	abuse *abuser // the noisy neighbour, when Config.Abuse is set
	tl    *timeline
	rec   *recorder
	conns []benchGateway
	pub   *publisher

	teardownOnce sync.Once
	total        uint64 // events published, warmup and measured, once collected
}

// measured is what the measured phase leaves for the result.
type measured struct {
	first     uint64        // sequence number of its first event
	events    uint64        // events it published
	published time.Duration // from its first publish to its last
	span      time.Duration // from its first publish until every match had arrived
}

// setup starts the nodes and connects and subscribes the gateways.
func (r *run) setup(ctx context.Context) error {
	cfg := r.cfg
	fmt.Fprintf(r.out, "starting %d %s node(s), %d partitions\n", cfg.Nodes, r.res.Mode, cfg.Partitions)
	var err error
	if r.cl, err = startCluster(ctx, cfg); err != nil {
		return err
	}
	r.tl = newTimeline()
	r.rec = newRecorder(r.wl, cfg.Gateways, r.tl)
	start := time.Now()
	if r.conns, err = connect(ctx, cfg, r.cl.addrs, r.wl, r.rec); err != nil {
		return err
	}
	fmt.Fprintf(r.out, "%d gateways × %d subscriptions (+%d markers each) subscribed in %v\n",
		cfg.Gateways, cfg.SubsPerGateway, cfg.Collections, time.Since(start).Round(time.Millisecond))
	if r.pub, err = newPublisher(cfg, r.wl, r.rec, r.tl, r.cl.addrs); err != nil {
		return err
	}
	if cfg.Abuse != "" {
		start := time.Now()
		if r.abuse, err = startAbuse(ctx, cfg.Abuse, r.cl.addrs[0]); err != nil {
			return err
		}
		fmt.Fprintf(r.out, "noisy neighbour %q running (set up in %v)\n", cfg.Abuse, time.Since(start).Round(time.Millisecond))
	}
	// Subscribing leaves hundreds of MiB of garbage behind. Collect it now,
	// as Go's own benchmarks collect before timing, so that the collection
	// it would cost falls here instead of at the start of the measured
	// phase: what is measured then is the collections the events cause.
	runtime.GC()
	return nil
}

// teardown closes the gateways, waits for their receivers and stops the
// publisher and the nodes, once.
func (r *run) teardown() {
	r.teardownOnce.Do(func() {
		r.abuse.stop()
		if r.abuse != nil && r.abuse.ended.Load() > 0 {
			fmt.Fprintf(r.out, "noisy neighbour: the node ended %d of its subscriptions (CEL cost limit) and refused %d of them again\n",
				r.abuse.ended.Load(), r.abuse.refused.Load())
		}
		for _, c := range r.conns {
			_ = c.Close()
		}
		if r.rec != nil {
			r.rec.wait()
		}
		if r.pub != nil {
			r.pub.close()
		}
		if r.cl != nil {
			r.cl.close()
		}
	})
}

// warmup publishes the warmup phase, if any.
func (r *run) warmup(ctx context.Context) error {
	if r.cfg.Warmup <= 0 {
		return nil
	}
	stop := startProgress(r.out, phaseWarmup, r.pub, r.rec, r.tl)
	defer stop()
	// One collection halfway through the warmup, under load, so that the
	// measured phase meets the GC as a long-running node would. Go sizes the
	// runway of each cycle by the allocation it saw during the marks of
	// earlier ones; the collection after subscribing saw none, and the
	// runtime would otherwise start the first loaded cycle 4 MiB before its
	// goal, with every allocating goroutine assisting.
	taught := make(chan struct{})
	teach := time.AfterFunc(r.cfg.Warmup/2, func() { runtime.GC(); close(taught) })
	err := r.pub.run(ctx, phaseWarmup, r.cfg.Warmup)
	if !teach.Stop() {
		<-taught // never into the measured phase
	}
	if err == nil {
		_, err = closePhase(ctx, r.cfg, phaseWarmup, r.pub, r.rec)
	}
	if err != nil {
		return fmt.Errorf("bench: warmup: %w", err)
	}
	return nil
}

// measure publishes the measured phase under the profiles asked for, and
// records its CPU, memory and GC figures.
func (r *run) measure(ctx context.Context) (measured, error) {
	cfg, res := r.cfg, r.res
	m := measured{first: r.pub.published()}
	if cfg.CPUProfile != nil {
		if err := pprof.StartCPUProfile(cfg.CPUProfile); err != nil {
			return m, fmt.Errorf("bench: CPU profile: %w", err)
		}
	}
	if cfg.Trace != nil {
		if err := trace.Start(cfg.Trace); err != nil {
			return m, fmt.Errorf("bench: execution trace: %w", err)
		}
	}
	var memBefore, memAfter runtime.MemStats
	runtime.ReadMemStats(&memBefore)
	cpuBefore := readCPU()
	selfBefore := selfCPU()
	redisBefore := redisCPU(cfg.RedisMasters, cfg.RedisReplicas)
	start := time.Now()
	r.tl.begin(start)
	stop := startProgress(r.out, phaseMeasure, r.pub, r.rec, r.tl)
	var scaled <-chan []ScaleStep
	if cfg.Scale {
		scaled = r.scale(ctx, start)
	}
	err := r.pub.run(ctx, phaseMeasure, cfg.Duration)
	m.published = time.Since(start)
	var drained bool
	if err == nil {
		drained, err = closePhase(ctx, cfg, phaseMeasure, r.pub, r.rec)
	}
	m.span = time.Since(start)
	if scaled != nil {
		res.Scale = <-scaled
		r.scaleLatencies(res.Scale)
	}
	runtime.ReadMemStats(&memAfter)
	res.CPUStealPct, res.CPUPressurePct = cpuBetween(cpuBefore, readCPU())
	selfUsed := selfCPU() - selfBefore
	redisUsed := redisCPU(cfg.RedisMasters, cfg.RedisReplicas)
	stop()
	if cfg.CPUProfile != nil {
		pprof.StopCPUProfile()
	}
	if cfg.Trace != nil {
		trace.Stop()
	}
	if err != nil {
		return m, err
	}
	if cfg.MemProfile != nil {
		// A collection first, so that the profile's in-use figures are
		// the live heap of the loaded node rather than its last cycle.
		runtime.GC()
		if err := pprof.Lookup("allocs").WriteTo(cfg.MemProfile, 0); err != nil {
			return m, fmt.Errorf("bench: allocation profile: %w", err)
		}
	}
	res.PeakRSSMB = peakRSS()
	if !drained {
		fmt.Fprintf(r.out, "ERROR: the last matches did not arrive within %v; what is missing counts as lost\n", cfg.DrainTimeout)
	}
	m.events = r.pub.published() - m.first
	if m.events > 0 {
		res.AllocKBPerEvent = float64(memAfter.TotalAlloc-memBefore.TotalAlloc) / 1024 / float64(m.events)
		res.CPUUsPerEvent = float64(selfUsed.Microseconds()) / float64(m.events)
	}
	res.WaitReplicas = cfg.WaitReplicas
	var redisTotal time.Duration
	for i, used := range redisUsed {
		used -= redisBefore[i]
		redisTotal += used
		pct := 100 * used.Seconds() / m.span.Seconds()
		if i < len(cfg.RedisMasters) {
			res.RedisMasterCPUPct = append(res.RedisMasterCPUPct, pct)
		} else {
			res.RedisReplicaCPUPct = append(res.RedisReplicaCPUPct, pct)
		}
	}
	if m.events > 0 && len(redisUsed) > 0 {
		res.RedisCPUUsPerEvent = float64(redisTotal.Microseconds()) / float64(m.events)
	}
	res.GCCycles = memAfter.NumGC - memBefore.NumGC
	gogc := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(gogc)
	res.GCPercent = gogc[0].Value.Uint64()
	return m, nil
}

// collect stops everything and gathers what the gateways received: the
// (event, subscription) pairs of each, and the counts of the client library.
func (r *run) collect() ([][]uint64, error) {
	res := r.res
	r.total = r.pub.published()
	for _, c := range r.conns {
		s := c.Stats()
		res.ClientDuplicatesDropped += s.Duplicates
		res.Reconnects += s.Reconnects
	}
	r.teardown()
	pairs := make([][]uint64, r.cfg.Gateways)
	for g, rr := range r.rec.per {
		pairs[g] = rr.pairs
		res.WrongOp += rr.wrongOp
		res.Unexpected += rr.foreign
		res.Resyncs += rr.resyncs
		if rr.dropped > 0 {
			return nil, fmt.Errorf("bench: gateway %d: %d subscriptions dropped by the node", g, rr.dropped)
		}
		if rr.finalErr != nil && !errors.Is(rr.finalErr, client.ErrClosed) {
			return nil, fmt.Errorf("bench: gateway %d: %w", g, rr.finalErr)
		}
	}
	return pairs, nil
}

// verify checks every published event's expected pairs against pairs.
func (r *run) verify(ctx context.Context, pairs [][]uint64) error {
	res := r.res
	// The verifier compiles every distinct criterion once more. Built only
	// now, its objects are not in the heap the collections of the measured
	// phase had to mark.
	vstart := time.Now()
	ver, err := newVerifier(r.wl)
	if err != nil {
		return err
	}
	res.DistinctCrit = ver.distinct
	fmt.Fprintf(r.out, "verifying %d events against %d distinct criteria by brute force\n", r.total, ver.distinct)
	foreign, wrongOp := res.Unexpected, res.WrongOp
	var checked atomic.Uint64
	stopVerifyProgress := every(time.Second, func() {
		fmt.Fprintf(r.out, "[verify] %d of %d events checked\n", checked.Load(), r.total)
	})
	res.Completeness = ver.verify(ctx, r.total, pairs, &checked)
	stopVerifyProgress()
	if err := ctx.Err(); err != nil {
		return err
	}
	res.Unexpected += foreign
	res.WrongOp = wrongOp
	fmt.Fprintf(r.out, "verified in %v\n", time.Since(vstart).Round(time.Millisecond))
	return nil
}

// throughput fills the rates and latency of the measured phase.
func (r *run) throughput(m measured, pairs [][]uint64) {
	res := r.res
	var measuredPairs int64
	for _, d := range pairs {
		measuredPairs += int64(len(d) - sort.Search(len(d), func(i int) bool { return d[i]>>32 >= m.first }))
	}
	res.Events = int64(m.events)
	res.EventsPerSec = float64(m.events) / m.span.Seconds()
	res.PublishedPerSec = float64(m.events) / m.published.Seconds()
	res.DeliveriesPerSec = float64(measuredPairs) / m.span.Seconds()
	res.DrainMs = ms(m.span - m.published)
	res.hist = r.tl.overall
	res.Latency = latencyOf(r.tl.overall)
	res.Timeline = r.tl.result()
}

// baselines measures the naive design and, in Redis mode, the raw Redis
// Streams loop, now that the nodes are stopped.
func (r *run) baselines(ctx context.Context) error {
	cfg, res := r.cfg, r.res
	if cfg.BaselineDuration <= 0 {
		return nil
	}
	fmt.Fprintf(r.out, "baseline: naive fan-out for %v\n", cfg.BaselineDuration)
	b, err := naiveBaseline(ctx, r.wl, cfg.BaselineDuration)
	if err != nil {
		return err
	}
	res.Baselines.Naive = b
	if cfg.RedisURL != "" {
		fmt.Fprintf(r.out, "baseline: raw Redis Streams loop for %v\n", cfg.BaselineDuration)
		if res.Baselines.RedisStreams, err = redisBaseline(ctx, cfg, r.wl); err != nil {
			return err
		}
	}
	for _, b := range []*Baseline{res.Baselines.Naive, res.Baselines.RedisStreams} {
		if b != nil && b.EventsPerSec > 0 {
			b.Ratio = res.EventsPerSec / b.EventsPerSec
		}
	}
	return nil
}

// connect dials the gateways (round-robin over the nodes), starts their
// receivers and subscribes every subscription of the workload plus the
// markers.
func connect(ctx context.Context, cfg Config, addrs []string, wl *workload, rec *recorder) ([]benchGateway, error) {
	conns := make([]benchGateway, 0, cfg.Gateways)
	fail := func(err error) ([]benchGateway, error) {
		for _, c := range conns {
			_ = c.Close()
		}
		return nil, err
	}
	for g := range cfg.Gateways {
		var c benchGateway
		var err error
		if cfg.Syntrix {
			c, err = dialSyntrix(ctx, addrs[g%len(addrs)])
		} else {
			c, err = client.Dial(ctx, addrs[g%len(addrs)],
				client.WithLogger(cfg.Logger), client.WithGatewayID(fmt.Sprintf("bench-gw-%d", g)))
		}
		if err != nil {
			return fail(err)
		}
		conns = append(conns, c)
		rec.start(g, c)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	for g, c := range conns {
		subs := wl.markerSubscriptions()
		for i := range wl.perGateway {
			subs = append(subs, wl.spec(g, i).sub)
		}
		for w := range subscribeWorkers {
			wg.Go(func() {
				for i := w; i < len(subs) && ctx.Err() == nil; i += subscribeWorkers {
					if err := c.Subscribe(ctx, subs[i]); err != nil {
						cancel(fmt.Errorf("bench: gateway %d: subscribe %s: %w", g, subs[i].ID, err))
						return
					}
				}
			})
		}
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return fail(err)
	}
	return conns, nil
}

// closePhase publishes ph's markers and waits until every gateway has them
// all, which (per-partition order) means every match of the phase has
// arrived. drained is false when that took longer than cfg.DrainTimeout.
func closePhase(ctx context.Context, cfg Config, ph phase, pub *publisher, rec *recorder) (drained bool, err error) {
	if err := pub.markers(ctx, ph); err != nil {
		return false, err
	}
	t := time.NewTimer(cfg.DrainTimeout)
	defer t.Stop()
	select {
	case <-rec.markersDone(ph):
		return true, nil
	case <-t.C:
		if ph == phaseWarmup {
			return false, fmt.Errorf("the warmup's last matches did not arrive within %v", cfg.DrainTimeout)
		}
		return false, nil
	case <-ctx.Done():
		return false, ctx.Err()
	}
}

// startProgress prints a line per second about phase ph until the returned
// function is called.
func startProgress(w io.Writer, ph phase, pub *publisher, rec *recorder, tl *timeline) (stop func()) {
	lastPub, lastPairs := pub.published(), rec.pairsTotal.Load()
	i := 0
	return every(time.Second, func() {
		p, pairs := pub.published(), rec.pairsTotal.Load()
		inFlight := int64(p) - int64(rec.maxSeen.Load()) - 1
		line := fmt.Sprintf("[%s %3ds] published %7d ev/s  delivered %8d/s  in flight ≤ %d",
			ph, i+1, p-lastPub, pairs-lastPairs, max(inFlight, 0))
		if ph == phaseMeasure {
			if _, _, p50, p99, ok := tl.snapshot(i); ok {
				line += fmt.Sprintf("  p50 %.2f ms  p99 %.2f ms", ms(p50), ms(p99))
			}
		}
		fmt.Fprintln(w, line)
		lastPub, lastPairs = p, pairs
		i++
	})
}

// every calls f every d until the returned function is called, which waits
// for a call in progress to finish.
func every(d time.Duration, f func()) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				f()
			}
		}
	})
	return func() {
		close(done)
		wg.Wait()
	}
}
