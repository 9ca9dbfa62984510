package integration

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/streamerd/streamer/client"
)

// redisBenchCollections spreads the Redis benchmark's events over (almost)
// every one of the 16 partitions, so that several nodes share the work.
const redisBenchCollections = 32

// BenchmarkRedisEndToEnd measures a pool on Redis, on this machine: one
// node, then three, each a process of the real binary sharing one
// redis-server, with the workload of BenchmarkEmbeddedEndToEnd (4 gateways
// × 10,000 subscriptions, spread over the nodes) over 32 collections. It
// reports events/s and the publish → gateway latency (p50, p99) at a fixed
// 20,000 events/s (batches of 20 every millisecond) and at the most the
// pool sustains (batches of 256), with 16 concurrent Publish calls:
//
//	go test -run '^$' -bench RedisEndToEnd -benchtime 100000x ./integration/
func BenchmarkRedisEndToEnd(b *testing.B) {
	for _, nodes := range []int{1, 3} {
		b.Run(fmt.Sprintf("nodes=%d", nodes), func(b *testing.B) {
			env := startRedisBenchEnv(b, nodes)
			b.Run("rate=20000", func(b *testing.B) { env.measure(b, 20_000) })
			b.Run("max", func(b *testing.B) { env.measure(b, 0) })
		})
	}
}

// startRedisBenchEnv starts redis-server and n nodes, and the benchmark's
// gateways, gateway i preferring node i mod n.
func startRedisBenchEnv(b *testing.B, n int) *benchEnv {
	b.Helper()
	p := newPool(b, nil)
	var nodes []*nodeProc
	for range n {
		nodes = append(nodes, p.start())
	}
	waitUntil(b, "partitions balanced", p.balanced)
	// More concurrent Publish calls than embedded: each waits for Redis, so
	// four cannot offer 20,000 events/s in the paced run's 20-event batches.
	env := &benchEnv{addr: "pool", collections: redisBenchCollections, publishers: 16, fail: make(chan error, benchGateways)}
	var err error
	if env.pub, err = client.NewPublisher("pool", p.dialer(nil)); err != nil {
		b.Fatal(err)
	}
	var receivers group // the gateways' receive loops, which end when Close closes their channels
	b.Cleanup(func() {
		for _, c := range env.conns {
			_ = c.Close()
		}
		_ = env.pub.Close()
		_ = receivers.Wait()
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	env.subscribeGateways(ctx, b, func(gi int) []client.Option { return []client.Option{p.dialer(nodes[gi%n])} })
	for _, c := range env.conns {
		receivers.Go(func() error { env.receive(c); return nil })
	}
	return env
}
