package storetest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/streamerd/streamer/store"
)

var backendScenarios = []scenario{
	{"close wakes blocked reads", testCloseWakes},
	{"every call fails after close", testCallsAfterClose},
	{"calls with a done context fail", testDoneContext},
}

func testCloseWakes(t *testing.T, e *env) {
	ctx := t.Context()
	logRead := background(func() ([]store.Entry, error) { return e.b.Log.Read(ctx, 0, "a", 10, longBlock) })
	outboxRead := background(func() ([]store.Entry, error) { return e.b.Outboxes.Read(ctx, "g", "", 10, longBlock) })
	e.waitBlocked(t, 2)
	ok(t, e.b.Close())
	wantErr(t, "log Read during Close", await(t, logRead).err, store.ErrClosed)
	wantErr(t, "outbox Read during Close", await(t, outboxRead).err, store.ErrClosed)
	ok(t, e.b.Close())
}

// everyCall calls every contract method once with valid arguments and
// returns their errors by name.
func everyCall(ctx context.Context, b *store.Backend) map[string]error {
	errs := map[string]error{}
	var err error
	record := func(name string) { errs[name] = err }

	_, err = b.Log.Append(ctx, 0, []byte("x"))
	record("Log.Append")
	_, err = b.Log.Read(ctx, 0, "a", 1, 0)
	record("Log.Read")
	err = b.Log.Ack(ctx, 0, "1-1")
	record("Log.Ack")
	_, _, err = b.Router.RouteRead(ctx, 0, "a", []store.OutboxItem{{Gateway: "g"}}, []string{"1-1"}, 1, 0)
	record("Router.RouteRead")
	many := []store.PartitionAppend{{P: 0, Payloads: [][]byte{[]byte("x")}}}
	b.Log.AppendMany(ctx, many)
	err = many[0].Err
	record("Log.AppendMany")
	_, err = b.Log.ClaimPending(ctx, 0, "a", 0, 1)
	record("Log.ClaimPending")
	_, err = b.Log.Pending(ctx, 0)
	record("Log.Pending")
	err = b.Log.DeadLetter(ctx, 0, store.Entry{ID: "1-1"}, "r")
	record("Log.DeadLetter")
	_, err = b.Log.DeadLetters(ctx, 0, 1)
	record("Log.DeadLetters")

	err = b.Subscriptions.Put(ctx, "g", store.StoredSubscription{ID: "s", Tenant: "t", Partition: 0, Data: nil}, longTTL)
	record("Subscriptions.Put")
	_, err = b.Subscriptions.Delete(ctx, "g", "s")
	record("Subscriptions.Delete")
	_, _, err = b.Subscriptions.Get(ctx, "g", "s")
	record("Subscriptions.Get")
	_, err = b.Subscriptions.List(ctx, "g")
	record("Subscriptions.List")
	err = b.Subscriptions.Touch(ctx, "g", longTTL)
	record("Subscriptions.Touch")
	_, err = b.Subscriptions.Live(ctx)
	record("Subscriptions.Live")
	_, err = b.Subscriptions.Expired(ctx, time.Now())
	record("Subscriptions.Expired")
	_, err = b.Subscriptions.Count(ctx, "g")
	record("Subscriptions.Count")
	err = b.Subscriptions.Forget(ctx, "g")
	record("Subscriptions.Forget")

	_, err = b.Outboxes.Append(ctx, []store.OutboxItem{{Gateway: "g"}})
	record("Outboxes.Append")
	_, err = b.Outboxes.Read(ctx, "g", "", 1, 0)
	record("Outboxes.Read")
	_, _, err = b.Outboxes.Fetch(ctx, "g", "", 1, 0)
	record("Outboxes.Fetch")
	err = b.Outboxes.Trim(ctx, "g", "1-1")
	record("Outboxes.Trim")
	_, err = b.Outboxes.Last(ctx, "g")
	record("Outboxes.Last")
	_, err = b.Outboxes.Lost(ctx, "g", "")
	record("Outboxes.Lost")
	_, err = b.Outboxes.Len(ctx, "g")
	record("Outboxes.Len")
	_, err = b.Outboxes.Retire(ctx, "g", nil)
	record("Outboxes.Retire")
	_, err = b.Outboxes.Retired(ctx, "g")
	record("Outboxes.Retired")

	_, err = b.Leases.Acquire(ctx, 0, "A", longTTL)
	record("Leases.Acquire")
	_, err = b.Leases.Renew(ctx, 0, "A", longTTL)
	record("Leases.Renew")
	err = b.Leases.Release(ctx, 0, "A")
	record("Leases.Release")
	_, err = b.Leases.Owner(ctx, 0)
	record("Leases.Owner")

	err = b.Nodes.Heartbeat(ctx, "A", longTTL)
	record("Nodes.Heartbeat")
	_, err = b.Nodes.Live(ctx)
	record("Nodes.Live")
	err = b.Nodes.Remove(ctx, "A")
	record("Nodes.Remove")

	_, err = b.Sessions.Claim(ctx, "g", "A")
	record("Sessions.Claim")
	_, _, err = b.Sessions.Current(ctx, "g")
	record("Sessions.Current")
	err = b.Sessions.Release(ctx, "g", "A", 1)
	record("Sessions.Release")

	err = b.Checkpoints.Save(ctx, "c", []byte("x"))
	record("Checkpoints.Save")
	_, _, err = b.Checkpoints.Load(ctx, "c")
	record("Checkpoints.Load")
	return errs
}

func testCallsAfterClose(t *testing.T, e *env) {
	ctx := t.Context()
	for name, err := range everyCall(ctx, e.b) {
		if err != nil {
			t.Fatalf("%s on an open backend: %v", name, err)
		}
	}
	ok(t, e.b.Close())
	for name, err := range everyCall(ctx, e.b) {
		wantErr(t, name+" after Close", err, store.ErrClosed)
	}
	ok(t, e.b.Close())
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() { _ = e.b.Close() })
	}
	wg.Wait()
}

func testDoneContext(t *testing.T, e *env) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	for name, err := range everyCall(ctx, e.b) {
		wantErr(t, name+" with a canceled context", err, context.Canceled)
	}
	if n := try(e.b.Log.Pending(t.Context(), 0)).must(t); n != 0 {
		t.Errorf("Pending = %d after calls with a canceled context, want 0", n)
	}
}
