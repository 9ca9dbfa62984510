package service

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/streamerd/streamer/internal/clock"
	"github.com/streamerd/streamer/internal/redistest"
	streamerv1 "github.com/streamerd/streamer/proto/streamer/v1"
	"github.com/streamerd/streamer/store"
	"github.com/streamerd/streamer/store/redis"
)

var redisPrefixes atomic.Int64

// redisBackend returns a Redis backend with the given partitions on a
// redis-server of its own, closed by t.Cleanup.
func redisBackend(t *testing.T, partitions int) *store.Backend {
	t.Helper()
	return redisBackendOn(t, partitions, nil)
}

// redisBackendOn is redisBackend with the registries' deadlines on c.
func redisBackendOn(t *testing.T, partitions int, c clock.Clock) *store.Backend {
	t.Helper()
	b, _ := redisBackendAndServer(t, partitions, c)
	return b
}

// redisBackendAndServer is redisBackendOn that also returns the server.
func redisBackendAndServer(t *testing.T, partitions int, c clock.Clock) (*store.Backend, *redistest.Server) {
	t.Helper()
	srv := redistest.Start(t)
	return redisBackendFor(t, srv, partitions, c), srv
}

// redisBackendFor is a Redis backend on srv, with the registries' deadlines
// on c.
func redisBackendFor(t testing.TB, srv *redistest.Server, partitions int, c clock.Clock) *store.Backend {
	t.Helper()
	b, err := redis.New(t.Context(), redis.Config{
		URL: srv.URL(), Prefix: fmt.Sprintf("svc%d", redisPrefixes.Add(1)), Partitions: partitions, Logger: testLogger(), Clock: c,
	})
	if err != nil {
		t.Fatalf("redis.New: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// countingLog counts the single-partition reads a node makes.
type countingLog struct {
	store.Router
	routeReads atomic.Int64
}

func (l *countingLog) RouteRead(ctx context.Context, p int, consumer string, items []store.OutboxItem, ack []string, count int, block time.Duration) ([]store.Entry, bool, error) {
	l.routeReads.Add(1)
	return l.Router.RouteRead(ctx, p, consumer, items, ack, count, block)
}

// countingMulti records which partitions each multiplexed read named.
type countingMulti struct {
	store.MultiRouter
	mu    sync.Mutex
	calls [][]int
}

func (m *countingMulti) RouteReadMany(ctx context.Context, consumer string, routes []store.PartitionRoute, count int, block time.Duration) (bool, error) {
	ps := make([]int, len(routes))
	for i, r := range routes {
		ps[i] = r.P
	}
	m.mu.Lock()
	m.calls = append(m.calls, ps)
	m.mu.Unlock()
	return m.MultiRouter.RouteReadMany(ctx, consumer, routes, count, block)
}

func TestMuxReadsEveryPartitionInOneCall(t *testing.T) {
	const partitions = 8
	real := redisBackend(t, partitions)
	log := &countingLog{Router: real.Router}
	multi := &countingMulti{MultiRouter: real.Multi}
	backend := *real
	backend.Router, backend.Multi = log, multi
	h := startNodeOn(t, Config{}, &backend)
	g, _ := h.connect("gw", "")

	// One subscription per collection; the collections cover every
	// partition.
	covered := map[int]bool{}
	var colls []string
	for i := 0; len(covered) < partitions; i++ {
		c := fmt.Sprintf("c%d", i)
		covered[store.PartitionOf("t", c, partitions)] = true
		colls = append(colls, c)
		g.mustSubscribe(&streamerv1.Subscription{SubscriptionId: "s-" + c, Tenant: "t", Collection: c})
	}
	// Rounds of one event per collection: each document's events arrive in
	// order, every one of them once.
	const rounds = 20
	want := map[string][]string{}
	for r := range rounds {
		var evs []*streamerv1.ChangeEvent
		for _, c := range colls {
			id := fmt.Sprintf("%s-%d", c, r)
			evs = append(evs, event(id, "t", c, "d", opCreate, `{}`, ""))
			want[c] = append(want[c], id)
		}
		h.publish(evs...)
	}
	got := map[string][]string{}
	for n := 0; n < rounds*len(colls); {
		for _, m := range g.delivery().GetMatches() {
			got[m.GetEvent().GetCollection()] = append(got[m.GetEvent().GetCollection()], m.GetEvent().GetEventId())
			n++
		}
	}
	for _, c := range colls {
		if !slices.Equal(got[c], want[c]) {
			t.Errorf("collection %s delivered %q, want %q", c, got[c], want[c])
		}
	}

	if n := log.routeReads.Load(); n != 0 {
		t.Errorf("%d single-partition reads; with a MultiRouter every read goes through the multiplexer", n)
	}
	multi.mu.Lock()
	defer multi.mu.Unlock()
	widest := 0
	for _, ps := range multi.calls {
		if !slices.IsSorted(ps) || len(slices.Compact(slices.Clone(ps))) != len(ps) {
			t.Fatalf("a multiplexed read named partitions %v", ps)
		}
		widest = max(widest, len(ps))
	}
	if widest != partitions {
		t.Errorf("the widest multiplexed read named %d partitions, want all %d (of %d reads)", widest, partitions, len(multi.calls))
	}
}

func TestBatchMergerConcatenatesPerGatewayWithinTheCap(t *testing.T) {
	batch := func(ids ...string) []byte {
		var b streamerv1.OutboxBatch
		for _, id := range ids {
			b.Matches = append(b.Matches, &streamerv1.EventMatch{Event: &streamerv1.ChangeEvent{EventId: id}, SubscriptionIds: []string{"s"}})
		}
		out, err := proto.Marshal(&b)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	ids := func(payload []byte) []string {
		var b streamerv1.OutboxBatch
		if err := proto.Unmarshal(payload, &b); err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, m := range b.GetMatches() {
			out = append(out, m.GetEvent().GetEventId())
		}
		return out
	}
	p0 := []store.OutboxItem{{Gateway: "g", Payload: batch("a1", "a2")}, {Gateway: "h", Payload: batch("a3")}}
	p1 := []store.OutboxItem{{Gateway: "h", Payload: batch("b1")}, {Gateway: "g", Payload: batch("b2")}}
	big := bytes.Repeat([]byte("x"), maxBatchBytes-len(batch("c1"))+1)
	p2 := []store.OutboxItem{{Gateway: "g", Payload: append(batch("c1"), protowire.AppendTag(nil, 15, protowire.BytesType)...)}}
	p2[0].Payload = protowire.AppendBytes(p2[0].Payload, big) // an unknown field: too big to merge with g's
	before := [][]byte{slices.Clone(p0[0].Payload), slices.Clone(p1[1].Payload)}

	m := &batchMerger{open: map[string]int{}}
	m.add(p0)
	m.add(p1)
	m.add(p2)
	m.done()
	if len(m.items) != 3 {
		t.Fatalf("%d items, want 3 (g merged, h merged, g's oversized third)", len(m.items))
	}
	for i, want := range []struct {
		gw  string
		ids []string
	}{{"g", []string{"a1", "a2", "b2"}}, {"h", []string{"a3", "b1"}}, {"g", []string{"c1"}}} {
		if got := ids(m.items[i].Payload); m.items[i].Gateway != want.gw || !slices.Equal(got, want.ids) {
			t.Errorf("item %d: gateway %s, events %q; want %s, %q", i, m.items[i].Gateway, got, want.gw, want.ids)
		}
	}
	if !bytes.Equal(p0[0].Payload, before[0]) || !bytes.Equal(p1[1].Payload, before[1]) {
		t.Error("merging modified the payloads it was given")
	}
	m.reset()
	if m.add(p1); len(m.done()) != 2 {
		t.Errorf("after reset: %d items, want 2", len(m.items))
	}
}

// stuckDeadLetters makes dead-lettering in one partition fail until
// released: a fault of the real backend that a poison entry and an
// unavailable dead-letter stream would cause.
type stuckDeadLetters struct {
	store.EventLog
	p        int
	released chan struct{}
	failed   atomic.Int64
}

func (l *stuckDeadLetters) DeadLetter(ctx context.Context, p int, e store.Entry, reason string) error {
	if p == l.p {
		select {
		case <-l.released:
		default:
			l.failed.Add(1)
			return errors.New("dead-letter stream unavailable")
		}
	}
	return l.EventLog.DeadLetter(ctx, p, e, reason)
}

func TestMuxAFailingPartitionDoesNotStallTheOthers(t *testing.T) {
	const partitions = 4
	real := redisBackend(t, partitions)
	colls := map[int]string{} // partition → a collection in it
	for i := 0; len(colls) < partitions; i++ {
		c := fmt.Sprintf("c%d", i)
		if _, ok := colls[store.PartitionOf("t", c, partitions)]; !ok {
			colls[store.PartitionOf("t", c, partitions)] = c
		}
	}
	stuck := &stuckDeadLetters{EventLog: real.Log, p: 0, released: make(chan struct{})}
	backend := *real
	backend.Log = stuck
	h := startNodeOn(t, Config{}, &backend)
	g, _ := h.connect("gw", "")
	for p := range partitions {
		g.mustSubscribe(&streamerv1.Subscription{SubscriptionId: "s" + colls[p], Tenant: "t", Collection: colls[p]})
	}

	// A poison entry in partition 0, whose dead-lettering fails: its
	// consumer retries, and partition 0 is stuck until released.
	if _, err := real.Log.Append(t.Context(), 0, []byte("not a log entry")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a failed dead-lettering", func() bool { return stuck.failed.Load() > 0 })
	h.publish(event("stuck", "t", colls[0], "d", opCreate, `{}`, ""))
	var others []string
	for p := 1; p < partitions; p++ {
		for i := range 3 {
			id := fmt.Sprintf("p%d-%d", p, i)
			h.publish(event(id, "t", colls[p], "d", opCreate, `{}`, ""))
			others = append(others, id)
		}
	}
	for _, m := range g.matchesUntil(others...) {
		if m.GetEvent().GetEventId() == "stuck" {
			t.Fatal("partition 0 delivered past its poison entry before it was dead-lettered")
		}
	}

	close(stuck.released)
	g.matchesUntil("stuck")
	dead, err := real.Log.DeadLetters(t.Context(), 0, 0)
	if err != nil || len(dead) != 1 || string(dead[0].Original.Payload) != "not a log entry" {
		t.Fatalf("dead letters of partition 0: %v, %v; want the poison entry", dead, err)
	}
}

// losingMulti loses the entries of the first multiplexed read that returns
// any once armed, as when the reply of a read that took effect in Redis is
// lost (and go-redis retried it): the entries are pending, and no batch
// holds them.
type losingMulti struct {
	store.MultiRouter
	armed atomic.Bool
	lost  atomic.Int64
}

func (m *losingMulti) RouteReadMany(ctx context.Context, consumer string, routes []store.PartitionRoute, count int, block time.Duration) (bool, error) {
	routed, err := m.MultiRouter.RouteReadMany(ctx, consumer, routes, count, block)
	if err == nil && m.armed.Load() && m.lost.Load() == 0 {
		for i := range routes {
			if n := len(routes[i].Entries); n > 0 {
				m.lost.Add(int64(n))
				routes[i].Entries = nil
			}
		}
	}
	return routed, err
}

func TestMuxIdlePartitionStillClaimsStrayEntries(t *testing.T) {
	real := redisBackend(t, 2)
	multi := &losingMulti{MultiRouter: real.Multi}
	backend := *real
	backend.Multi = multi
	h := startNodeOn(t, Config{}, &backend)
	g := h.watching("gw")
	waitFor(t, "the subscription in the index", func() bool {
		return h.labelledValue("streamer_control_entries_total", "kind", "subscription_added") == 1
	})
	multi.armed.Store(true)

	// The event's read is lost; nothing else is published, so only the
	// consumer's periodic sweep, while it waits idle in the multiplexer,
	// can find it pending and deliver it.
	h.publish(event("stray", "t", "c", "d", opCreate, `{}`, ""))
	waitFor(t, "a lost read", func() bool { return multi.lost.Load() > 0 })
	start := time.Now()
	g.matchesUntil("stray")
	t.Logf("the stray entry was delivered %v after its read was lost", time.Since(start).Round(time.Millisecond))
	waitFor(t, "nothing pending", func() bool {
		n, err := real.Log.Pending(t.Context(), store.PartitionOf("t", "c", 2))
		return err == nil && n == 0
	})
}
