package service

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/streamerd/streamer/internal/clock"
	"github.com/streamerd/streamer/internal/redistest"
	streamerv1 "github.com/streamerd/streamer/proto/streamer/v1"
	"github.com/streamerd/streamer/store"
	"github.com/streamerd/streamer/store/memory"
)

// These tests run several nodes over one shared memory backend: a pool as
// it runs on Redis, in one process. The multi-process, real-Redis versions
// live in integration/.

// The pool tests run their nodes on a fake clock: a rebalancing round
// happens when the test steps the clock by a third of poolLeaseTTL, and a
// lease held by a node can lapse only if the test steps past it, however
// slow the machine. Gateway TTLs are longer than any test's fake time.
const (
	poolLeaseTTL   = 30 * time.Second
	poolRound      = poolLeaseTTL / 3
	poolGatewayTTL = 24 * time.Hour
	// crashedTTL is the lease of a node that crashed: the backend lets it
	// expire by itself (Redis on its own clock, so it is short in real time).
	crashedTTL = 300 * time.Millisecond
)

// poolConfig is the configuration of pool node id on fake time ft.
func poolConfig(id string, ft *fakeTime) Config {
	return Config{NodeID: id, LeaseTTL: poolLeaseTTL, GatewayTTL: poolGatewayTTL, Clock: ft}
}

// owners returns the lease holder of every partition.
func owners(t *testing.T, b *store.Backend) []string {
	t.Helper()
	out := make([]string, b.Log.Partitions())
	for p := range out {
		o, err := b.Leases.Owner(context.Background(), p)
		if err != nil {
			t.Fatal(err)
		}
		out[p] = o
	}
	return out
}

// shares counts the partitions each node's lease holds.
func shares(t *testing.T, b *store.Backend) map[string]int {
	t.Helper()
	m := map[string]int{}
	for _, o := range owners(t, b) {
		m[o]++
	}
	return m
}

// poolBackends runs test over a memory backend and over a Redis backend
// (a real redis-server), whose nodes read all their partitions through the
// read multiplexer (mux.go), both on the fake time the test gets.
func poolBackends(t *testing.T, test func(t *testing.T, ft *fakeTime, newBackend func(partitions int) *store.Backend)) {
	t.Run("memory", func(t *testing.T) {
		ft := newFakeTime(t)
		test(t, ft, func(partitions int) *store.Backend {
			b := memory.New(memory.Config{Partitions: partitions, Clock: ft})
			t.Cleanup(func() { _ = b.Close() })
			return b
		})
	})
	t.Run("redis", func(t *testing.T) {
		ft := newFakeTime(t)
		test(t, ft, func(partitions int) *store.Backend { return redisBackendOn(t, partitions, ft) })
	})
}

func TestPoolFairShareAndCleanRelease(t *testing.T) {
	poolBackends(t, testPoolFairShareAndCleanRelease)
}

func testPoolFairShareAndCleanRelease(t *testing.T, ft *fakeTime, newBackend func(int) *store.Backend) {
	backend := newBackend(12)
	cfg := func(id string) Config { return poolConfig(id, ft) }
	want := func(w map[string]int) {
		t.Helper()
		ft.stepUntil(fmt.Sprintf("shares %v", w), poolRound, func() (bool, any) {
			got := shares(t, backend)
			for id, n := range w {
				if got[id] != n {
					return false, got
				}
			}
			return true, got
		})
	}

	n1 := startNodeOn(t, cfg("n1"), backend)
	want(map[string]int{"n1": 12})
	n2 := startNodeOn(t, cfg("n2"), backend)
	want(map[string]int{"n1": 6, "n2": 6})
	n3 := startNodeOn(t, cfg("n3"), backend)
	want(map[string]int{"n1": 4, "n2": 4, "n3": 4})

	// A clean stop releases at once; the others share its partitions.
	n3.stop()
	if got := shares(t, backend)["n3"]; got != 0 {
		t.Fatalf("n3 still holds %d leases after stopping", got)
	}
	want(map[string]int{"n1": 6, "n2": 6})
	waitFor(t, "partitions_owned metrics", func() bool {
		return n1.metricValue("streamer_partitions_owned") == 6 && n2.metricValue("streamer_partitions_owned") == 6
	})
	for _, h := range []*harness{n1, n2} {
		if lost, expired := h.labelledValue("streamer_lease_changes_total", "change", "lost"), h.labelledValue("streamer_lease_changes_total", "change", "expired"); lost+expired != 0 {
			t.Errorf("%s: %v leases lost, %v expired; want clean hand-overs only", h.node.ID(), lost, expired)
		}
	}
	if released := n1.labelledValue("streamer_lease_changes_total", "change", "released"); released != 8 {
		t.Errorf("n1 released %v leases, want 8 (12 → 6 → 4)", released)
	}
}

