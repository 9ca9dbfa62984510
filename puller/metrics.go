package puller

import (
	"context"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the puller's Prometheus instruments, in the puller's own
// registry (never the global one), so several pullers can live in one
// process.
type metrics struct {
	registry *prometheus.Registry

	read          *prometheus.CounterVec // change events read, by operationType
	skipped       *prometheus.CounterVec // change events skipped, by reason
	appended      prometheus.Counter     // events appended to the log
	appendSeconds prometheus.Histogram   // one Append call
	checkpoints   prometheus.Counter     // checkpoints saved
	errors        *prometheus.CounterVec // failures, by kind
	lag           prometheus.Gauge       // now - commit time of the last appended event
	leader        prometheus.Gauge       // 1 while leading

	checkpointAt atomic.Int64 // unix ns of the last checkpoint save (or term start)
}

func newMetrics(p *Puller) *metrics {
	reg := prometheus.NewRegistry()
	m := &metrics{registry: reg}
	m.read = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "streamer_puller_events_read_total",
		Help: "Change events read from the MongoDB change stream, by operationType (insert, update, replace, delete, drop, rename, dropDatabase, invalidate, other).",
	}, []string{"operation"})
	m.skipped = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "streamer_puller_events_skipped_total",
		Help: "Change events not published, by reason: not_a_document_change (DDL events), unmappable (no document id or collection), malformed.",
	}, []string{"reason"})
	m.appended = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "streamer_puller_events_appended_total",
		Help: "Change events appended to the event log.",
	})
	m.appendSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "streamer_puller_append_seconds",
		Help:    "Latency of one event-log Append call (one partition's share of a batch).",
		Buckets: prometheus.ExponentialBuckets(0.0001, 2.5, 12),
	})
	m.checkpoints = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "streamer_puller_checkpoints_total",
		Help: "Resume tokens saved as the checkpoint.",
	})
	m.errors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "streamer_puller_errors_total",
		Help: "Failures, by kind: stream (change stream failed, reopened), append, checkpoint (load or save), lease, history_lost (token unusable, started from now).",
	}, []string{"kind"})
	m.lag = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "streamer_puller_lag_seconds",
		Help: "Wall-clock time minus the cluster time of the last event appended; 0 once the change stream is caught up (its last getMore brought nothing).",
	})
	m.leader = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "streamer_puller_leader",
		Help: "1 while this puller holds the leader lease and reads, 0 otherwise.",
	})
	checkpointAge := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "streamer_puller_checkpoint_age_seconds",
		Help: "Seconds since the leader last saved its checkpoint (since it started leading, before its first save); 0 when not leading.",
	}, func() float64 {
		if role, _ := p.Status(); role != "leader" {
			return 0
		}
		return time.Since(time.Unix(0, m.checkpointAt.Load())).Seconds()
	})
	reg.MustRegister(m.read, m.skipped, m.appended, m.appendSeconds, m.checkpoints, m.errors, m.lag, m.leader, checkpointAge)
	return m
}

// Registry returns the registry holding the puller's metrics, for a caller
// that serves them next to its own (prometheus.Gatherers).
func (p *Puller) Registry() *prometheus.Registry { return p.metrics.registry }

// AdminHandler returns the puller's admin HTTP handler:
//
//   - /metrics: Prometheus metrics (see Registry);
//   - /healthz: 200 with the role ("leader", "standby", …) while the process
//     serves HTTP (liveness);
//   - /readyz: 200 "ready" while Run is running, and, for the leader, while
//     it makes progress (no change stream, append or checkpoint-load
//     failure since its last success); 503 with the reason otherwise.
func (p *Puller) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(p.metrics.registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		role, _ := p.Status()
		fmt.Fprintln(w, "ok", role)
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := p.readiness(r.Context()); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	return mux
}

// readiness returns why the puller is not ready, or nil.
func (p *Puller) readiness(ctx context.Context) error {
	role, problem := p.Status()
	switch {
	case role == "idle" || role == "stopped":
		return fmt.Errorf("puller is %s", role)
	case problem != nil:
		return fmt.Errorf("leader is retrying: %w", problem)
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if _, err := p.backend.Locks.Owner(ctx, LockName(p.cfg.Name)); err != nil {
		return fmt.Errorf("backend unreachable: %w", err)
	}
	return nil
}

// opLabel bounds the operation label of streamer_puller_events_read_total.
func opLabel(op string) string {
	switch op {
	case "insert", "update", "replace", "delete", "drop", "rename", "dropDatabase", "invalidate":
		return op
	}
	return "other"
}

// skipLabel is the reason label of streamer_puller_events_skipped_total.
func skipLabel(e *SkipError) string {
	switch {
	case e.Err != nil:
		return "malformed"
	case e.Operation == "insert" || e.Operation == "update" || e.Operation == "replace" || e.Operation == "delete":
		return "unmappable"
	}
	return "not_a_document_change"
}
