package service

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/streamerd/streamer/internal/redistest"
	streamerv1 "github.com/streamerd/streamer/proto/streamer/v1"
	"github.com/streamerd/streamer/store"
	"github.com/streamerd/streamer/store/redis"
)

// BenchmarkTakeoverLoad measures what taking partitions over costs when one
// gateway holds 150,000 subscriptions over 16 partitions: the time to load
// every partition's subscriptions (as a node taking all 16 does) and Redis's
// command latency meanwhile (PING every millisecond from another
// connection). "per-partition" is what consumers do (ListPartition: each
// partition's own, in chunks); "whole-gateway" is what they did before
// (List: the gateway's whole hash, once per partition, one HGETALL).
//
//	go test ./service -run '^$' -bench TakeoverLoad -benchtime 3x
func BenchmarkTakeoverLoad(b *testing.B) {
	const subs, partitions = 150_000, 16
	srv := redistest.Start(b)
	backend := redisBackendFor(b, srv, partitions, nil)
	ctx := context.Background()
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < subs; i += 8 {
				sub := &streamerv1.Subscription{SubscriptionId: fmt.Sprintf("s%06d", i), Tenant: "t", Collection: fmt.Sprintf("c%d", i%64)}
				data, _ := proto.Marshal(sub)
				p := store.PartitionOf(sub.GetTenant(), sub.GetCollection(), partitions)
				if err := backend.Subscriptions.Put(ctx, "big", store.StoredSubscription{ID: sub.GetSubscriptionId(), Tenant: "t", Partition: p, Data: data}, time.Hour); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	raw, err := redis.NewClient(srv.URL())
	if err != nil {
		b.Fatal(err)
	}
	defer raw.Close()

	for _, mode := range []string{"per-partition", "whole-gateway"} {
		b.Run(mode, func(b *testing.B) {
			var lat []time.Duration
			for b.Loop() {
				stop := make(chan struct{})
				var pings []time.Duration
				var pw sync.WaitGroup
				pw.Go(func() {
					for {
						select {
						case <-stop:
							return
						case <-time.After(time.Millisecond):
						}
						start := time.Now()
						_ = raw.Ping(ctx).Err()
						pings = append(pings, time.Since(start))
					}
				})
				loaded := 0
				for p := range partitions {
					var m map[string][]byte
					if mode == "per-partition" {
						m, err = backend.Subscriptions.ListPartition(ctx, "big", p)
					} else {
						m, err = backend.Subscriptions.List(ctx, "big")
					}
					if err != nil {
						b.Fatal(err)
					}
					for _, data := range m {
						var sub streamerv1.Subscription
						if proto.Unmarshal(data, &sub) == nil && store.PartitionOf(sub.GetTenant(), sub.GetCollection(), partitions) == p {
							loaded++
						}
					}
				}
				close(stop)
				pw.Wait()
				if loaded != subs {
					b.Fatalf("loaded %d of %d subscriptions", loaded, subs)
				}
				lat = append(lat, pings...)
			}
			slices.Sort(lat)
			if len(lat) > 0 {
				b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "redis-p99-ms")
				b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "redis-max-ms")
			}
		})
	}
}