func TestLostLeaseStopsThePartitionAtOnceAndTheNextOwnerClaimsPending(t *testing.T) {
	poolBackends(t, testLostLease)
}

func testLostLease(t *testing.T, ft *fakeTime, newBackend func(int) *store.Backend) {
	backend := newBackend(1)
	ctx := context.Background()
	h := startNodeOn(t, poolConfig("owner", ft), backend)
	g := h.watching("gw")
	h.publish(event("e0", "t", "c", "d", opCreate, `{}`, ""))
	g.matchesUntil("e0")

	// Another node takes the lease (as after a partition between the owner
	// and Redis): the owner learns it at its next renewal and stops.
	if err := backend.Leases.Release(ctx, 0, "owner"); err != nil {
		t.Fatal(err)
	}
	if ok, err := backend.Leases.Acquire(ctx, 0, "thief", time.Hour); !ok || err != nil {
		t.Fatalf("thief Acquire = %v, %v", ok, err)
	}
	ft.step(poolRound) // the owner's next renewal
	if lost, owned := h.labelledValue("streamer_lease_changes_total", "change", "lost"), h.metricValue("streamer_partitions_owned"); lost != 1 || owned != 0 {
		t.Fatalf("after one round: %v leases lost, %v partitions owned; want the lease lost and the partition stopped", lost, owned)
	}

	// The former owner reads nothing more: the thief gets e1 and e2 as
	// never delivered, and leaves them pending, as if it crashed.
	h.publish(event("e1", "t", "c", "d", opCreate, `{}`, ""), event("e2", "t", "c", "d", opCreate, `{}`, ""))
	got, err := backend.Log.Read(ctx, 0, "thief", 0, 0)
	if err != nil || len(got) != 2 {
		t.Fatalf("thief read %d entries, %v; want e1 and e2", len(got), err)
	}

	// Once the thief's lease is gone, the node takes the partition back,
	// claims the thief's pending entries and delivers them, then new ones,
	// in order.
	if err := backend.Leases.Release(ctx, 0, "thief"); err != nil {
		t.Fatal(err)
	}
	ft.stepUntil("the partition owned again", poolRound, func() (bool, any) {
		owned := h.metricValue("streamer_partitions_owned")
		return owned == 1, owned
	})
	h.publish(event("e3", "t", "c", "d", opCreate, `{}`, ""))
	if got := summary(g.matchesUntil("e1", "e2", "e3")); !slices.Equal(got, []string{"e1:CREATE:s", "e2:CREATE:s", "e3:CREATE:s"}) {
		t.Fatalf("delivered %q", got)
	}
	waitFor(t, "nothing pending", func() bool { // the ack follows the outbox append
		pending, err := backend.Log.Pending(ctx, 0)
		return err == nil && pending == 0
	})
}

