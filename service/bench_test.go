package service

import (
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	streamerv1 "github.com/streamerd/streamer/proto/streamer/v1"
	"github.com/streamerd/streamer/store/memory"
)

// Benchmark shape (issue 3): 4 gateways × 10,000 subscriptions each, every
// event matching exactly one subscription of every gateway.
const (
	benchGateways    = 4
	benchSubs        = 10_000
	benchCollections = 16 // divides benchSubs: event j and subscription j%benchSubs share a collection
)

// benchEnv is a node with the benchmark's gateways and subscriptions.
type benchEnv struct {
	h        *harness
	received []atomic.Int64 // matches received per gateway
	sentAt   []atomic.Int64 // publish time (unix ns) per event index
	lat      latencies      // publish → receipt, measured on gateway 0
}

func newBenchEnv(b *testing.B, events int) *benchEnv {
	b.Helper()
	e := &benchEnv{
		h:        startNode(b, Config{}, memory.Config{}),
		received: make([]atomic.Int64, benchGateways),
		sentAt:   make([]atomic.Int64, events),
	}
	for gi := range benchGateways {
		g, _ := e.h.connect(fmt.Sprintf("bench-gw-%d", gi), "")
		for i := range benchSubs {
			g.send(&streamerv1.GatewayMessage{Msg: &streamerv1.GatewayMessage_Subscribe{Subscribe: &streamerv1.Subscribe{
				Subscription: filterSub(fmt.Sprintf("s%d", i), "t", fmt.Sprintf("c%d", i%benchCollections), "k", "==", float64(i)),
			}}})
		}
		for range benchSubs {
			if res := g.take("SubscribeResult", func(m *streamerv1.StreamerMessage) bool { return m.GetSubscribeResult() != nil }); res.GetSubscribeResult().GetError() != nil {
				b.Fatalf("subscribe: %v", res)
			}
		}
		g.done.Go(func() { // counts deliveries straight off the receiver channel
			for m := range g.msgs {
				now := time.Now().UnixNano()
				for _, em := range m.GetDelivery().GetMatches() {
					if gi == 0 {
						if j, err := strconv.Atoi(em.GetEvent().GetEventId()); err == nil && j < len(e.sentAt) {
							e.lat.add(time.Duration(now - e.sentAt[j].Load()))
						}
					}
					e.received[gi].Add(int64(len(em.GetSubscriptionIds())))
				}
			}
		})
	}
	return e
}

// batch builds the events [from, to).
func (e *benchEnv) batch(from, to int) []*streamerv1.ChangeEvent {
	evs := make([]*streamerv1.ChangeEvent, 0, to-from)
	for j := from; j < to; j++ {
		k := j % benchSubs
		evs = append(evs, event(strconv.Itoa(j), "t", fmt.Sprintf("c%d", k%benchCollections), "d"+strconv.Itoa(k), opUpdate,
			fmt.Sprintf(`{"k":%d,"name":"document %d","tags":["a","b"]}`, k, j), ""))
	}
	return evs
}

// publishTimed stamps and publishes events [from, to).
func (e *benchEnv) publishTimed(b *testing.B, evs []*streamerv1.ChangeEvent, from int) {
	now := time.Now().UnixNano()
	for j := range evs {
		e.sentAt[from+j].Store(now)
	}
	e.h.publish(evs...)
}

// waitDelivered waits until every gateway received n matches.
func (e *benchEnv) waitDelivered(b *testing.B, n int) {
	waitFor(b, "all deliveries", func() bool {
		for i := range e.received {
			if e.received[i].Load() < int64(n) {
				return false
			}
		}
		return true
	})
}

// BenchmarkEndToEndThroughput publishes b.N events as fast as 4 concurrent
// publishers can (batches of 500) and waits until all are delivered to all
// gateways over loopback gRPC.
func BenchmarkEndToEndThroughput(b *testing.B) {
	const batch, publishers = 500, 4
	n := max(b.N, batch*publishers)
	e := newBenchEnv(b, n)
	batches := make(chan int, n/batch+1)
	for from := 0; from < n; from += batch {
		batches <- from
	}
	close(batches)
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for range publishers {
		wg.Go(func() {
			for from := range batches {
				e.publishTimed(b, e.batch(from, min(from+batch, n)), from)
			}
		})
	}
	wg.Wait()
	e.waitDelivered(b, n)
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(n)/elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(n*benchGateways)/elapsed.Seconds(), "matches/s")
	b.ReportMetric(float64(e.lat.quantile(0.99).Microseconds())/1000, "p99-ms")
}

// BenchmarkEndToEndLatencyAt20k publishes at 20,000 events/s (batches of 100
// every 5 ms) for b.N events (at least one second's worth) and reports the
// publish → receipt latency quantiles.
func BenchmarkEndToEndLatencyAt20k(b *testing.B) {
	const rate, batch = 20_000, 100
	n := max(b.N, rate)
	e := newBenchEnv(b, n)
	b.ResetTimer()
	tick := time.NewTicker(time.Second * batch / rate)
	defer tick.Stop()
	for from := 0; from < n; from += batch {
		<-tick.C // pacing the load generator, not synchronisation
		e.publishTimed(b, e.batch(from, min(from+batch, n)), from)
	}
	e.waitDelivered(b, n)
	b.StopTimer()
	b.ReportMetric(float64(e.lat.quantile(0.5).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(e.lat.quantile(0.99).Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(e.lat.quantile(1).Microseconds())/1000, "max-ms")
}

// latencies collects durations; safe for concurrent use.
type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *latencies) add(d time.Duration) {
	l.mu.Lock()
	l.d = append(l.d, d)
	l.mu.Unlock()
}

// quantile returns the q-quantile (0 ≤ q ≤ 1) of the collected durations.
func (l *latencies) quantile(q float64) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.d) == 0 {
		return 0
	}
	s := slices.Clone(l.d)
	slices.Sort(s)
	return s[min(int(q*float64(len(s))), len(s)-1)]
}
