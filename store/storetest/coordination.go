package storetest

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/streamerd/streamer/store"
)

var leaseScenarios = []scenario{
	{"acquire renew release with another node contending", testLeaseCAS},
	{"lease expires without renewal", testLeaseExpiry},
	{"partition out of range and bad arguments are rejected", testLeaseBadArgs},
}

var nodeScenarios = []scenario{
	{"live nodes are sorted and expire without heartbeats", testNodes},
	{"empty node and short ttl are rejected", testNodesBadArgs},
}

var sessionScenarios = []scenario{
	{"claims increase epochs and release is compare-and-set", testSessions},
	{"empty names are rejected", testSessionsBadArgs},
}

var checkpointScenarios = []scenario{
	{"save and load", testCheckpoints},
}

// wantOwner fails unless partition p's owner is want.
func (e *env) wantOwner(t *testing.T, p int, want string) {
	t.Helper()
	if got := try(e.b.Leases.Owner(t.Context(), p)).must(t); got != want {
		t.Fatalf("Owner(%d) = %q, want %q", p, got, want)
	}
}

// wantBool fails unless the call succeeded with want.
func wantBool(t *testing.T, what string, got bool, err error, want bool) {
	t.Helper()
	if err != nil || got != want {
		t.Fatalf("%s = %v, %v; want %v, nil", what, got, err, want)
	}
}

func testLeaseCAS(t *testing.T, e *env) {
	ctx := t.Context()
	l := e.b.Leases
	p := e.lastPartition()
	e.wantOwner(t, p, "")
	got, err := l.Acquire(ctx, p, "A", longTTL)
	wantBool(t, "Acquire(A)", got, err, true)
	e.wantOwner(t, p, "A")
	got, err = l.Acquire(ctx, p, "A", longTTL)
	wantBool(t, "Acquire(A) by the owner", got, err, true)
	got, err = l.Acquire(ctx, p, "B", longTTL)
	wantBool(t, "Acquire(B) while A owns", got, err, false)
	got, err = l.Renew(ctx, p, "B", longTTL)
	wantBool(t, "Renew(B) while A owns", got, err, false)
	ok(t, l.Release(ctx, p, "B"))
	e.wantOwner(t, p, "A")
	got, err = l.Renew(ctx, p, "A", longTTL)
	wantBool(t, "Renew(A)", got, err, true)
	if p > 0 {
		e.wantOwner(t, 0, "")
	}

	ok(t, l.Release(ctx, p, "A"))
	e.wantOwner(t, p, "")
	got, err = l.Renew(ctx, p, "A", longTTL)
	wantBool(t, "Renew(A) after Release", got, err, false)
	ok(t, l.Release(ctx, p, "A"))
	got, err = l.Acquire(ctx, p, "B", longTTL)
	wantBool(t, "Acquire(B) after A released", got, err, true)
	e.wantOwner(t, p, "B")
}

func testLeaseExpiry(t *testing.T, e *env) {
	ctx := t.Context()
	l := e.b.Leases
	got, err := l.Acquire(ctx, 0, "A", longTTL)
	wantBool(t, "Acquire(A)", got, err, true)
	got, err = l.Renew(ctx, 0, "A", shortTTL)
	wantBool(t, "Renew(A, short ttl)", got, err, true)
	eventually(t, "free", func() bool { return try(l.Owner(ctx, 0)).must(t) == "" })
	got, err = l.Renew(ctx, 0, "A", longTTL)
	wantBool(t, "Renew(A) after expiry", got, err, false)
	got, err = l.Acquire(ctx, 0, "B", longTTL)
	wantBool(t, "Acquire(B) after expiry", got, err, true)
	ok(t, l.Release(ctx, 0, "A"))
	e.wantOwner(t, 0, "B")
}

func testLeaseBadArgs(t *testing.T, e *env) {
	ctx := t.Context()
	l := e.b.Leases
	for _, p := range []int{-1, e.b.Log.Partitions()} {
		calls := map[string]error{}
		_, calls["Acquire"] = l.Acquire(ctx, p, "A", longTTL)
		_, calls["Renew"] = l.Renew(ctx, p, "A", longTTL)
		calls["Release"] = l.Release(ctx, p, "A")
		_, calls["Owner"] = l.Owner(ctx, p)
		for name, err := range calls {
			wantErr(t, fmt.Sprintf("%s(partition %d)", name, p), err, store.ErrBadPartition)
		}
	}
	_, err := l.Acquire(ctx, 0, "", longTTL)
	wantErr(t, "Acquire(empty node)", err, store.ErrInvalid)
	_, err = l.Acquire(ctx, 0, "A", 0)
	wantErr(t, "Acquire(ttl 0)", err, store.ErrInvalid)
	_, err = l.Renew(ctx, 0, "A", time.Microsecond)
	wantErr(t, "Renew(ttl 1µs)", err, store.ErrInvalid)
	e.wantOwner(t, 0, "")
}

