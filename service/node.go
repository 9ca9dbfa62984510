package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	"github.com/streamerd/streamer/match"
	streamerv1 "github.com/streamerd/streamer/proto/streamer/v1"
	syntrixv1 "github.com/streamerd/streamer/proto/syntrix/streamer/v1"
	"github.com/streamerd/streamer/store"
)

// Node is one streamer node. Create it with New, serve its gRPC services
// with NewGRPCServer and its admin handler with AdminHandler, then call Run. Its methods are safe for
// concurrent use.
type Node struct {
	cfg     Config
	backend *store.Backend
	log     *slog.Logger
	engine  *match.Engine
	metrics *metrics
	bans    *costBans // CEL criteria ended for their cost, refused for a while
	// docWriter is Config.Documents when the consumers maintain it.
	docWriter store.DocumentWriter

	sessions *registry
	mux      *readMux // nil without a store.MultiRouter
	pumps    *pumpMux // nil without a store.MultiFetcher

	// consumersMu guards consumers, the partitions consumed right now.
	consumersMu sync.Mutex
	consumers   map[int]*consumer

	probe probeState // the last backend probe (runMonitor)

	running  atomic.Bool // Run was called
	ready    atomic.Bool // the first ownership round is done and Run is not stopping
	draining atomic.Bool // Run is shutting down: refuse new work
}

// New returns a node serving backend, with cfg's zero fields set to their
// defaults. It fails when cfg.Partitions disagrees with the backend or the
// match engine cannot be built.
func New(cfg Config, backend *store.Backend) (*Node, error) {
	if backend == nil || backend.Log == nil {
		return nil, errors.New("service: nil backend")
	}
	if backend.Router == nil {
		return nil, errors.New("service: the backend has no Router (store.Backend.Router)")
	}
	bp := backend.Log.Partitions()
	if cfg.Partitions > 0 && cfg.Partitions != bp {
		return nil, fmt.Errorf("service: config has %d partitions but the backend has %d", cfg.Partitions, bp)
	}
	cfg = cfg.withDefaults(bp)
	eng, err := match.NewEngine(cfg.Match)
	if err != nil {
		return nil, fmt.Errorf("service: %w", err)
	}
	n := &Node{
		cfg:       cfg,
		backend:   backend,
		log:       cfg.Logger.With("node", cfg.NodeID),
		engine:    eng,
		consumers: map[int]*consumer{},
		bans:      newCostBans(cfg.Clock),
	}
	n.docWriter, _ = cfg.Documents.(store.DocumentWriter)
	n.sessions = newRegistry()
	if backend.Multi != nil {
		n.mux = newReadMux(n, backend.Multi)
	}
	if backend.MultiFetch != nil {
		n.pumps = newPumpMux(backend.MultiFetch, backend.Outboxes, pumpReadCount)
	}
	n.metrics = newMetrics(n)
	n.probe.set(errNotProbed, time.Time{})
	for _, c := range cfg.Collectors {
		if err := n.metrics.registry.Register(c); err != nil {
			return nil, fmt.Errorf("service: registering Config.Collectors: %w", err)
		}
	}
	return n, nil
}

// ID returns the node's id (Config.NodeID or the generated default).
func (n *Node) ID() string { return n.cfg.NodeID }

// NewGRPCServer returns a gRPC server serving the node's Streamer and
// Ingest services, built with the options they need (the codec that forwards
// outbox entries as they are stored, authentication when Config.AuthToken is
// set, message sizes for MaxDocumentBytes, keepalives for GatewayTTL)
// followed by extra (such as TLS credentials). The caller serves it on its
// listeners and stops it after Run returns.
func (n *Node) NewGRPCServer(extra ...grpc.ServerOption) *grpc.Server {
	s := grpc.NewServer(append(n.grpcServerOptions(), extra...)...)
	streamerv1.RegisterStreamerServer(s, &streamerService{n: n})
	s.RegisterService(&ingestServiceDesc, &ingestService{n: n}) // Publish without decoding events (publish.go)
	if n.cfg.Syntrix != nil && !n.cfg.Syntrix.OwnListener {
		syntrixv1.RegisterStreamerServiceServer(s, &syntrixService{n: n})
	}
	return s
}

