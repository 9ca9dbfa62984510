package service

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/streamerd/streamer/store"
)

// statsEvery is how many probes pass between two refreshes of the pool
// metrics (pending entries, lag, outbox lengths).
const statsEvery = 5

// probeState is the outcome of the last backend probe.
type probeState struct {
	mu    sync.Mutex
	err   error     // nil when the last probe succeeded
	since time.Time // when the backend became reachable, as the probes saw it
}

// set records a probe's outcome at now.
func (s *probeState) set(err error, now time.Time) {
	s.mu.Lock()
	if err == nil && s.err != nil {
		s.since = now
	}
	s.err = err
	s.mu.Unlock()
}

// reachableFor reports for how long, as of now, the backend has been
// reachable without a failed probe; 0 while it is not.
func (s *probeState) reachableFor(now time.Time) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return 0
	}
	return now.Sub(s.since)
}

func (s *probeState) get() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// errNotProbed is the readiness error before the first probe.
var errNotProbed = errors.New("backend not probed yet")

// runMonitor probes the backend every ProbeInterval (readiness) and
// refreshes the pool metrics every statsEvery probes, until ctx is done.
func (n *Node) runMonitor(ctx context.Context) {
	t := n.cfg.Clock.NewTimer(n.cfg.ProbeInterval)
	defer t.Stop()
	for i := 0; ; i++ {
		n.probeBackend(ctx)
		if i%statsEvery == 1 && n.probe.get() == nil { // first a tick after start, once partitions are owned
			n.refreshStats(ctx)
		}
		t.Reset(n.cfg.ProbeInterval) // after the work: a fake clock sees the round end
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		}
	}
}

// probeBackend asks the backend for the live nodes, within ProbeInterval
// (at most a second), and records the outcome.
func (n *Node) probeBackend(ctx context.Context) {
	pctx, cancel := context.WithTimeout(ctx, min(n.cfg.ProbeInterval, time.Second))
	defer cancel()
	_, err := n.backend.Nodes.Live(pctx)
	if ctx.Err() != nil {
		return
	}
	was := n.probe.get()
	n.probe.set(err, n.cfg.Clock.Now())
	if err != nil {
		n.metrics.backendUp.Set(0)
		n.metrics.backendProbeErrors.Inc()
		if was == nil || errors.Is(was, errNotProbed) {
			n.log.Error("backend unreachable: not ready", "err", err)
		}
		return
	}
	n.metrics.backendUp.Set(1)
	if was != nil && !errors.Is(was, errNotProbed) {
		n.log.Info("backend reachable again: ready")
	}
}

// refreshStats updates the pending-entries and lag gauges of the owned
// partitions and the outbox-length gauges of the sessions held here.
func (n *Node) refreshStats(ctx context.Context) {
	sctx, cancel := context.WithTimeout(ctx, statsEvery*n.cfg.ProbeInterval)
	defer cancel()
	n.consumersMu.Lock()
	parts := make([]int, 0, len(n.consumers))
	for p := range n.consumers {
		parts = append(parts, p)
	}
	n.consumersMu.Unlock()
	lagger, _ := n.backend.Log.(store.LagReporter)
	for _, p := range parts {
		pending, err := n.backend.Log.Pending(sctx, p)
		if err != nil {
			return
		}
		lag := int64(-1)
		if lagger != nil {
			if lag, err = lagger.Lag(sctx, p); err != nil {
				return
			}
		}
		n.consumersMu.Lock()
		if _, owned := n.consumers[p]; owned { // not released meanwhile
			label := strconv.Itoa(p)
			n.metrics.pending.WithLabelValues(label).Set(float64(pending))
			if lag >= 0 {
				n.metrics.lag.WithLabelValues(label).Set(float64(lag))
			} else {
				n.metrics.lag.DeleteLabelValues(label) // unknown
			}
		}
		n.consumersMu.Unlock()
	}

	var total, largest int64
	for _, gw := range n.sessions.gateways() {
		l, err := n.backend.Outboxes.Len(sctx, gw)
		if err != nil {
			return
		}
		total += l
		largest = max(largest, l)
	}
	n.metrics.outboxTotal.Set(float64(total))
	n.metrics.outboxMax.Set(float64(largest))
}
