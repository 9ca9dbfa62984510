package storetest

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/streamerd/streamer/store"
)

var subscriptionScenarios = []scenario{
	{"put get list delete", testSubsCRUD},
	{"stored data is a copy", testSubsCopies},
	{"touch registers a gateway without subscriptions", testSubsTouchRegisters},
	{"heartbeats keep subscriptions past their first ttl", testSubsTouchRefreshes},
	{"live and expired gateways are sorted by name", testSubsSorted},
	{"expired gateway loses its subscriptions and stays listed until forget", testSubsExpiry},
	{"put after expiry starts an empty set", testSubsPutAfterExpiry},
	{"forget removes a live gateway", testSubsForget},
	{"empty gateway and short ttl are rejected", testSubsBadArgs},
	{"list-partition returns a partition's subscriptions only", testSubsListPartition},
	{"tenant counts follow puts, moves, deletes and forgets", testSubsTenantCount},
}

func testSubsTenantCount(t *testing.T, e *env) {
	ctx := t.Context()
	s := e.b.Subscriptions
	want := func(tenant string, n int) {
		t.Helper()
		if got := try(s.TenantCount(ctx, tenant)).must(t); got != n {
			t.Fatalf("TenantCount(%q) = %d, want %d", tenant, got, n)
		}
	}
	put := func(gw, id, tenant string) {
		t.Helper()
		ok(t, s.Put(ctx, gw, store.StoredSubscription{ID: id, Tenant: tenant, Data: []byte("x")}, longTTL))
	}
	put("g", "s1", "a")
	put("g", "s2", "a")
	put("h", "s1", "a")
	put("g", "s3", "")
	want("a", 3)
	want("", 1)
	want("unknown", 0)
	put("g", "s1", "a") // replaced in place
	want("a", 3)
	put("g", "s2", "b") // moved to another tenant
	want("a", 2)
	want("b", 1)
	try(s.Delete(ctx, "g", "s1")).must(t)
	try(s.Delete(ctx, "g", "nope")).must(t)
	want("a", 1)
	ok(t, s.Forget(ctx, "g"))
	want("a", 1) // h's
	want("b", 0)
	want("", 0)
}

// wantPartition fails unless ListPartition(gateway, p) holds exactly ids.
func (e *env) wantPartition(t *testing.T, gateway string, p int, ids ...string) {
	t.Helper()
	got := try(e.b.Subscriptions.ListPartition(t.Context(), gateway, p)).must(t)
	if got == nil {
		t.Fatalf("ListPartition(%s, %d) = nil, want a non-nil map", gateway, p)
	}
	if keys := slices.Sorted(maps.Keys(got)); !slices.Equal(keys, ids) {
		t.Fatalf("ListPartition(%s, %d) = %q, want %q", gateway, p, keys, ids)
	}
}

func testSubsListPartition(t *testing.T, e *env) {
	ctx := t.Context()
	s, last := e.b.Subscriptions, e.lastPartition()
	if last == 0 {
		t.Skip("a backend of one partition has no other partition to keep apart (the suite runs on several partitions too)")
	}
	ok(t, s.Put(ctx, "g", store.StoredSubscription{ID: "s1", Tenant: "t", Partition: last, Data: []byte("one")}, longTTL))
	ok(t, s.Put(ctx, "g", store.StoredSubscription{ID: "s2", Tenant: "t", Partition: 0, Data: []byte("two")}, longTTL))
	ok(t, s.Put(ctx, "g", store.StoredSubscription{ID: "s3", Tenant: "t", Partition: last, Data: []byte("three")}, longTTL))
	ok(t, s.Put(ctx, "other", store.StoredSubscription{ID: "s9", Tenant: "t", Partition: last, Data: []byte("other")}, longTTL))
	e.wantPartition(t, "g", last, "s1", "s3")
	if got := try(s.ListPartition(ctx, "g", last)).must(t); string(got["s3"]) != "three" {
		t.Fatalf("ListPartition data = %q", got)
	}
	e.wantPartition(t, "g", 0, "s2")
	// Moved to another partition, deleted, unknown.
	ok(t, s.Put(ctx, "g", store.StoredSubscription{ID: "s3", Tenant: "t", Partition: 0, Data: []byte("three again")}, longTTL))
	e.wantPartition(t, "g", last, "s1")
	e.wantPartition(t, "g", 0, "s2", "s3")
	try(s.Delete(ctx, "g", "s1")).must(t)
	e.wantPartition(t, "g", last)
	e.wantPartition(t, "unknown", 0)
	// Many, read in chunks.
	const many = 2500
	want := make([]string, many)
	for i := range many {
		want[i] = fmt.Sprintf("m%05d", i)
		ok(t, s.Put(ctx, "big", store.StoredSubscription{ID: want[i], Tenant: "t", Partition: last, Data: []byte("x")}, longTTL))
	}
	e.wantPartition(t, "big", last, want...)
	// Forgotten; bad partitions.
	ok(t, s.Forget(ctx, "g"))
	e.wantPartition(t, "g", 0)
	for _, p := range []int{-1, last + 1} {
		wantErr(t, fmt.Sprintf("Put in partition %d", p), s.Put(ctx, "g", store.StoredSubscription{ID: "s", Tenant: "t", Partition: p, Data: nil}, longTTL), store.ErrInvalid)
	}
}

