// Package storetest is the one conformance suite of the store contracts.
// Every backend (memory, redis) calls Run from its own tests and must pass it
// unchanged; a behaviour the suite does not check is not part of a contract
// unless the contract's documentation states it.
//
// The suite needs no particular clock or cap: TTL scenarios use short TTLs
// and poll with a deadline, and retention scenarios read the caps the
// factory configured from Options. It takes a few seconds.
package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/streamerd/streamer/store"
)

// Options tells Run how the factory configures the backends it returns.
type Options struct {
	// LogMaxLen is the retention (MaxLen) of every event log partition.
	// It must be at least MinMaxLen; keep it small (such as 100) because
	// retention scenarios append about three times as many entries.
	LogMaxLen int64
	// OutboxMaxLen is the cap of every gateway outbox, with the same rules
	// as LogMaxLen.
	OutboxMaxLen int64
	// OutboxMaxBytes is the byte cap of every gateway outbox: exactly
	// OutboxBytesCap (the scenarios weigh entries against it).
	OutboxMaxBytes int64
	// BlockedReads returns how many reads of a backend from the factory are
	// blocked waiting for entries now (Redis: INFO clients blocked_clients).
	// Scenarios that wake, cancel or close a blocked read wait for it to
	// block first. Required.
	BlockedReads func(b *store.Backend) int
}

// OutboxBytesCap is the outbox byte cap the suite's backends are built
// with: the other scenarios' payloads never reach it.
const OutboxBytesCap = 64 << 10

// MinMaxLen is the smallest cap Options may declare: concurrency scenarios
// need that many entries to stay retained.
const MinMaxLen = 20

// Timing of the suite. TTLs are short so that expiry scenarios finish fast;
// long ones are long enough never to expire during a test.
const (
	shortTTL  = 150 * time.Millisecond
	longTTL   = time.Minute
	waitLimit = 5 * time.Second       // how long eventually polls
	pollEvery = 10 * time.Millisecond // how often eventually polls
	longBlock = 10 * time.Second      // a blocking read that must be woken
	claimIdle = 50 * time.Millisecond // the min-idle of a claim scenario
)

// scenario is one named conformance test; it gets a fresh backend.
type scenario struct {
	name string
	run  func(t *testing.T, e *env)
}

// env is what a scenario works with.
type env struct {
	b    *store.Backend
	opts Options
}

// Run runs every scenario of the suite as a subtest, each against a fresh
// backend from newBackend, which must be empty and configured as opts says.
// Run closes each backend when its subtest ends (Close is idempotent, so the
// factory may close it too). Subtests run one after another.
func Run(t *testing.T, newBackend func(t *testing.T) *store.Backend, opts Options) {
	t.Helper()
	if opts.BlockedReads == nil {
		t.Fatal("storetest: Options.BlockedReads is required")
	}
	if opts.LogMaxLen < MinMaxLen || opts.OutboxMaxLen < MinMaxLen {
		t.Fatalf("storetest: Options %+v: both caps must be set to at least %d (small ones, such as 100, keep the suite fast)", opts, MinMaxLen)
	}
	if opts.OutboxMaxBytes != OutboxBytesCap {
		t.Fatalf("storetest: Options.OutboxMaxBytes is %d: build the backend with, and declare, OutboxBytesCap (%d)", opts.OutboxMaxBytes, OutboxBytesCap)
	}
	groups := []struct {
		name      string
		scenarios []scenario
	}{
		{"EventLog", eventLogScenarios},
		{"Subscriptions", subscriptionScenarios},
		{"Outboxes", outboxScenarios},
		{"Leases", leaseScenarios},
		{"Nodes", nodeScenarios},
		{"Sessions", sessionScenarios},
		{"Checkpoints", checkpointScenarios},
		{"Locks", lockScenarios},
		{"Backend", backendScenarios},
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			for _, sc := range g.scenarios {
				t.Run(sc.name, func(t *testing.T) {
					b := newBackend(t)
					t.Cleanup(func() {
						if err := b.Close(); err != nil {
							t.Errorf("Close: %v", err)
						}
					})
					sc.run(t, &env{b: b, opts: opts})
				})
			}
		})
	}
}

// outcome is the result of a call returning a value and an error; try
// wraps one so that a scenario reads try(call(...)).must(t).
type outcome[T any] struct {
	v   T
	err error
}

