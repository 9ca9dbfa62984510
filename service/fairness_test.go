package service

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/streamerd/streamer/internal/clock"
	streamerv1 "github.com/streamerd/streamer/proto/streamer/v1"
	"github.com/streamerd/streamer/store/memory"
)

func TestFairnessDecidesHeavyTenantsPerWindow(t *testing.T) {
	ck := clock.NewFake(time.Unix(1000, 0))
	var closed []string
	f := newFairness(ck, func(used map[string]time.Duration, became, ended []string) {
		slices.Sort(became)
		slices.Sort(ended)
		closed = append(closed, "+"+strings.Join(became, ",")+" -"+strings.Join(ended, ","))
	})
	window := func(use map[string]time.Duration) {
		for t, d := range use {
			f.charge(t, d)
		}
		ck.Advance(fairWindow)
		f.rotate()
	}
	ms := time.Millisecond
	window(map[string]time.Duration{"a": 60 * ms, "b": 3 * ms, "c": 5 * ms}) // a: 60 > 2 × 5 (the median) and > 10 ms
	if !f.isHeavy("a") || f.isHeavy("b") || f.isHeavy("c") {
		t.Fatalf("heavy = %v, want a", f.heavy)
	}
	window(map[string]time.Duration{"a": 60 * ms}) // alone: nobody to protect
	if f.anyHeavy() {
		t.Fatalf("a tenant alone is heavy: %v", f.heavy)
	}
	window(map[string]time.Duration{"a": 9 * ms, "b": 1 * ms})                 // under the floor
	window(map[string]time.Duration{"a": 40 * ms, "b": 30 * ms, "c": 30 * ms}) // the most, not twice the median
	if f.anyHeavy() {
		t.Fatalf("heavy = %v, want none", f.heavy)
	}
	window(map[string]time.Duration{"a": 50 * ms, "b": 2 * ms, "c": 1 * ms, "d": 60 * ms}) // two heavy next to two light ones
	if !f.isHeavy("a") || !f.isHeavy("d") || len(f.heavy) != 2 {
		t.Fatalf("heavy = %v, want a and d", f.heavy)
	}
	window(map[string]time.Duration{"a": 60 * ms, "b": 3 * ms}) // two tenants: twice the other
	if !f.isHeavy("a") || len(f.heavy) != 1 {
		t.Fatalf("heavy = %v, want a", f.heavy)
	}
	f.charge("a", time.Second)
	ck.Advance(fairWindow / 2)
	f.rotate() // not over yet
	if want := []string{"+a -", "+ -a", "+ -", "+ -", "+a,d -", "+ -d"}; !slices.Equal(closed, want) {
		t.Fatalf("windows closed: %q, want %q", closed, want)
	}
}

// TestHeavyTenantIsDeferredWithinTheBatch: once a tenant used more than its
// share of a partition in a window, its entries of a read batch are
// processed after the other tenants' entries, whose deliveries come first;
// its own order holds and nothing is lost.
func TestHeavyTenantIsDeferredWithinTheBatch(t *testing.T) {
	ft := newFakeTime(t)
	backend := memory.New(memory.Config{Partitions: 1, Clock: ft})
	t.Cleanup(func() { _ = backend.Close() })
	h := startNodeOn(t, Config{Clock: ft, LeaseTTL: time.Hour, GatewayTTL: time.Hour}, backend)
	g, _ := h.connect("gw", "")
	for _, tenant := range []string{"heavy", "light"} {
		g.mustSubscribe(&streamerv1.Subscription{SubscriptionId: tenant, Tenant: tenant, Collection: "c"})
	}
	big := `{"s":"` + strings.Repeat("x", 900_000) + `"}`
	// A window in which the heavy tenant's documents cost far more than
	// the light tenant's events (their order is the log's).
	first := []string{"w1-light"}
	h.publish(event("w1-light", "light", "c", "d", opUpdate, `{"n":1}`, ""))
	for i := range 30 {
		id := fmt.Sprintf("w1-heavy-%d", i)
		h.publish(event(id, "heavy", "c", "d", opUpdate, big, ""))
		first = append(first, id)
	}
	g.matchesUntil(first...)
	ft.step(fairWindow)

	// One publish, one read batch: heavy, heavy, light.
	h.publish(event("h1", "heavy", "c", "d", opUpdate, big, ""), event("h2", "heavy", "c", "d", opUpdate, big, ""),
		event("l1", "light", "c", "d", opUpdate, `{"n":2}`, ""))
	got := summary(g.matchesUntil("h1", "h2", "l1"))
	if want := []string{"l1:UPDATE:light", "h1:UPDATE:heavy", "h2:UPDATE:heavy"}; !slices.Equal(got, want) {
		t.Fatalf("deliveries %q, want %q: the light tenant's event first", got, want)
	}
	if n := h.labelledValue("streamer_tenant_deferred_entries_total", "tenant", "heavy"); n != 2 {
		t.Fatalf("deferred entries of the heavy tenant = %v, want 2", n)
	}
	if n := h.labelledValue("streamer_tenant_deferred_entries_total", "tenant", "light"); n != 0 {
		t.Fatalf("deferred entries of the light tenant = %v, want 0", n)
	}
	if h.labelledValue("streamer_tenant_processing_seconds_total", "tenant", "heavy") <= h.labelledValue("streamer_tenant_processing_seconds_total", "tenant", "light") {
		t.Fatal("the heavy tenant's processing time is not above the light one's")
	}
}
