package storetest

import (
	"testing"

	"github.com/streamerd/streamer/store"
)

var lockScenarios = []scenario{
	{"acquire renew release with another owner contending", testLockCAS},
	{"lock expires without renewal and names are independent", testLockExpiry},
	{"empty names and short ttl are rejected", testLockBadArgs},
}

func wantLockOwner(t *testing.T, l store.Locks, name, want string) {
	t.Helper()
	if got := try(l.Owner(t.Context(), name)).must(t); got != want {
		t.Fatalf("Owner(%q) = %q, want %q", name, got, want)
	}
}

func testLockCAS(t *testing.T, e *env) {
	ctx := t.Context()
	l := e.b.Locks
	wantLockOwner(t, l, "leader", "")
	got, err := l.Acquire(ctx, "leader", "A", longTTL)
	wantBool(t, "Acquire(A)", got, err, true)
	got, err = l.Acquire(ctx, "leader", "A", longTTL)
	wantBool(t, "Acquire(A) by the owner", got, err, true)
	got, err = l.Acquire(ctx, "leader", "B", longTTL)
	wantBool(t, "Acquire(B) while A holds", got, err, false)
	got, err = l.Renew(ctx, "leader", "B", longTTL)
	wantBool(t, "Renew(B) while A holds", got, err, false)
	ok(t, l.Release(ctx, "leader", "B"))
	wantLockOwner(t, l, "leader", "A")
	got, err = l.Renew(ctx, "leader", "A", longTTL)
	wantBool(t, "Renew(A)", got, err, true)
	ok(t, l.Release(ctx, "leader", "A"))
	wantLockOwner(t, l, "leader", "")
	got, err = l.Renew(ctx, "leader", "A", longTTL)
	wantBool(t, "Renew(A) after Release", got, err, false)
	got, err = l.Acquire(ctx, "leader", "B", longTTL)
	wantBool(t, "Acquire(B) after A released", got, err, true)
	wantLockOwner(t, l, "leader", "B")
}

func testLockExpiry(t *testing.T, e *env) {
	ctx := t.Context()
	l := e.b.Locks
	got, err := l.Acquire(ctx, "a", "A", shortTTL)
	wantBool(t, "Acquire(a, A)", got, err, true)
	got, err = l.Acquire(ctx, "b", "B", longTTL)
	wantBool(t, "Acquire(b, B)", got, err, true)
	eventually(t, "lock a free", func() bool { return try(l.Owner(ctx, "a")).must(t) == "" })
	got, err = l.Renew(ctx, "a", "A", longTTL)
	wantBool(t, "Renew(a, A) after expiry", got, err, false)
	got, err = l.Acquire(ctx, "a", "C", longTTL)
	wantBool(t, "Acquire(a, C) after expiry", got, err, true)
	wantLockOwner(t, l, "b", "B")
}

func testLockBadArgs(t *testing.T, e *env) {
	ctx := t.Context()
	l := e.b.Locks
	_, err := l.Acquire(ctx, "", "A", longTTL)
	wantErr(t, "Acquire(empty name)", err, store.ErrInvalid)
	_, err = l.Acquire(ctx, "x", "", longTTL)
	wantErr(t, "Acquire(empty owner)", err, store.ErrInvalid)
	_, err = l.Renew(ctx, "x", "A", 0)
	wantErr(t, "Renew(ttl 0)", err, store.ErrInvalid)
	_, err = l.Owner(ctx, "")
	wantErr(t, "Owner(empty name)", err, store.ErrInvalid)
	wantLockOwner(t, l, "x", "")
}