// NewSyntrixGRPCServer returns a gRPC server serving only Syntrix's
// streamer service (Config.Syntrix, with OwnListener), built with the
// node's options but its bearer token (Syntrix's gateways send none),
// followed by extra (such as TLS credentials, client certificates
// required). Nil when Config.Syntrix is not set.
func (n *Node) NewSyntrixGRPCServer(extra ...grpc.ServerOption) *grpc.Server {
	if n.cfg.Syntrix == nil {
		return nil
	}
	s := grpc.NewServer(append(n.baseServerOptions(), extra...)...)
	syntrixv1.RegisterStreamerServiceServer(s, &syntrixService{n: n})
	return s
}

// Run starts the partition ownership loop (which starts one consumer per
// owned partition) and the janitor, and blocks until ctx is done. Then it
// shuts down gracefully and returns nil: it refuses new sessions and
// publishes, closes every session with an Error saying the node is shutting
// down, lets the partition consumers finish their in-flight batches, releases
// the partition leases and unregisters the node. Each step is bounded by
// Config.ShutdownTimeout. Run may be called only once.
func (n *Node) Run(ctx context.Context) error {
	if !n.running.CompareAndSwap(false, true) {
		return errors.New("service: Run called twice")
	}
	if n.cfg.AuthToken == "" {
		n.log.Warn("AUTHENTICATION IS OFF: no auth token configured, every gateway and producer is accepted (development only)")
	}
	n.log.Info("node starting", "partitions", n.cfg.Partitions, "gateway_ttl", n.cfg.GatewayTTL, "lease_ttl", n.cfg.LeaseTTL,
		"max_document_bytes", n.cfg.MaxDocumentBytes, "soft_delete_field", n.cfg.SoftDeleteField, "dedup_size", n.cfg.DedupSize)

	// Background work outlives ctx until the sessions are closed, so that
	// in-flight batches are finished rather than torn down.
	bg, stop := context.WithCancel(context.WithoutCancel(ctx))
	defer stop()
	var wg sync.WaitGroup
	own := newOwnership(n)
	wg.Go(func() { n.runMonitor(bg) })
	// The multiplexer serves the consumers until the last has stopped.
	muxCtx, stopMux := context.WithCancel(context.WithoutCancel(ctx))
	defer stopMux()
	if n.mux != nil {
		wg.Go(func() { n.mux.run(muxCtx) })
	}
	wg.Go(func() { own.run(bg); stopMux() })
	wg.Go(func() { n.runJanitor(bg) })

	<-ctx.Done()
	n.log.Info("node shutting down")
	n.draining.Store(true)
	n.ready.Store(false)
	n.sessions.closeAll(streamerv1.ErrorCode_ERROR_CODE_UNAVAILABLE, "streamer: node is shutting down", n.cfg.ShutdownTimeout)
	if n.pumps != nil {
		n.pumps.stop()
	}
	stop()
	wg.Wait()
	n.log.Info("node stopped")
	return nil
}

// streamerService implements the Streamer gRPC service.
type streamerService struct {
	streamerv1.UnimplementedStreamerServer
	n *Node
}

// ingestService implements the Ingest gRPC service.
type ingestService struct {
	streamerv1.UnimplementedIngestServer
	n *Node
}

// indexedSubscriptions sums the index sizes of the consumed partitions.
func (n *Node) indexedSubscriptions() int {
	n.consumersMu.Lock()
	defer n.consumersMu.Unlock()
	total := 0
	for _, c := range n.consumers {
		total += c.ix.Len()
	}
	return total
}