// wantSubs fails unless gateway's subscriptions are exactly want.
func (e *env) wantSubs(t *testing.T, gateway string, want map[string]string) {
	t.Helper()
	got := try(e.b.Subscriptions.List(t.Context(), gateway)).must(t)
	if got == nil {
		t.Fatalf("List(%s) = nil, want a non-nil map", gateway)
	}
	if !maps.EqualFunc(got, want, func(g []byte, w string) bool { return string(g) == w }) {
		t.Fatalf("List(%s) = %q, want %q", gateway, got, want)
	}
	if n := try(e.b.Subscriptions.Count(t.Context(), gateway)).must(t); n != len(want) {
		t.Fatalf("Count(%s) = %d, want %d", gateway, n, len(want))
	}
}

// wantGateways fails unless got equals want (nil and empty alike).
func wantGateways(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("%s = %q, want %q", what, got, want)
	}
}

// expire shortens gateway's ttl and waits until its subscriptions are gone.
func (e *env) expire(t *testing.T, gateway string) {
	t.Helper()
	ok(t, e.b.Subscriptions.Touch(t.Context(), gateway, shortTTL))
	eventually(t, "expired", func() bool {
		live := try(e.b.Subscriptions.Live(t.Context())).must(t)
		subs := try(e.b.Subscriptions.List(t.Context(), gateway)).must(t)
		return !slices.Contains(live, gateway) && len(subs) == 0
	})
}

func testSubsCRUD(t *testing.T, e *env) {
	ctx := t.Context()
	s := e.b.Subscriptions
	ok(t, s.Put(ctx, "g", store.StoredSubscription{ID: "s1", Tenant: "t", Partition: 0, Data: []byte("one")}, longTTL))
	ok(t, s.Put(ctx, "g", store.StoredSubscription{ID: "s2", Tenant: "t", Partition: 0, Data: []byte("two")}, longTTL))
	ok(t, s.Put(ctx, "other", store.StoredSubscription{ID: "s1", Tenant: "t", Partition: 0, Data: []byte("elsewhere")}, longTTL))
	if data, found := try2(s.Get(ctx, "g", "s1")).must(t); !found || string(data) != "one" {
		t.Fatalf("Get(g, s1) = %q, %v; want one, true", data, found)
	}
	e.wantSubs(t, "g", map[string]string{"s1": "one", "s2": "two"})

	ok(t, s.Put(ctx, "g", store.StoredSubscription{ID: "s1", Tenant: "t", Partition: 0, Data: []byte("uno")}, longTTL))
	ok(t, s.Put(ctx, "g", store.StoredSubscription{ID: "s3", Tenant: "t", Partition: 0, Data: nil}, longTTL))
	e.wantSubs(t, "g", map[string]string{"s1": "uno", "s2": "two", "s3": ""})

	if existed := try(s.Delete(ctx, "g", "s1")).must(t); !existed {
		t.Errorf("Delete(g, s1) = false, want true")
	}
	if existed := try(s.Delete(ctx, "g", "s1")).must(t); existed {
		t.Errorf("second Delete(g, s1) = true, want false")
	}
	if _, found := try2(s.Get(ctx, "g", "s1")).must(t); found {
		t.Errorf("Get after Delete found the subscription")
	}
	e.wantSubs(t, "g", map[string]string{"s2": "two", "s3": ""})
	e.wantSubs(t, "other", map[string]string{"s1": "elsewhere"})
	e.wantSubs(t, "unknown", map[string]string{})
	if _, found := try2(s.Get(ctx, "unknown", "s1")).must(t); found {
		t.Errorf("Get on an unknown gateway found something")
	}
	if existed := try(s.Delete(ctx, "unknown", "s1")).must(t); existed {
		t.Errorf("Delete on an unknown gateway = true")
	}
}

