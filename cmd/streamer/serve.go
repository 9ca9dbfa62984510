package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/streamerd/streamer/match"
	"github.com/streamerd/streamer/service"
	"github.com/streamerd/streamer/store"
	"github.com/streamerd/streamer/store/memory"
)

const serveSynopsis = `serve [flags]

Runs a streamer node: the Streamer gRPC service for gateways and the Ingest
service for producers on --grpc, and admin HTTP on --http (/metrics, /healthz,
/readyz). Without --redis the node runs embedded, with an in-memory backend:
it owns every partition and nothing survives a restart.

Every flag can also be set through an environment variable: --auth-token is
STREAMER_AUTH_TOKEN, --gateway-ttl is STREAMER_GATEWAY_TTL, and so on; flags
win over the environment. SIGINT or SIGTERM shuts the node down gracefully:
sessions are closed with a reason, in-flight batches are finished.`

// grpcStopTimeout bounds the graceful stop of the gRPC server after the node
// has closed its sessions; remaining calls are then cut.
const grpcStopTimeout = 5 * time.Second

func runServe(ctx context.Context, args []string, sio stdio) error {
	fs := newFlagSet("serve", serveSynopsis, sio)
	grpcAddr := fs.String("grpc", ":7070", "`address` of the gRPC listener (Streamer and Ingest services)")
	httpAddr := fs.String("http", ":7071", "`address` of the admin HTTP listener (/metrics, /healthz, /readyz)")
	partitions := fs.Int("partitions", store.DefaultPartitions, "number of event-log partitions (fixed per deployment)")
	redisURL := fs.String("redis", "", "Redis `URL` of a shared backend (not available in this build); empty = embedded in-memory mode")
	authToken := fs.String("auth-token", "", "bearer `token` gateways and producers must send; empty = no authentication (development only)")
	nodeID := fs.String("node-id", "", "`name` of this node in leases and logs (default: hostname plus a random suffix)")
	gatewayTTL := fs.Duration("gateway-ttl", service.DefaultGatewayTTL, "how long a gateway's subscriptions live without a heartbeat")
	maxDoc := fs.Int("max-document-bytes", service.DefaultMaxDocumentBytes, "largest document (and pre-image) Publish accepts, in `bytes`")
	outboxMax := fs.Int("outbox-max-len", store.DefaultOutboxMaxLen, "entries kept per gateway outbox; a gateway further behind gets a Resync")
	softDelete := fs.String("soft-delete-field", service.DefaultSoftDeleteField, "top-level document `field` whose value true marks a soft-deleted document")
	celMax := fs.Int("cel-max-bytes", match.DefaultMaxCELBytes, "longest CEL expression accepted, in `bytes`")
	celCost := fs.Uint64("cel-cost-limit", 100_000, "runtime cost limit of one CEL evaluation (over it = no match)")
	celCache := fs.Int("cel-cache-size", 10_000, "compiled CEL programs kept in the cache")
	logLevel := fs.String("log-level", "info", "log `level`: debug, info, warn or error")
	logFormat := fs.String("log-format", "text", "log `format`: text or json")
	if err := parseFlagsEnv(fs, args); err != nil {
		return err
	}

	logger, err := newLogger(sio, *logLevel, *logFormat)
	if err != nil {
		fmt.Fprintln(sio.err, err)
		return errUsage
	}
	if *redisURL != "" {
		return errors.New("--redis: Redis mode is not available in this build yet; run without --redis for the embedded in-memory mode")
	}
	if *partitions <= 0 || *outboxMax <= 0 {
		fmt.Fprintln(sio.err, "--partitions and --outbox-max-len must be positive")
		return errUsage
	}

	backend := memory.New(memory.Config{Partitions: *partitions, OutboxMaxLen: int64(*outboxMax)})
	defer backend.Close()
	node, err := service.New(service.Config{
		NodeID:           *nodeID,
		Partitions:       *partitions,
		AuthToken:        *authToken,
		MaxDocumentBytes: *maxDoc,
		GatewayTTL:       *gatewayTTL,
		OutboxMaxLen:     *outboxMax,
		SoftDeleteField:  *softDelete,
		Match:            match.Config{MaxCELBytes: *celMax, CELCostLimit: *celCost, CELCacheSize: *celCache},
		Logger:           logger,
	}, backend)
	if err != nil {
		return err
	}

	gl, err := net.Listen("tcp", *grpcAddr)
	if err != nil {
		return fmt.Errorf("grpc listener: %w", err)
	}
	hl, err := net.Listen("tcp", *httpAddr)
	if err != nil {
		gl.Close()
		return fmt.Errorf("http listener: %w", err)
	}
	gs := grpc.NewServer(node.GRPCServerOptions()...)
	node.RegisterGRPC(gs)
	hs := &http.Server{Handler: node.AdminHandler(), ReadHeaderTimeout: 10 * time.Second}

	// A server failing ends the node as a signal would, with its error.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := gs.Serve(gl); err != nil {
			cancel(fmt.Errorf("grpc server: %w", err))
		}
	})
	wg.Go(func() {
		if err := hs.Serve(hl); !errors.Is(err, http.ErrServerClosed) {
			cancel(fmt.Errorf("http server: %w", err))
		}
	})
	logger.Info("listening", "grpc_addr", gl.Addr().String(), "http_addr", hl.Addr().String(), "node_id", node.ID(), "mode", "embedded")

	runErr := node.Run(ctx) // returns once sessions are closed and batches finished

	stopped := make(chan struct{})
	go func() { gs.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(grpcStopTimeout):
		logger.Warn("gRPC calls still running after the graceful stop timeout, cutting them", "timeout", grpcStopTimeout)
		gs.Stop()
		<-stopped
	}
	shutCtx, shutCancel := context.WithTimeout(context.WithoutCancel(ctx), grpcStopTimeout)
	defer shutCancel()
	if err := hs.Shutdown(shutCtx); err != nil {
		hs.Close()
	}
	wg.Wait()
	logger.Info("stopped")

	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		return cause
	}
	return runErr
}

// newLogger builds the slog logger writing to stderr.
func newLogger(sio stdio, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch strings.ToLower(format) {
	case "text":
		return slog.New(slog.NewTextHandler(sio.err, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(sio.err, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}
