package service

import (
	"context"
	"fmt"
	"net/http"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/streamerd/streamer/internal/httpauth"
)

// AdminHandler returns the node's admin HTTP handler:
//
//   - /metrics: Prometheus metrics from the node's own registry, behind
//     Config.MetricsToken when set;
//   - /healthz: 200 "ok" while the process serves HTTP (liveness);
//   - /readyz: 200 "ready" once Run has started consuming its partitions and
//     while the backend answers, 503 with the reason otherwise (before Run,
//     while shutting down, or when the last probe of the backend, made every
//     Config.ProbeInterval, failed or took over a second).
func (n *Node) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", httpauth.RequireBearer(n.cfg.MetricsToken, promhttp.HandlerFor(n.metrics.registry, promhttp.HandlerOpts{})))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := n.readiness(r.Context()); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	if n.cfg.Profiling {
		httpauth.Profiling(mux, n.cfg.MetricsToken)
	}
	return mux
}

// readiness returns why the node is not ready, or nil.
func (n *Node) readiness(context.Context) error {
	switch {
	case n.draining.Load():
		return fmt.Errorf("node is shutting down")
	case !n.ready.Load():
		return fmt.Errorf("partition consumers not started yet")
	}
	if err := n.probe.get(); err != nil {
		return fmt.Errorf("backend unreachable: %w", err)
	}
	return nil
}
