package redis_test

import (
	"context"
	"errors"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/streamerd/streamer/internal/redistest"
	"github.com/streamerd/streamer/internal/testwait"
	"github.com/streamerd/streamer/store"
	"github.com/streamerd/streamer/store/redis"
)

// Faults: Close during blocked reads, Redis losing data, Redis killed.

func TestCloseWakesBlockedReadsPromptly(t *testing.T) {
	srv := redistest.Start(t)
	tests := []struct {
		name  string
		owned bool
	}{
		{"client created from the URL", true},
		{"client given in the config", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := redis.Config{}
			var shared *goredis.Client
			if !tt.owned {
				shared = rawClient(t, srv)
				cfg.Client = shared
			}
			b, _ := newBackend(t, srv, cfg)
			ctx := t.Context()
			const block = 30 * time.Second
			errs := make(chan error, 2)
			go func() { _, err := b.Log.Read(ctx, 0, "c", 10, block); errs <- err }()
			go func() { _, err := b.Outboxes.Read(ctx, "g", "", 10, block); errs <- err }()
			waitBlocked(t, srv, 2)
			if err := b.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			for range 2 {
				select {
				case err := <-errs:
					if !errors.Is(err, store.ErrClosed) {
						t.Errorf("blocked read returned %v, want ErrClosed", err)
					}
				case <-time.After(block / 2):
					t.Fatal("blocked read did not return after Close")
				}
			}
			if shared != nil {
				if err := shared.Ping(ctx).Err(); err != nil {
					t.Errorf("Close closed the caller's client: %v", err)
				}
			}
		})
	}
}

func TestConsumerGroupRecreatedAfterDataLoss(t *testing.T) {
	srv := redistest.Start(t)
	raw := rawClient(t, srv)
	ctx := t.Context()
	b, keys := newBackend(t, srv, redis.Config{Partitions: 2})
	if err := raw.Del(ctx, keys.Events(1)).Err(); err != nil { // as after FLUSHALL
		t.Fatal(err)
	}
	if n, err := b.Log.Pending(ctx, 1); err != nil || n != 0 {
		t.Fatalf("Pending of a partition whose stream vanished = %d, %v; want 0, nil", n, err)
	}
	if err := raw.Del(ctx, keys.Events(1)).Err(); err != nil {
		t.Fatal(err)
	}
	ids, err := b.Log.Append(ctx, 1, []byte("a")) // recreates the stream without the group
	if err != nil {
		t.Fatal(err)
	}
	got, err := b.Log.Read(ctx, 1, "c", 0, 0)
	if err != nil || len(got) != 1 || got[0].ID != ids[0] {
		t.Fatalf("Read after the group vanished = %v, %v; want the entry %s", got, err, ids[0])
	}
}

func TestScriptCacheFlushed(t *testing.T) {
	srv := redistest.Start(t)
	raw := rawClient(t, srv)
	ctx := t.Context()
	b, _ := newBackend(t, srv, redis.Config{})
	if err := raw.ScriptFlush(ctx).Err(); err != nil { // as after a restart without persistence
		t.Fatal(err)
	}
	items := []store.OutboxItem{{Gateway: "a", Payload: []byte("1")}, {Gateway: "b", Payload: []byte("2")}, {Gateway: "a", Payload: []byte("3")}}
	ids, err := b.Outboxes.Append(ctx, items) // pipelined EVALSHA, then EVAL
	if err != nil || len(ids) != 3 {
		t.Fatalf("Append after SCRIPT FLUSH = %v, %v", ids, err)
	}
	got, err := b.Outboxes.Read(ctx, "a", "", 0, 0)
	if err != nil || len(got) != 2 || got[0].ID != ids[0] || got[1].ID != ids[2] || string(got[1].Payload) != "3" {
		t.Fatalf("Read(a) = %v, %v; want ids %s, %s", got, err, ids[0], ids[2])
	}

	// The pipelined scripts of the consumer and the ingest path fall back too.
	if err := raw.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	appends := []store.PartitionAppend{{P: 0, Payloads: [][]byte{[]byte("e1")}}, {P: 1, Payloads: [][]byte{[]byte("e2")}}}
	b.Log.AppendMany(ctx, appends)
	for _, a := range appends {
		if a.Err != nil || len(a.IDs) != 1 {
			t.Fatalf("AppendMany after SCRIPT FLUSH: partition %d: %v, %v", a.P, a.IDs, a.Err)
		}
	}
	read, err := b.Log.Read(ctx, 0, "c", 0, 0)
	if err != nil || len(read) != 1 {
		t.Fatalf("Read = %v, %v", read, err)
	}
	if err := raw.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if _, routed, err := b.Router.RouteRead(ctx, 0, "c", []store.OutboxItem{{Gateway: "b", Payload: []byte("4")}}, []string{read[0].ID}, 0, 0); err != nil || !routed {
		t.Fatalf("RouteRead after SCRIPT FLUSH: routed %v, %v", routed, err)
	}
	if n, err := b.Log.Pending(ctx, 0); err != nil || n != 0 {
		t.Errorf("Pending after RouteRead = %d, %v; want 0", n, err)
	}
	if got, err := b.Outboxes.Read(ctx, "b", ids[1], 0, 0); err != nil || len(got) != 1 || string(got[0].Payload) != "4" {
		t.Errorf("outbox b after RouteRead = %v, %v; want the entry 4", got, err)
	}
}

