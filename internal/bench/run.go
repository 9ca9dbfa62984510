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
	res := &Result{
		Mode: "embedded", Nodes: cfg.Nodes, Gateways: cfg.Gateways, SubsPerGateway: cfg.SubsPerGateway,
		Partitions: cfg.Partitions, Collections: cfg.Collections, DistinctValues: cfg.DistinctValues,
		Mix: cfg.Mix, Rate: cfg.Rate, DurationSec: cfg.Duration.Seconds(), LoadAvgStart: loadAvg(),
	}
	if cfg.RedisURL != "" {
		res.Mode = "redis"
	}
	machine(res)
	out := cfg.Progress

	wl := newWorkload(cfg)

	fmt.Fprintf(out, "starting %d %s node(s), %d partitions\n", cfg.Nodes, res.Mode, cfg.Partitions)
	cl, err := startCluster(ctx, cfg)
	if err != nil {
		return nil, err
	}
	tl := newTimeline()
	rec := newRecorder(wl, cfg.Gateways, tl)
	var conns []*client.Conn
	var pub *publisher
	var teardownOnce sync.Once
	teardown := func() {
		teardownOnce.Do(func() {
			for _, c := range conns {
				_ = c.Close()
			}
			rec.wait()
			if pub != nil {
				pub.close()
			}
			cl.close()
		})
	}
	defer teardown()

	start := time.Now()
	if conns, err = connect(ctx, cfg, cl.addrs, wl, rec); err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "%d gateways × %d subscriptions (+%d markers each) subscribed in %v\n",
		cfg.Gateways, cfg.SubsPerGateway, cfg.Collections, time.Since(start).Round(time.Millisecond))
	if pub, err = newPublisher(cfg, wl, rec, tl, cl.addrs); err != nil {
		return nil, err
	}
	// Subscribing leaves hundreds of MiB of garbage behind. Collect it now,
	// as Go's own benchmarks collect before timing, so that the collection
	// it would cost falls here instead of at the start of the measured
	// phase: what is measured then is the collections the events cause.
	runtime.GC()

	if cfg.Warmup > 0 {
		stop := startProgress(out, phaseWarmup, pub, rec, tl)
		// One collection halfway through the warmup, under load, so that
		// the measured phase meets the GC as a long-running node would.
		// Go sizes the runway of each cycle by the allocation it saw
		// during the marks of earlier ones; the collection above saw none,
		// and the runtime would otherwise start the first loaded cycle
		// 4 MiB before its goal, with every allocating goroutine assisting.
		taught := make(chan struct{})
		teach := time.AfterFunc(cfg.Warmup/2, func() { runtime.GC(); close(taught) })
		err := pub.run(ctx, phaseWarmup, cfg.Warmup)
		if !teach.Stop() {
			<-taught // never into the measured phase
		}
		if err == nil {
			_, err = closePhase(ctx, cfg, phaseWarmup, pub, rec)
		}
		stop()
		if err != nil {
			return nil, fmt.Errorf("bench: warmup: %w", err)
		}
	}

	first := pub.published()
	if cfg.CPUProfile != nil {
		if err := pprof.StartCPUProfile(cfg.CPUProfile); err != nil {
			return nil, fmt.Errorf("bench: CPU profile: %w", err)
		}
	}
	if cfg.Trace != nil {
		if err := trace.Start(cfg.Trace); err != nil {
			return nil, fmt.Errorf("bench: execution trace: %w", err)
		}
	}
	var memBefore, memAfter runtime.MemStats
	runtime.ReadMemStats(&memBefore)
	cpuBefore := readCPU()
	start = time.Now()
	tl.begin(start)
	stop := startProgress(out, phaseMeasure, pub, rec, tl)
	err = pub.run(ctx, phaseMeasure, cfg.Duration)
	published := time.Since(start)
	var drained bool
	if err == nil {
		drained, err = closePhase(ctx, cfg, phaseMeasure, pub, rec)
	}
	span := time.Since(start)
	runtime.ReadMemStats(&memAfter)
	res.CPUStealPct, res.CPUPressurePct = cpuBetween(cpuBefore, readCPU())
	stop()
	if cfg.CPUProfile != nil {
		pprof.StopCPUProfile()
	}
	if cfg.Trace != nil {
		trace.Stop()
	}
	if err != nil {
		return nil, err
	}
	if cfg.MemProfile != nil {
		// A collection first, so that the profile's in-use figures are
		// the live heap of the loaded node rather than its last cycle.
		runtime.GC()
		if err := pprof.Lookup("allocs").WriteTo(cfg.MemProfile, 0); err != nil {
			return nil, fmt.Errorf("bench: allocation profile: %w", err)
		}
	}
	res.PeakRSSMB = peakRSS()
	if !drained {
		fmt.Fprintf(out, "ERROR: the last matches did not arrive within %v; what is missing counts as lost\n", cfg.DrainTimeout)
	}
	events := pub.published() - first
	if events > 0 {
		res.AllocKBPerEvent = float64(memAfter.TotalAlloc-memBefore.TotalAlloc) / 1024 / float64(events)
	}
	res.GCCycles = memAfter.NumGC - memBefore.NumGC
	gogc := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(gogc)
	res.GCPercent = gogc[0].Value.Uint64()
	total := pub.published()
	for _, c := range conns {
		s := c.Stats()
		res.ClientDuplicatesDropped += s.Duplicates
		res.Reconnects += s.Reconnects
	}
	teardown()

	pairs := make([][]uint64, cfg.Gateways)
	for g, r := range rec.per {
		pairs[g] = r.pairs
		res.WrongOp += r.wrongOp
		res.Unexpected += r.foreign
		res.Resyncs += r.resyncs
		if r.dropped > 0 {
			return nil, fmt.Errorf("bench: gateway %d: %d subscriptions dropped by the node", g, r.dropped)
		}
		if r.finalErr != nil && !errors.Is(r.finalErr, client.ErrClosed) {
			return nil, fmt.Errorf("bench: gateway %d: %w", g, r.finalErr)
		}
	}
	// The verifier compiles every distinct criterion once more. Built only
	// now, its objects are not in the heap the collections of the measured
	// phase had to mark.
	vstart := time.Now()
	ver, err := newVerifier(wl)
	if err != nil {
		return nil, err
	}
	res.DistinctCrit = ver.distinct
	fmt.Fprintf(out, "verifying %d events against %d distinct criteria by brute force\n", total, ver.distinct)
	foreign, wrongOp := res.Unexpected, res.WrongOp
	var checked atomic.Uint64
	stopVerifyProgress := every(time.Second, func() {
		fmt.Fprintf(out, "[verify] %d of %d events checked\n", checked.Load(), total)
	})
	res.Completeness = ver.verify(ctx, total, pairs, &checked)
	stopVerifyProgress()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	res.Unexpected += foreign
	res.WrongOp = wrongOp
	fmt.Fprintf(out, "verified in %v\n", time.Since(vstart).Round(time.Millisecond))

	var measuredPairs int64
	for _, d := range pairs {
		measuredPairs += int64(len(d) - sort.Search(len(d), func(i int) bool { return d[i]>>32 >= first }))
	}
	res.Events = int64(events)
	res.EventsPerSec = float64(events) / span.Seconds()
	res.PublishedPerSec = float64(events) / published.Seconds()
	res.DeliveriesPerSec = float64(measuredPairs) / span.Seconds()
	res.DrainMs = ms(span - published)
	res.hist = tl.overall
	res.Latency = latencyOf(tl.overall)
	res.Timeline = tl.result()

	if cfg.BaselineDuration > 0 {
		fmt.Fprintf(out, "baseline: naive fan-out for %v\n", cfg.BaselineDuration)
		b, err := naiveBaseline(ctx, wl, cfg.BaselineDuration)
		if err != nil {
			return nil, err
		}
		res.Baselines.Naive = b
		if cfg.RedisURL != "" {
			fmt.Fprintf(out, "baseline: raw Redis Streams loop for %v\n", cfg.BaselineDuration)
			if res.Baselines.RedisStreams, err = redisBaseline(ctx, cfg, wl); err != nil {
				return nil, err
			}
		}
		for _, b := range []*Baseline{res.Baselines.Naive, res.Baselines.RedisStreams} {
			if b != nil && b.EventsPerSec > 0 {
				b.Ratio = res.EventsPerSec / b.EventsPerSec
			}
		}
	}
	res.LoadAvgEnd = loadAvg()
	return res, nil
}

// connect dials the gateways (round-robin over the nodes), starts their
// receivers and subscribes every subscription of the workload plus the
// markers.
func connect(ctx context.Context, cfg Config, addrs []string, wl *workload, rec *recorder) ([]*client.Conn, error) {
	conns := make([]*client.Conn, 0, cfg.Gateways)
	fail := func(err error) ([]*client.Conn, error) {
		for _, c := range conns {
			_ = c.Close()
		}
		return nil, err
	}
	for g := range cfg.Gateways {
		c, err := client.Dial(ctx, addrs[g%len(addrs)],
			client.WithLogger(cfg.Logger), client.WithGatewayID(fmt.Sprintf("bench-gw-%d", g)))
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
