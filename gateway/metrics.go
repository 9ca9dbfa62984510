package gateway

import (
	"fmt"
	"net/http"

	"github.com/streamerd/streamer/internal/buildinfo"
	"github.com/streamerd/streamer/internal/httpauth"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics is the gateway's own Prometheus registry (never the global one,
// so several gateways can live in one process). Every instrument reads the
// gateway's counters when scraped.
type metrics struct {
	registry *prometheus.Registry
}

func newMetrics(g *Gateway) *metrics {
	reg := prometheus.NewRegistry()
	byTransport := func(name, help string, read func(i int) float64, counter bool) {
		for i, t := range []string{transportWS, transportSSE} {
			labels := prometheus.Labels{"transport": t}
			if counter {
				reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels}, func() float64 { return read(i) }))
			} else {
				reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: labels}, func() float64 { return read(i) }))
			}
		}
	}
	byTransport("streamer_gateway_connections", "Open end-user connections, by transport.",
		func(i int) float64 { return float64(g.connections[i].Load()) }, false)
	byTransport("streamer_gateway_messages_sent_total", "Messages written to end users (events and control messages), by transport.",
		func(i int) float64 { return float64(g.sent[i].Load()) }, true)
	byTransport("streamer_gateway_slow_disconnects_total", "Connections closed because their send queue was full (slow consumers), by transport.",
		func(i int) float64 { return float64(g.slow[i].Load()) }, true)

	hubGauge := func(name, help string, pick func(hubStats) int) {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help},
			func() float64 { return float64(pick(g.hub.stats())) }))
	}
	hubGauge("streamer_gateway_client_subscriptions", "Subscriptions of end users attached now.",
		func(s hubStats) int { return s.clientSubs })
	hubGauge("streamer_gateway_upstream_subscriptions", "Streamer subscriptions the client subscriptions share (client/upstream is the multiplexing ratio).",
		func(s hubStats) int { return s.upstreamSubs })
	hubGauge("streamer_gateway_resume_buffer_events", "Events kept for SSE Last-Event-ID resumes.",
		func(s hubStats) int { return s.resumeEntries })

	counter := func(name, help string, read func() uint64) {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help},
			func() float64 { return float64(read()) }))
	}
	counter("streamer_gateway_upstream_events_total", "Event matches received from the streamer nodes.", g.hub.events.Load)
	counter("streamer_gateway_upstream_resyncs_total", "Resync notices received from the streamer nodes (passed on to every client).", g.hub.resyncs.Load)
	counter("streamer_gateway_snapshot_pages_total", "Snapshot pages received from the streamer nodes (each passed on to the client subscriptions waiting for it).", g.hub.snapshotPages.Load)
	counter("streamer_gateway_upstream_dropped_total", "Upstream subscriptions the nodes dropped after a reconnect.", g.hub.dropped.Load)
	counter("streamer_gateway_auth_failures_total", "Requests refused with 401.", g.authFailures.Load)
	counter("streamer_gateway_sse_resumes_total", "Subscriptions resumed (SSE Last-Event-ID, WebSocket \"after\") with every missed event replayed.", g.hub.resumes.Load)
	counter("streamer_gateway_sse_resume_resyncs_total", "SSE streams whose Last-Event-ID was no longer known, answered with a resync.", g.hub.resumeResyncs.Load)

	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), buildinfo.Collector())
	return &metrics{registry: reg}
}

// AdminHandler returns the admin HTTP handler:
//
//   - /metrics: Prometheus metrics from the gateway's own registry, behind
//     Config.MetricsToken when set;
//   - /healthz: 200 "ok" while the process serves HTTP;
//   - /readyz: 200 "ready" while Run delivers and the upstream session is
//     registered with a node, 503 with the reason otherwise (the node is
//     down or unreachable: the gateway reconnects meanwhile).
func (g *Gateway) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", httpauth.RequireBearer(g.cfg.MetricsToken, promhttp.HandlerFor(g.metrics.registry, promhttp.HandlerOpts{})))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := g.readiness(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	if g.cfg.Profiling {
		httpauth.Profiling(mux, g.cfg.MetricsToken)
	}
	return mux
}

func (g *Gateway) readiness() error {
	g.mu.Lock()
	closing := g.closing
	g.mu.Unlock()
	switch {
	case closing || g.ctx.Err() != nil:
		return fmt.Errorf("gateway is shutting down")
	case !g.running.Load():
		return fmt.Errorf("gateway not started yet")
	}
	if err := g.cfg.Upstream.Ready(); err != nil {
		return fmt.Errorf("no session with a streamer node: %w", err)
	}
	return nil
}