func TestOutboxReadKeepsWaitingAcrossRetire(t *testing.T) {
	srv := redistest.Start(t)
	ctx := t.Context()
	b, _ := newBackend(t, srv, redis.Config{})
	if _, err := b.Outboxes.Append(ctx, []store.OutboxItem{{Gateway: "g"}}); err != nil {
		t.Fatal(err)
	}
	last, err := b.Outboxes.Last(ctx, "g")
	if err != nil {
		t.Fatal(err)
	}
	res := make(chan []store.Entry, 1)
	go func() {
		got, err := b.Outboxes.Read(ctx, "g", last, 0, 10*time.Second)
		if err != nil {
			t.Errorf("Read: %v", err)
		}
		res <- got
	}()
	waitBlocked(t, srv, 1)
	if _, err := b.Outboxes.Retire(ctx, "g", nil); err != nil {
		t.Fatal(err)
	}
	// The read goes on blocking on the retired stream: wait for its next
	// block slice, an XREAD sent after the Retire.
	afterRetire := commandCalls(t, srv, "xread")
	testwait.For(t, "an XREAD after the Retire", func() bool { return commandCalls(t, srv, "xread") > afterRetire })
	waitBlocked(t, srv, 1)
	ids, err := b.Outboxes.Append(ctx, []store.OutboxItem{{Gateway: "g", Payload: []byte("new")}})
	if err != nil {
		t.Fatal(err)
	}
	if got := <-res; len(got) != 1 || got[0].ID != ids[0] {
		t.Errorf("Read across Retire = %v, want the entry %s appended after it", got, ids[0])
	}
}

// TestRedisRestart kills redis-server (AOF on) while the backend is in use:
// calls fail while it is down, work again after the restart without a new
// Backend, and the consumer group, its pending entries and every stream
// survive.
func TestRedisRestart(t *testing.T) {
	srv := redistest.Start(t, redistest.WithAOF())
	ctx := t.Context()
	b, _ := newBackend(t, srv, redis.Config{Partitions: 2})

	before, err := b.Log.Append(ctx, 0, []byte("e0"), []byte("e1"), []byte("e2"), []byte("e3"))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := b.Log.Read(ctx, 0, "old-owner", 2, 0); err != nil || len(got) != 2 {
		t.Fatalf("Read = %v, %v", got, err)
	}
	out, err := b.Outboxes.Append(ctx, []store.OutboxItem{{Gateway: "g", Payload: []byte("o0")}})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Subscriptions.Put(ctx, "g", store.StoredSubscription{ID: "s", Tenant: "t", Partition: 0, Data: []byte("sub")}, time.Minute); err != nil {
		t.Fatal(err)
	}
	blocked := make(chan error, 1)
	go func() { _, err := b.Log.Read(ctx, 1, "c", 10, time.Minute); blocked <- err }()
	waitBlocked(t, srv, 1)

	srv.Kill()
	select {
	case err := <-blocked:
		if err == nil || errors.Is(err, store.ErrClosed) {
			t.Errorf("read blocked while Redis died returned %v, want a connection error", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("read blocked while Redis died did not return")
	}
	down, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := b.Log.Append(down, 0, []byte("lost")); err == nil {
		t.Error("Append succeeded while Redis is down")
	}
	if _, err := b.Leases.Acquire(down, 0, "n", time.Minute); err == nil {
		t.Error("Acquire succeeded while Redis is down")
	}

	srv.Restart()
	var after []string
	testwait.ForState(t, "an Append after the restart", func() (bool, any) {
		after, err = b.Log.Append(ctx, 0, []byte("e4"))
		return err == nil, err
	})
	if n, err := b.Log.Pending(ctx, 0); err != nil || n != 2 {
		t.Errorf("Pending after restart = %d, %v; want 2", n, err)
	}
	got, err := b.Log.Read(ctx, 0, "c", 0, 0)
	if err != nil || len(got) != 3 || got[0].ID != before[2] || got[1].ID != before[3] || got[2].ID != after[0] {
		t.Errorf("Read after restart = %v, %v; want %v then %v", got, err, before[2:], after)
	}
	claimed, err := b.Log.ClaimPending(ctx, 0, "new-owner", 0, 2)
	if err != nil || len(claimed) != 2 || claimed[0].ID != before[0] || claimed[1].ID != before[1] {
		t.Errorf("ClaimPending after restart = %v, %v; want %v", claimed, err, before[:2])
	}
	if entries, err := b.Outboxes.Read(ctx, "g", "", 0, 0); err != nil || len(entries) != 1 || entries[0].ID != out[0] {
		t.Errorf("outbox after restart = %v, %v; want %v", entries, err, out)
	}
	if data, found, err := b.Subscriptions.Get(ctx, "g", "s"); err != nil || !found || string(data) != "sub" {
		t.Errorf("subscription after restart = %q, %v, %v", data, found, err)
	}
	if got, err := b.Log.Read(ctx, 1, "c", 10, 0); err != nil || got != nil {
		t.Errorf("Read of partition 1 after restart = %v, %v; want nothing", got, err)
	}
}