func testSubsCopies(t *testing.T, e *env) {
	ctx := t.Context()
	data := []byte("abc")
	ok(t, e.b.Subscriptions.Put(ctx, "g", store.StoredSubscription{ID: "s", Tenant: "t", Partition: 0, Data: data}, longTTL))
	data[0] = 'X'
	got, _ := try2(e.b.Subscriptions.Get(ctx, "g", "s")).must(t)
	if !bytes.Equal(got, []byte("abc")) {
		t.Fatalf("Get = %q after the caller changed its buffer, want abc", got)
	}
	got[0] = 'Y'
	try(e.b.Subscriptions.List(ctx, "g")).must(t)["s"][1] = 'Z'
	e.wantSubs(t, "g", map[string]string{"s": "abc"})
}

func testSubsTouchRegisters(t *testing.T, e *env) {
	ctx := t.Context()
	ok(t, e.b.Subscriptions.Touch(ctx, "g", longTTL))
	wantGateways(t, "Live", try(e.b.Subscriptions.Live(ctx)).must(t), "g")
	e.wantSubs(t, "g", map[string]string{})
	ok(t, e.b.Subscriptions.Put(ctx, "g", store.StoredSubscription{ID: "s", Tenant: "t", Partition: 0, Data: []byte("x")}, longTTL))
	e.wantSubs(t, "g", map[string]string{"s": "x"})
}

func testSubsTouchRefreshes(t *testing.T, e *env) {
	ctx := t.Context()
	put := time.Now()
	ok(t, e.b.Subscriptions.Put(ctx, "g", store.StoredSubscription{ID: "s", Tenant: "t", Partition: 0, Data: []byte("x")}, shortTTL))
	ok(t, e.b.Subscriptions.Touch(ctx, "g", longTTL))
	time.Sleep(time.Until(put.Add(2 * shortTTL))) // the scenario: the Put's short TTL runs out, on the backend's own clock
	e.wantSubs(t, "g", map[string]string{"s": "x"})
	wantGateways(t, "Live", try(e.b.Subscriptions.Live(ctx)).must(t), "g")
	wantGateways(t, "Expired", try(e.b.Subscriptions.Expired(ctx, time.Now())).must(t))
}

func testSubsSorted(t *testing.T, e *env) {
	ctx := t.Context()
	wantGateways(t, "Live of an empty backend", try(e.b.Subscriptions.Live(ctx)).must(t))
	for _, g := range []string{"b", "c", "a"} {
		ok(t, e.b.Subscriptions.Put(ctx, g, store.StoredSubscription{ID: "s", Tenant: "t", Partition: 0, Data: []byte("x")}, longTTL))
	}
	wantGateways(t, "Live", try(e.b.Subscriptions.Live(ctx)).must(t), "a", "b", "c")
	wantGateways(t, "Expired(now)", try(e.b.Subscriptions.Expired(ctx, time.Now())).must(t))
	wantGateways(t, "Expired(in 2 minutes)", try(e.b.Subscriptions.Expired(ctx, time.Now().Add(2*longTTL))).must(t), "a", "b", "c")
}

