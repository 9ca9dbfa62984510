package bench

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"google.golang.org/grpc"

	"github.com/streamerd/streamer/service"
	"github.com/streamerd/streamer/store"
	"github.com/streamerd/streamer/store/memory"
	"github.com/streamerd/streamer/store/redis"
)

// readyTimeout bounds the wait for the nodes to own every partition.
const readyTimeout = 30 * time.Second

// cluster is the nodes of a run, each with its own backend instance (one
// Redis connection pool per node, as separate processes would have) and a
// gRPC server on a loopback port.
type cluster struct {
	backends []*store.Backend
	nodes    []*service.Node
	servers  []*grpc.Server
	addrs    []string
	url      string // Redis URL; "" when embedded
	prefix   string // Redis key prefix of this run; "" when embedded
	log      *slog.Logger

	cancel  context.CancelFunc
	wg      sync.WaitGroup
	runCtx  context.Context
	stops   []context.CancelFunc // each node's own: stopping one is a SIGTERM
	stopped []chan struct{}      // closed when that node's Run returned
	cfg     Config
}

// startCluster starts cfg.Nodes nodes and returns once every partition is
// owned. On error, whatever was started is stopped.
func startCluster(ctx context.Context, cfg Config) (cl *cluster, err error) {
	cl = &cluster{log: cfg.Logger, cfg: cfg}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	cl.cancel, cl.runCtx = cancel, runCtx
	defer func() {
		if err != nil {
			cl.close()
			cl = nil
		}
	}()
	if cfg.RedisURL != "" {
		cl.prefix = "stmbench-" + randomHex(6)
		cl.url = redisURLWithPool(cfg.RedisURL, cfg.Partitions, cfg.Gateways)
		for range cfg.Nodes {
			b, err := redis.New(ctx, redis.Config{URL: cl.url, Prefix: cl.prefix, Partitions: cfg.Partitions, Logger: cfg.Logger, WaitReplicas: cfg.WaitReplicas})
			if err != nil {
				return cl, fmt.Errorf("bench: redis backend: %w", err)
			}
			cl.backends = append(cl.backends, b)
		}
	} else {
		cl.backends = []*store.Backend{memory.New(memory.Config{Partitions: cfg.Partitions})}
	}

	ids := make([]string, cfg.Nodes)
	for i := range cfg.Nodes {
		ids[i] = fmt.Sprintf("bench-node-%d", i)
		// Registering every node before any starts lets each take its fair
		// share in its first ownership round instead of rebalancing later.
		if err := cl.backends[i].Nodes.Heartbeat(ctx, ids[i], service.DefaultLeaseTTL); err != nil {
			return cl, fmt.Errorf("bench: registering node: %w", err)
		}
	}
	for i := range cfg.Nodes {
		if err := cl.startNode(ids[i], cl.backends[i]); err != nil {
			return cl, err
		}
	}
	if err := cl.waitReady(ctx, cfg.Partitions); err != nil {
		return cl, err
	}
	return cl, nil
}

// startNode starts node id on backend b, with a gRPC server of its own.
func (cl *cluster) startNode(id string, b *store.Backend) error {
	cfg := cl.cfg
	// The workload's gateways hold SubsPerGateway subscriptions and a
	// marker per partition: the node's per-gateway limit must fit them.
	node, err := service.New(service.Config{NodeID: id, Partitions: cfg.Partitions, Logger: cfg.Logger,
		MaxSubscriptionsPerGateway: max(service.DefaultMaxSubscriptionsPerGateway, cfg.SubsPerGateway+cfg.Collections),
		MaxSubscriptionsPerTenant:  max(service.DefaultMaxSubscriptionsPerTenant, cfg.Gateways*(cfg.SubsPerGateway+cfg.Collections)),
		Syntrix:                    &service.SyntrixConfig{Tenants: []string{"*"}}}, b)
	if err != nil {
		return err
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("bench: listening: %w", err)
	}
	srv := node.NewGRPCServer()
	nodeCtx, stop := context.WithCancel(cl.runCtx)
	done := make(chan struct{})
	cl.nodes = append(cl.nodes, node)
	cl.servers = append(cl.servers, srv)
	cl.addrs = append(cl.addrs, lis.Addr().String())
	cl.stops = append(cl.stops, stop)
	cl.stopped = append(cl.stopped, done)
	cl.wg.Go(func() { _ = srv.Serve(lis) })
	cl.wg.Go(func() {
		defer close(done)
		_ = node.Run(nodeCtx)
	})
	return nil
}

