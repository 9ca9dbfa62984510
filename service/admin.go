package service

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// AdminHandler returns the node's admin HTTP handler:
//
//   - /metrics: Prometheus metrics from the node's own registry;
//   - /healthz: 200 "ok" while the process serves HTTP (liveness);
//   - /readyz: 200 "ready" once Run has started consuming its partitions and
//     the backend answers, 503 with the reason otherwise (before Run, while
//     shutting down, or when the backend does not answer within a second).
func (n *Node) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(n.metrics.registry, promhttp.HandlerOpts{}))
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
	return mux
}

// readiness returns why the node is not ready, or nil.
func (n *Node) readiness(ctx context.Context) error {
	switch {
	case n.draining.Load():
		return fmt.Errorf("node is shutting down")
	case !n.ready.Load():
		return fmt.Errorf("partition consumers not started yet")
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if _, err := n.backend.Nodes.Live(ctx); err != nil {
		return fmt.Errorf("backend unreachable: %w", err)
	}
	return nil
}