func testSubsExpiry(t *testing.T, e *env) {
	ctx := t.Context()
	s := e.b.Subscriptions
	ok(t, s.Put(ctx, "g", store.StoredSubscription{ID: "s1", Tenant: "t", Partition: 0, Data: []byte("x")}, longTTL))
	ok(t, s.Put(ctx, "h", store.StoredSubscription{ID: "s1", Tenant: "t", Partition: 0, Data: []byte("y")}, longTTL))
	e.expire(t, "g")

	if _, found := try2(s.Get(ctx, "g", "s1")).must(t); found {
		t.Errorf("Get found a subscription of an expired gateway")
	}
	if existed := try(s.Delete(ctx, "g", "s1")).must(t); existed {
		t.Errorf("Delete found a subscription of an expired gateway")
	}
	wantGateways(t, "Live", try(s.Live(ctx)).must(t), "h")
	wantGateways(t, "Expired", try(s.Expired(ctx, time.Now())).must(t), "g")
	e.wantSubs(t, "h", map[string]string{"s1": "y"})

	ok(t, s.Forget(ctx, "g"))
	wantGateways(t, "Expired after Forget", try(s.Expired(ctx, time.Now())).must(t))
	wantGateways(t, "Live after Forget", try(s.Live(ctx)).must(t), "h")
	ok(t, s.Forget(ctx, "g"))
	ok(t, s.Forget(ctx, "never-seen"))
}

func testSubsPutAfterExpiry(t *testing.T, e *env) {
	ctx := t.Context()
	ok(t, e.b.Subscriptions.Put(ctx, "g", store.StoredSubscription{ID: "old", Tenant: "t", Partition: 0, Data: []byte("x")}, longTTL))
	e.expire(t, "g")
	ok(t, e.b.Subscriptions.Put(ctx, "g", store.StoredSubscription{ID: "new", Tenant: "t", Partition: 0, Data: []byte("y")}, longTTL))
	e.wantSubs(t, "g", map[string]string{"new": "y"})
	wantGateways(t, "Live", try(e.b.Subscriptions.Live(ctx)).must(t), "g")
	wantGateways(t, "Expired", try(e.b.Subscriptions.Expired(ctx, time.Now())).must(t))
}

func testSubsForget(t *testing.T, e *env) {
	ctx := t.Context()
	ok(t, e.b.Subscriptions.Put(ctx, "g", store.StoredSubscription{ID: "s", Tenant: "t", Partition: 0, Data: []byte("x")}, longTTL))
	epoch := try(e.b.Sessions.Claim(ctx, "g", "n")).must(t)
	ok(t, e.b.Subscriptions.Forget(ctx, "g"))
	e.wantSession(t, "g", "", 0)
	if next := try(e.b.Sessions.Claim(ctx, "g", "n")).must(t); next <= epoch {
		t.Errorf("Claim after Forget = %d, want > %d", next, epoch)
	}
	e.wantSubs(t, "g", map[string]string{})
	wantGateways(t, "Live", try(e.b.Subscriptions.Live(ctx)).must(t))
	wantGateways(t, "Expired", try(e.b.Subscriptions.Expired(ctx, time.Now().Add(2*longTTL))).must(t))
}

func testSubsBadArgs(t *testing.T, e *env) {
	ctx := t.Context()
	s := e.b.Subscriptions
	wantErr(t, "Put(empty gateway)", s.Put(ctx, "", store.StoredSubscription{ID: "s", Tenant: "t", Partition: 0, Data: nil}, longTTL), store.ErrInvalid)
	wantErr(t, "Put(ttl 0)", s.Put(ctx, "g", store.StoredSubscription{ID: "s", Tenant: "t"}, 0), store.ErrInvalid)
	wantErr(t, "Touch(ttl -1s)", s.Touch(ctx, "g", -time.Second), store.ErrInvalid)
	wantErr(t, "Touch(empty gateway)", s.Touch(ctx, "", longTTL), store.ErrInvalid)
	_, err := s.List(ctx, "")
	wantErr(t, "List(empty gateway)", err, store.ErrInvalid)
	wantGateways(t, "Live after rejected calls", try(s.Live(ctx)).must(t))
}
