package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	goredis "github.com/redis/go-redis/v9"
	"google.golang.org/grpc"

	"github.com/streamerd/streamer/match"
	"github.com/streamerd/streamer/service"
	"github.com/streamerd/streamer/store"
	"github.com/streamerd/streamer/store/memory"
	"github.com/streamerd/streamer/store/redis"
)

const serveSynopsis = `serve [flags]

Runs a streamer node: the Streamer gRPC service for gateways and the Ingest
service for producers on --grpc, and admin HTTP on --http (/metrics, /healthz,
/readyz). Without --redis the node runs embedded, with an in-memory backend:
it owns every partition and nothing survives a restart.

With --redis URL the node is one member of a pool that coordinates only
through that Redis: nodes may be added, stopped or killed at any time. Each
takes its fair share of the partitions through leases (--lease-ttl: a killed
node's partitions move after at most 4/3 of it), and gateways may connect to
any node. Every node of a pool must use the same --partitions; a node whose
count differs from the one Redis records refuses to start (exit status 1).
URL forms: redis://[user:pass@]host:port[/db], rediss:// (TLS),
unix:///path/redis.sock, with cluster=true or addr=host:port parameters for
Redis Cluster, or master_name=NAME for Sentinel; other query parameters are
go-redis options (dial_timeout=3s, max_retries=1, …). Connections: each owned
partition and each gateway session held by the node keeps a blocking read
open, so the pool needs about partitions + sessions + 32 connections; set
pool_size=N in the URL (or --redis-pool-size) when a node holds more than a
few hundred sessions.

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
	redisURL := fs.String("redis", "", "Redis `URL` of the pool's shared backend (see above); empty = embedded in-memory mode")
	poolSize := fs.Int("redis-pool-size", 0, "Redis connections of this node; 0 = the URL's pool_size, else 2×partitions + 256")
	leaseTTL := fs.Duration("lease-ttl", service.DefaultLeaseTTL, "lifetime of partition leases, renewed every third of it; a dead node's partitions move after at most 4/3 of it")
	logMaxLen := fs.Int64("log-max-len", store.DefaultMaxLen, "approximate retention of each event-log partition, in entries (Redis mode)")
	dedupSize := fs.Int("dedup-size", service.DefaultDedupSize, "recent event ids remembered per partition to drop producer replays; 0 = off")
	probeInterval := fs.Duration("probe-interval", service.DefaultProbeInterval, "how often the backend is probed for /readyz")
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
	if *partitions <= 0 || *outboxMax <= 0 || *logMaxLen <= 0 || *poolSize < 0 || *dedupSize < 0 || *leaseTTL < 10*time.Millisecond {
		fmt.Fprintln(sio.err, "--partitions, --outbox-max-len, --log-max-len must be positive, --redis-pool-size and --dedup-size not negative, --lease-ttl at least 10ms")
		return errUsage
	}

	mode := "embedded"
	var backend *store.Backend
	var collectors []prometheus.Collector
	if *redisURL == "" {
		backend = memory.New(memory.Config{Partitions: *partitions, OutboxMaxLen: int64(*outboxMax)})
	} else {
		mode = "redis"
		backend, collectors, err = openRedis(ctx, redisOptions{
			url: *redisURL, poolSize: *poolSize, partitions: *partitions,
			maxLen: *logMaxLen, outboxMaxLen: int64(*outboxMax), logger: logger,
		})
		if err != nil {
			return err
		}
	}
	defer backend.Close()
	dedup := *dedupSize
	if dedup == 0 {
		dedup = -1 // off
	}
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
		LeaseTTL:         *leaseTTL,
		DedupSize:        dedup,
		ProbeInterval:    *probeInterval,
		Collectors:       collectors,
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
	logger.Info("listening", "grpc_addr", gl.Addr().String(), "http_addr", hl.Addr().String(), "node_id", node.ID(), "mode", mode)

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

// redisOptions configure openRedis.
type redisOptions struct {
	url          string
	poolSize     int // 0: the URL's pool_size, else 2×partitions + 256
	partitions   int
	maxLen       int64
	outboxMaxLen int64
	logger       *slog.Logger
}

// redisConnectTimeout bounds the connection, partition check and setup at
// start.
const redisConnectTimeout = 15 * time.Second

// openRedis connects the pool's Redis backend. It sizes the connection pool
// for the node's blocking reads, counts Redis errors in a metric, and adds
// consumer-group lag (XINFO GROUPS) to the event log, which store/redis does
// not report. The returned collectors belong in the node's registry.
func openRedis(ctx context.Context, o redisOptions) (*store.Backend, []prometheus.Collector, error) {
	u, err := url.Parse(o.url)
	if err != nil {
		return nil, nil, fmt.Errorf("--redis: %w", err)
	}
	q := u.Query()
	switch {
	case o.poolSize > 0:
		q.Set("pool_size", strconv.Itoa(o.poolSize))
	case !q.Has("pool_size"):
		q.Set("pool_size", strconv.Itoa(2*o.partitions+256))
	}
	u.RawQuery = q.Encode()
	client, err := redis.NewClient(u.String())
	if err != nil {
		return nil, nil, fmt.Errorf("--redis %s: %w", u.Redacted(), err)
	}
	errs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "streamer_redis_errors_total",
		Help: "Failed Redis commands and connection attempts of this node, by kind: dial, timeout, io (connection lost) or reply (an error answer, such as LOADING or READONLY).",
	}, []string{"kind"})
	for _, k := range []string{"dial", "timeout", "io", "reply"} {
		errs.WithLabelValues(k)
	}
	client.AddHook(redisErrorHook{errs})

	cctx, cancel := context.WithTimeout(ctx, redisConnectTimeout)
	defer cancel()
	backend, err := redis.New(cctx, redis.Config{
		Client: client, Partitions: o.partitions, MaxLen: o.maxLen, OutboxMaxLen: o.outboxMaxLen, Logger: o.logger,
	})
	if err != nil {
		_ = client.Close()
		if errors.Is(err, redis.ErrPartitionMismatch) {
			return nil, nil, fmt.Errorf("--partitions %d disagrees with the pool: %w", o.partitions, err)
		}
		return nil, nil, fmt.Errorf("--redis %s: %w", u.Redacted(), err)
	}
	backend.Log = &lagEventLog{EventLog: backend.Log, client: client, keys: redis.Keys{Prefix: redis.DefaultPrefix}}
	closeBackend := backend.Close
	backend.Close = func() error { return errors.Join(closeBackend(), client.Close()) }
	o.logger.Info("connected to redis", "url", u.Redacted(), "partitions", o.partitions, "pool_size", q.Get("pool_size"))
	return backend, []prometheus.Collector{errs}, nil
}

// lagEventLog adds service.LagReporter to the Redis event log.
type lagEventLog struct {
	store.EventLog
	client goredis.UniversalClient
	keys   redis.Keys
}

var _ service.LagReporter = (*lagEventLog)(nil)

// Lag is the lag of the consumer group store.Group (XINFO GROUPS), or -1
// when Redis cannot tell (entries were deleted from the middle of the
// stream).
func (l *lagEventLog) Lag(ctx context.Context, p int) (int64, error) {
	groups, err := l.client.XInfoGroups(ctx, l.keys.Events(p)).Result()
	if err != nil {
		return 0, fmt.Errorf("redis: lag of partition %d: %w", p, err)
	}
	for _, g := range groups {
		if g.Name == store.Group {
			return g.Lag, nil
		}
	}
	return -1, nil
}

// redisErrorHook counts failed Redis calls in errs. Expected answers are
// not errors: nil replies, BUSYGROUP (the group exists) and NOSCRIPT (the
// script is sent again), nor are calls whose context ended.
type redisErrorHook struct{ errs *prometheus.CounterVec }

func (h redisErrorHook) DialHook(next goredis.DialHook) goredis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := next(ctx, network, addr)
		if err != nil && ctx.Err() == nil {
			h.errs.WithLabelValues("dial").Inc()
		}
		return conn, err
	}
}

func (h redisErrorHook) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		err := next(ctx, cmd)
		h.count(ctx, err)
		return err
	}
}

func (h redisErrorHook) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		err := next(ctx, cmds)
		for _, c := range cmds {
			h.count(ctx, c.Err())
		}
		return err
	}
}

func (h redisErrorHook) count(ctx context.Context, err error) {
	if err == nil || errors.Is(err, goredis.Nil) || ctx.Err() != nil ||
		goredis.HasErrorPrefix(err, "BUSYGROUP") || goredis.HasErrorPrefix(err, "NOSCRIPT") {
		return
	}
	var reply goredis.Error
	var nerr net.Error
	switch {
	case errors.As(err, &nerr) && nerr.Timeout():
		h.errs.WithLabelValues("timeout").Inc()
	case errors.As(err, &reply):
		h.errs.WithLabelValues("reply").Inc()
	default:
		h.errs.WithLabelValues("io").Inc()
	}
}