func testNodes(t *testing.T, e *env) {
	ctx := t.Context()
	n := e.b.Nodes
	wantGateways(t, "Live of an empty registry", try(n.Live(ctx)).must(t))
	ok(t, n.Heartbeat(ctx, "b", longTTL))
	ok(t, n.Heartbeat(ctx, "a", longTTL))
	wantGateways(t, "Live", try(n.Live(ctx)).must(t), "a", "b")
	ok(t, n.Heartbeat(ctx, "b", shortTTL))
	eventually(t, "b expired", func() bool { return len(try(n.Live(ctx)).must(t)) == 1 })
	wantGateways(t, "Live after b expired", try(n.Live(ctx)).must(t), "a")
	ok(t, n.Heartbeat(ctx, "b", longTTL))
	wantGateways(t, "Live after b came back", try(n.Live(ctx)).must(t), "a", "b")
	ok(t, n.Remove(ctx, "a"))
	ok(t, n.Remove(ctx, "never-seen"))
	wantGateways(t, "Live after Remove", try(n.Live(ctx)).must(t), "b")
}

func testNodesBadArgs(t *testing.T, e *env) {
	ctx := t.Context()
	wantErr(t, "Heartbeat(empty node)", e.b.Nodes.Heartbeat(ctx, "", longTTL), store.ErrInvalid)
	wantErr(t, "Heartbeat(ttl 0)", e.b.Nodes.Heartbeat(ctx, "a", 0), store.ErrInvalid)
	wantGateways(t, "Live after rejected heartbeats", try(e.b.Nodes.Live(ctx)).must(t))
}

// wantSession fails unless gateway's session is held by node with epoch.
func (e *env) wantSession(t *testing.T, gateway, node string, epoch int64) {
	t.Helper()
	gotNode, gotEpoch, err := e.b.Sessions.Current(t.Context(), gateway)
	if err != nil || gotNode != node || gotEpoch != epoch {
		t.Fatalf("Current(%s) = %q, %d, %v; want %q, %d, nil", gateway, gotNode, gotEpoch, err, node, epoch)
	}
}

func testSessions(t *testing.T, e *env) {
	ctx := t.Context()
	s := e.b.Sessions
	e.wantSession(t, "g", "", 0)
	e1 := try(s.Claim(ctx, "g", "A")).must(t)
	if e1 <= 0 {
		t.Fatalf("first epoch = %d, want > 0", e1)
	}
	e.wantSession(t, "g", "A", e1)
	e2 := try(s.Claim(ctx, "g", "B")).must(t)
	if e2 <= e1 {
		t.Fatalf("epoch %d after %d, want greater", e2, e1)
	}
	e.wantSession(t, "g", "B", e2)
	ok(t, s.Release(ctx, "g", "A", e1)) // superseded: no-op
	ok(t, s.Release(ctx, "g", "B", e1)) // wrong epoch: no-op
	ok(t, s.Release(ctx, "g", "A", e2)) // wrong node: no-op
	e.wantSession(t, "g", "B", e2)
	e.wantSession(t, "h", "", 0)

	ok(t, s.Release(ctx, "g", "B", e2))
	e.wantSession(t, "g", "", 0)
	ok(t, s.Release(ctx, "g", "B", e2))
	e3 := try(s.Claim(ctx, "g", "B")).must(t)
	if e3 <= e2 {
		t.Fatalf("epoch %d after a released %d, want greater", e3, e2)
	}
	e.wantSession(t, "g", "B", e3)
	e4 := try(s.Claim(ctx, "g", "B")).must(t)
	if e4 <= e3 {
		t.Fatalf("re-claim by the same node: epoch %d after %d, want greater", e4, e3)
	}
	e.wantSession(t, "g", "B", e4)
}

func testSessionsBadArgs(t *testing.T, e *env) {
	ctx := t.Context()
	_, err := e.b.Sessions.Claim(ctx, "", "A")
	wantErr(t, "Claim(empty gateway)", err, store.ErrInvalid)
	_, err = e.b.Sessions.Claim(ctx, "g", "")
	wantErr(t, "Claim(empty node)", err, store.ErrInvalid)
	e.wantSession(t, "g", "", 0)
}

func testCheckpoints(t *testing.T, e *env) {
	ctx := t.Context()
	c := e.b.Checkpoints
	if v, found := try2(c.Load(ctx, "puller")).must(t); found || v != nil {
		t.Fatalf("Load of a missing checkpoint = %q, %v; want nil, false", v, found)
	}
	token := []byte("token-1")
	ok(t, c.Save(ctx, "puller", token))
	token[0] = 'X'
	wantValue := func(name, want string) {
		t.Helper()
		v, found := try2(c.Load(ctx, name)).must(t)
		if !found || !bytes.Equal(v, []byte(want)) {
			t.Fatalf("Load(%s) = %q, %v; want %q, true", name, v, found, want)
		}
		if len(v) > 0 {
			v[0] = 'Y' // must not change what is stored
		}
	}
	wantValue("puller", "token-1")
	wantValue("puller", "token-1")
	ok(t, c.Save(ctx, "puller", []byte("token-2")))
	ok(t, c.Save(ctx, "other", nil))
	wantValue("puller", "token-2")
	wantValue("other", "")
	wantErr(t, "Save(empty name)", c.Save(ctx, "", []byte("x")), store.ErrInvalid)
}