// logEvent encodes a change event as the event log stores it.
func logEvent(t *testing.T, ev *streamerv1.ChangeEvent) []byte {
	t.Helper()
	b, err := proto.Marshal(&streamerv1.LogEntry{Entry: &streamerv1.LogEntry_Event{Event: ev}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestTakeoverOfACrashedOwnerKeepsPartitionOrder(t *testing.T) {
	poolBackends(t, testTakeover)
}

func testTakeover(t *testing.T, ft *fakeTime, newBackend func(int) *store.Backend) {
	backend := newBackend(1)
	ctx := context.Background()

	// A crashed owner: it holds the lease (until it expires), has read five
	// of ten events and routed none of them.
	sub, _ := proto.Marshal(&streamerv1.Subscription{SubscriptionId: "s", Tenant: "t", Collection: "c"})
	if err := backend.Subscriptions.Put(ctx, "gw", store.StoredSubscription{ID: "s", Tenant: "t", Partition: 0, Data: sub}, poolGatewayTTL); err != nil {
		t.Fatal(err)
	}
	if ok, err := backend.Leases.Acquire(ctx, 0, "crashed", crashedTTL); !ok || err != nil {
		t.Fatalf("Acquire = %v, %v", ok, err)
	}
	var payloads [][]byte
	for i := range 10 {
		payloads = append(payloads, logEvent(t, event(fmt.Sprintf("e%d", i), "t", "c", "d", opCreate, `{}`, "")))
	}
	if _, err := backend.Log.Append(ctx, 0, payloads...); err != nil {
		t.Fatal(err)
	}
	if got, err := backend.Log.Read(ctx, 0, "crashed", 5, 0); err != nil || len(got) != 5 {
		t.Fatalf("crashed owner read %d, %v", len(got), err)
	}

	h := startNodeOn(t, poolConfig("heir", ft), backend)
	var ids []string
	ft.stepUntil("ten events in the outbox", poolRound, func() (bool, any) {
		entries, err := backend.Outboxes.Read(ctx, "gw", "", 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		ids = ids[:0]
		for _, e := range entries {
			var b streamerv1.OutboxBatch
			if err := proto.Unmarshal(e.Payload, &b); err != nil {
				t.Fatal(err)
			}
			for _, m := range b.GetMatches() {
				ids = append(ids, m.GetEvent().GetEventId())
			}
		}
		return len(ids) >= 10, ids
	})
	if want := []string{"e0", "e1", "e2", "e3", "e4", "e5", "e6", "e7", "e8", "e9"}; !slices.Equal(ids, want) {
		t.Fatalf("outbox holds %q, want %q", ids, want)
	}
	if acquired := h.labelledValue("streamer_lease_changes_total", "change", "acquired"); acquired != 1 {
		t.Fatalf("acquired %v leases", acquired)
	}
}

func TestEventIDDeduplication(t *testing.T) {
	for _, tc := range []struct {
		name      string
		dedupSize int
		want      []string
		dropped   float64
	}{
		{"on by default: a replay is dropped", 0, []string{"e1:CREATE:s", "e2:CREATE:s"}, 1},
		{"off: a replay is routed again", -1, []string{"e1:CREATE:s", "e1:CREATE:s", "e2:CREATE:s"}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := startNode(t, Config{DedupSize: tc.dedupSize}, memory.Config{Partitions: 1})
			g := h.watching("gw")
			h.publish(event("e1", "t", "c", "d", opCreate, `{}`, ""))
			h.publish(event("e1", "t", "c", "d", opCreate, `{}`, "")) // a producer replay
			h.publish(event("e2", "t", "c", "d", opCreate, `{}`, ""))
			var got []string
			for !slices.Contains(got, "e2:CREATE:s") {
				got = append(got, summary(g.delivery().GetMatches())...)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("delivered %q, want %q", got, tc.want)
			}
			if d := h.metricValue("streamer_events_deduplicated_total"); d != tc.dropped {
				t.Fatalf("deduplicated = %v, want %v", d, tc.dropped)
			}
		})
	}
}

func TestSessionSupersededOnAnotherNodeIsClosed(t *testing.T) {
	ft := newFakeTime(t)
	backend := memory.New(memory.Config{Partitions: 2, Clock: ft})
	t.Cleanup(func() { _ = backend.Close() })
	cfg := func(id string) Config {
		return Config{NodeID: id, LeaseTTL: poolLeaseTTL, GatewayTTL: time.Minute, Clock: ft}
	}
	n1 := startNodeOn(t, cfg("n1"), backend)
	n2 := startNodeOn(t, cfg("n2"), backend)

	old, _ := n1.connect("gw", "")
	newer, _ := n2.connect("gw", "")
	// The old session sends nothing: its node finds out by itself, at its
	// next self-check (every GatewayTTL/3; its timer is armed once the
	// session has registered, so the test steps until the session is gone).
	ft.stepUntil("the old session closed", time.Minute/3, func() (bool, any) {
		open := n1.metricValue("streamer_sessions")
		return open == 0, open
	})
	if e := old.endError(); e.GetCode() != streamerv1.ErrorCode_ERROR_CODE_SUPERSEDED {
		t.Fatalf("old session ended with %v, want SUPERSEDED", e)
	}
	newer.send(&streamerv1.GatewayMessage{Msg: &streamerv1.GatewayMessage_Heartbeat{Heartbeat: &streamerv1.Heartbeat{}}})
	newer.take("HeartbeatAck", func(m *streamerv1.StreamerMessage) bool { return m.GetHeartbeatAck() != nil })
}

func TestReadinessFollowsTheBackend(t *testing.T) {
	backend := memory.New(memory.Config{Partitions: 1})
	h := startNodeOn(t, Config{ProbeInterval: 10 * time.Millisecond}, backend)
	if h.metricValue("streamer_backend_up") != 1 {
		t.Fatal("streamer_backend_up != 1 while ready")
	}
	_ = backend.Close() // the backend becomes unreachable
	var err error
	waitFor(t, "not ready", func() bool { err = h.node.readiness(context.Background()); return err != nil })
	if !strings.Contains(err.Error(), "backend unreachable") {
		t.Fatalf("readiness = %v", err)
	}
	if h.metricValue("streamer_backend_up") != 0 || h.metricValue("streamer_backend_probe_failures_total") == 0 {
		t.Fatal("backend metrics do not show the failure")
	}
}

func TestLeaseFence(t *testing.T) {
	ctx := context.Background()
	f := newLeaseFence(clock.Real)
	call := func(ctx context.Context) error { return nil }
	if err := f.guard(ctx, call); !errors.Is(err, errLeaseExpired) {
		t.Fatalf("a fence never extended: %v", err)
	}
	f.extend(time.Now(), time.Hour)
	if err := f.guard(ctx, call); err != nil {
		t.Fatalf("valid fence: %v", err)
	}
	f.extend(time.Now(), 20*time.Millisecond)
	blocked := func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }
	if err := f.guard(ctx, blocked); !errors.Is(err, errLeaseExpired) {
		t.Fatalf("a call outliving the fence: %v", err)
	}
	f.extend(time.Now(), time.Hour)
	f.revoke()
	ran := false
	if err := f.guard(ctx, func(context.Context) error { ran = true; return nil }); !errors.Is(err, errLeaseExpired) || ran {
		t.Fatalf("revoked fence: %v, call ran = %v", err, ran)
	}
	cctx, cancel := context.WithCancel(ctx)
	f.extend(time.Now(), time.Hour)
	cancel()
	if err := f.guard(cctx, blocked); !errors.Is(err, context.Canceled) || errors.Is(err, errLeaseExpired) {
		t.Fatalf("a cancelled caller: %v", err)
	}
}

// TestTakeoverLoadsGatewaysPastTheirDeadline: a partition's new owner
// indexes the subscriptions of every registered gateway, also of one past
// its deadline that no janitor has expired (its heartbeats could not reach
// Redis: an outage, or a failover of the registry's master while the
// subscriptions' master answered). Skipping it dropped its events
// silently: the gateway, refreshed a moment later, was never told.
func TestTakeoverLoadsGatewaysPastTheirDeadline(t *testing.T) {
	const ttl = time.Minute
	ft := newFakeTime(t)
	backend := redisBackendFor(t, redistest.Start(t), 1, ft)
	ctx := context.Background()
	sub, _ := proto.Marshal(&streamerv1.Subscription{SubscriptionId: "s", Tenant: "t", Collection: "c"})
	if err := backend.Subscriptions.Put(ctx, "gw", store.StoredSubscription{ID: "s", Tenant: "t", Partition: 0, Data: sub}, ttl); err != nil {
		t.Fatal(err)
	}
	ft.step(ttl + time.Second) // past the deadline on the nodes' clock; Redis's (real) has the hash still
	if live, err := backend.Subscriptions.Live(ctx); err != nil || len(live) != 0 {
		t.Fatalf("live gateways %v, %v; want none (the test's premise)", live, err)
	}
	if _, err := backend.Log.Append(ctx, 0, logEvent(t, event("e1", "t", "c", "d", opCreate, `{}`, ""))); err != nil {
		t.Fatal(err)
	}
	cfg := poolConfig("owner", ft)
	cfg.GatewayTTL = ttl
	startNodeOn(t, cfg, backend) // expires nothing for a TTL after it starts
	ft.stepUntil("e1 routed to the gateway", poolRound, func() (bool, any) {
		entries, err := backend.Outboxes.Read(ctx, "gw", "", 0, 0)
		return err == nil && len(entries) > 0, entries
	})
}