func try[T any](v T, err error) outcome[T] { return outcome[T]{v, err} }

// must returns the value, failing the test if the call failed.
func (o outcome[T]) must(t *testing.T) T {
	t.Helper()
	if o.err != nil {
		t.Fatalf("unexpected error: %v", o.err)
	}
	return o.v
}

// outcome2 is like outcome for calls returning two values and an error.
type outcome2[T, U any] struct {
	v   T
	u   U
	err error
}

func try2[T, U any](v T, u U, err error) outcome2[T, U] { return outcome2[T, U]{v, u, err} }

// must returns the values, failing the test if the call failed.
func (o outcome2[T, U]) must(t *testing.T) (T, U) {
	t.Helper()
	if o.err != nil {
		t.Fatalf("unexpected error: %v", o.err)
	}
	return o.v, o.u
}

// ok fails the test if err is not nil.
func ok(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
}

// wantErr fails the test unless errors.Is(err, target).
func wantErr(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Errorf("%s: got error %v, want one wrapping %v", what, err, target)
	}
}

// eventually polls cond until it holds, failing after waitLimit.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("still not %s after %v", what, waitLimit)
		}
		select {
		case <-tick.C:
		case <-t.Context().Done():
			t.Fatalf("test ended while waiting until %s", what)
		}
	}
}

// readResult is the outcome of a read run in the background.
type readResult struct {
	entries []store.Entry
	err     error
	took    time.Duration
}

// background runs read in a goroutine; the test must receive its result
// (with await) so that the goroutine never outlives it.
func background(read func() ([]store.Entry, error)) <-chan readResult {
	ch := make(chan readResult, 1)
	go func() {
		start := time.Now()
		entries, err := read()
		ch <- readResult{entries, err, time.Since(start)}
	}()
	return ch
}

// await receives a background read's result, failing if it takes longer
// than a blocking read would have blocked.
func await(t *testing.T, ch <-chan readResult) readResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(longBlock + waitLimit):
		t.Fatalf("blocked read did not return")
		return readResult{}
	}
}

// payloads returns n distinct payloads "<prefix>-<i>".
func payloads(prefix string, n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = fmt.Appendf(nil, "%s-%d", prefix, i)
	}
	return out
}

// checkEntries fails unless got holds exactly ids with payloads, in order.
func checkEntries(t *testing.T, got []store.Entry, ids []string, payloads [][]byte) {
	t.Helper()
	if len(got) != len(ids) {
		t.Fatalf("got %d entries %v, want %d with ids %v", len(got), entryIDs(got), len(ids), ids)
	}
	for i, e := range got {
		if e.ID != ids[i] || !bytes.Equal(e.Payload, payloads[i]) {
			t.Fatalf("entry %d = {%s %q}, want {%s %q}", i, e.ID, e.Payload, ids[i], payloads[i])
		}
	}
}

func entryIDs(es []store.Entry) []string {
	ids := make([]string, len(es))
	for i, e := range es {
		ids[i] = e.ID
	}
	return ids
}

// checkIncreasing fails unless ids are valid stream ids in strictly
// increasing order.
func checkIncreasing(t *testing.T, ids []string) {
	t.Helper()
	for i, id := range ids {
		if _, _, err := store.ParseID(id); err != nil {
			t.Fatalf("id %d: %v", i, err)
		}
		if i > 0 && store.CompareIDs(ids[i-1], id) >= 0 {
			t.Fatalf("ids not strictly increasing at %d: %s then %s", i, ids[i-1], id)
		}
	}
}

// checkRetained fails unless a stream capped at maxLen that was appended
// ids kept between maxLen and the contract's approximate bound of entries,
// and returns how many it kept.
func checkRetained(t *testing.T, what string, n int, maxLen int64, appended int) int {
	t.Helper()
	if int64(n) < maxLen || int64(n) > 2*maxLen+100 || n > appended {
		t.Fatalf("%s kept %d of %d entries, want between MaxLen=%d and 2*MaxLen+100", what, n, appended, maxLen)
	}
	return n
}

// waitBlocked waits until n reads of the backend are blocked.
func (e *env) waitBlocked(t *testing.T, n int) {
	t.Helper()
	eventually(t, fmt.Sprintf("%d blocked read(s)", n), func() bool { return e.opts.BlockedReads(e.b) >= n })
}