// addNode starts one more node on a backend of its own (Redis only).
func (cl *cluster) addNode(ctx context.Context) error {
	b, err := redis.New(ctx, redis.Config{URL: cl.url, Prefix: cl.prefix, Partitions: cl.cfg.Partitions, Logger: cl.cfg.Logger, WaitReplicas: cl.cfg.WaitReplicas})
	if err != nil {
		return fmt.Errorf("bench: redis backend: %w", err)
	}
	cl.backends = append(cl.backends, b)
	return cl.startNode(fmt.Sprintf("bench-node-%d", len(cl.nodes)), b)
}

// stopNode stops node i as SIGTERM would (sessions closed, batches
// finished, leases released) and waits for it.
func (cl *cluster) stopNode(i int) {
	cl.stops[i]()
	<-cl.stopped[i]
	cl.servers[i].Stop()
}

// balanced reports whether every partition is owned by one of the nodes in
// live, each holding at most its fair share.
func (cl *cluster) balanced(ctx context.Context, live []int) bool {
	ids := map[string]int{}
	for _, i := range live {
		ids[fmt.Sprintf("bench-node-%d", i)] = 0
	}
	share := (cl.cfg.Partitions + len(live) - 1) / len(live)
	for p := range cl.cfg.Partitions {
		owner, err := cl.backends[0].Leases.Owner(ctx, p)
		if err != nil {
			return false
		}
		n, ok := ids[owner]
		if !ok || n >= share {
			return false
		}
		ids[owner] = n + 1
	}
	return true
}

// waitReady waits until every node reports ready and every partition has
// an owner.
func (cl *cluster) waitReady(ctx context.Context, partitions int) error {
	deadline := time.Now().Add(readyTimeout)
	var why string
	for {
		why = cl.notReady(ctx, partitions)
		if why == "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("bench: nodes not ready after %v: %s", readyTimeout, why)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// notReady returns why the cluster is not ready yet, or "".
func (cl *cluster) notReady(ctx context.Context, partitions int) string {
	for i, n := range cl.nodes {
		w := &statusWriter{}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "/readyz", nil)
		n.AdminHandler().ServeHTTP(w, req)
		if w.code != 0 && w.code != http.StatusOK {
			return fmt.Sprintf("node %d: %s", i, strings.TrimSpace(w.body.String()))
		}
	}
	for p := range partitions {
		owner, err := cl.backends[0].Leases.Owner(ctx, p)
		if err != nil {
			return err.Error()
		}
		if owner == "" {
			return fmt.Sprintf("partition %d has no owner", p)
		}
	}
	return ""
}

// close stops the nodes (gracefully: sessions closed, batches finished),
// the servers and the backends, deleting this run's Redis keys.
func (cl *cluster) close() {
	cl.cancel()
	done := make(chan struct{})
	go func() {
		for _, s := range cl.servers {
			s.Stop()
		}
		close(done)
	}()
	// Node.Run returns once its sessions are closed; Stop cuts what remains.
	<-done
	cl.wg.Wait()
	for _, b := range cl.backends {
		_ = b.Close()
	}
	if cl.prefix != "" {
		if err := cl.deleteKeys(); err != nil {
			cl.log.Warn("deleting the run's Redis keys", "prefix", cl.prefix, "err", err)
		}
	}
}

// deleteKeys removes every key of this run from Redis, with a client of
// its own (the backends do not expose theirs).
func (cl *cluster) deleteKeys() error {
	rc, err := redis.NewClient(cl.url)
	if err != nil {
		return err
	}
	defer rc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return deleteByPrefix(ctx, rc, cl.prefix)
}

// deleteByPrefix unlinks every key starting with prefix+":" (on every master
// of a Redis Cluster).
func deleteByPrefix(ctx context.Context, rc goredis.UniversalClient, prefix string) error {
	scan := func(ctx context.Context, c goredis.Cmdable) error {
		iter := c.Scan(ctx, 0, prefix+":*", 1000).Iterator()
		var batch []string
		for iter.Next(ctx) {
			batch = append(batch, iter.Val())
			if len(batch) == 500 {
				if err := c.Unlink(ctx, batch...).Err(); err != nil {
					return err
				}
				batch = batch[:0]
			}
		}
		if len(batch) > 0 {
			if err := c.Unlink(ctx, batch...).Err(); err != nil {
				return err
			}
		}
		return iter.Err()
	}
	if cc, ok := rc.(*goredis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, func(ctx context.Context, c *goredis.Client) error { return scan(ctx, c) })
	}
	return scan(ctx, rc)
}

// statusWriter is the http.ResponseWriter of the in-process readiness
// probe.
type statusWriter struct {
	code int
	body strings.Builder
	hdr  http.Header
}

func (w *statusWriter) Header() http.Header {
	if w.hdr == nil {
		w.hdr = http.Header{}
	}
	return w.hdr
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.body.Write(b)
}

func (w *statusWriter) WriteHeader(code int) { w.code = code }
