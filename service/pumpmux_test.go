package service

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/streamerd/streamer/store"
)

// countingFetcher counts multiplexed reads and the gateways each named.
type countingFetcher struct {
	store.MultiFetcher
	calls      atomic.Int64
	maxSize    atomic.Int64
	maxEntries atomic.Int64 // the most entries one read returned, all outboxes together
}

// newTestPumpMux makes a multiplexer over a fresh Redis backend whose reads
// are counted, and a context that ends with the test or after 30 s.
func newTestPumpMux(t *testing.T) (*store.Backend, *countingFetcher, *pumpMux, context.Context) {
	t.Helper()
	b := redisBackend(t, 4)
	counting := &countingFetcher{MultiFetcher: b.MultiFetch}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return b, counting, newPumpMux(counting, b.Outboxes, pumpReadCount), ctx
}

func (f *countingFetcher) FetchMany(ctx context.Context, fetches []store.OutboxFetch, count int, block time.Duration) error {
	f.calls.Add(1)
	if n := int64(len(fetches)); n > f.maxSize.Load() {
		f.maxSize.Store(n)
	}
	err := f.MultiFetcher.FetchMany(ctx, fetches, count, block)
	var n int64
	for _, fe := range fetches {
		n += int64(len(fe.Entries))
	}
	if n > f.maxEntries.Load() {
		f.maxEntries.Store(n)
	}
	return err
}

// waitStopped waits until m's goroutine has exited (nobody waits in it).
func waitStopped(t *testing.T, m *pumpMux) {
	t.Helper()
	waitFor(t, "the multiplexer to stop once nobody waits", func() bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		return !m.running
	})
}

// pumpClient is a session's pump reduced to its reads: it fetches through
// m, checks order, and records what it got.
type pumpClient struct {
	gateway string
	cursor  string
	req     *pumpReq
	got     []string // payloads, in order
	lost    int
}

func newPumpClient(gateway string) *pumpClient {
	return &pumpClient{gateway: gateway, req: &pumpReq{reply: make(chan pumpReply, 1)}}
}

func (c *pumpClient) fetchOnce(ctx context.Context, m *pumpMux) error {
	entries, lost, err := m.fetch(ctx, c.req, c.gateway, c.cursor)
	if err != nil {
		return err
	}
	if lost {
		c.lost++
	}
	for _, e := range entries {
		if store.CompareIDs(e.ID, c.cursor) <= 0 {
			return fmt.Errorf("%s: entry %s not after cursor %s", c.gateway, e.ID, c.cursor)
		}
		c.cursor = e.ID
		c.got = append(c.got, string(e.Payload))
	}
	return nil
}

// TestPumpMuxDeliversEveryOutboxInOrder: 20 sessions reading through one
// multiplexer get all of their own outboxes' entries, in order, while the
// appends interleave across gateways, and far fewer reads than entries are
// made, naming many gateways at once.
func TestPumpMuxDeliversEveryOutboxInOrder(t *testing.T) {
	b, counting, m, ctx := newTestPumpMux(t)

	const gateways, perGateway = 20, 200 // with a backlog: 20 × 64 > pumpRoundEntries
	clients := make([]*pumpClient, gateways)
	var wg sync.WaitGroup
	errs := make(chan error, gateways)
	for g := range clients {
		c := newPumpClient(fmt.Sprintf("gw%d", g))
		clients[g] = c
		wg.Go(func() {
			for len(c.got) < perGateway {
				if err := c.fetchOnce(ctx, m); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	for i := range perGateway {
		items := make([]store.OutboxItem, 0, gateways)
		for g := range gateways {
			items = append(items, store.OutboxItem{Gateway: fmt.Sprintf("gw%d", g), Payload: fmt.Appendf(nil, "%d", i)})
		}
		if _, err := b.Outboxes.Append(ctx, items); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for _, c := range clients {
		for i, p := range c.got {
			if p != fmt.Sprint(i) {
				t.Fatalf("%s got %q as entry %d", c.gateway, p, i)
			}
		}
		if c.lost != 0 {
			t.Errorf("%s: lost reported %d times", c.gateway, c.lost)
		}
	}
	calls := counting.calls.Load()
	t.Logf("%d entries over %d gateways in %d multiplexed reads (at most %d gateways in one)", gateways*perGateway, gateways, calls, counting.maxSize.Load())
	if calls >= gateways*perGateway/2 {
		t.Errorf("%d reads for %d entries: the reads were not shared", calls, gateways*perGateway)
	}
	if got := counting.maxEntries.Load(); got > pumpRoundEntries {
		t.Errorf("one read returned %d entries, more than pumpRoundEntries (%d)", got, pumpRoundEntries)
	}
	if counting.maxSize.Load() < gateways/2 {
		t.Errorf("no read named more than %d of %d waiting gateways", counting.maxSize.Load(), gateways)
	}
	waitStopped(t, m)
}

// TestPumpMuxSlowSessionDoesNotStallOthers: a session that took entries and
// does not come back (its gateway is slow) does not hold up the next reads
// of the others.
func TestPumpMuxSlowSessionDoesNotStallOthers(t *testing.T) {
	b, _, m, ctx := newTestPumpMux(t)
	slow, fast := newPumpClient("slow"), newPumpClient("fast")

	appendBoth := func(i int) {
		t.Helper()
		if _, err := b.Outboxes.Append(ctx, []store.OutboxItem{
			{Gateway: "slow", Payload: fmt.Appendf(nil, "%d", i)},
			{Gateway: "fast", Payload: fmt.Appendf(nil, "%d", i)},
		}); err != nil {
			t.Fatal(err)
		}
	}
	appendBoth(0)
	slowDone := make(chan error, 1)
	go func() { slowDone <- slow.fetchOnce(ctx, m) }() // takes entry 0, then never reads again
	if err := fast.fetchOnce(ctx, m); err != nil {
		t.Fatal(err)
	}
	if err := <-slowDone; err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 50; i++ {
		appendBoth(i)
		for len(fast.got) <= i {
			if err := fast.fetchOnce(ctx, m); err != nil {
				t.Fatal(err)
			}
		}
	}
	if len(fast.got) != 51 || len(slow.got) != 1 {
		t.Fatalf("fast got %d, slow %d; want 51 and 1", len(fast.got), len(slow.got))
	}
	// The slow session comes back and catches up from its cursor.
	for len(slow.got) < 51 {
		if err := slow.fetchOnce(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
}

// TestPumpMuxBadCursorFailsOnlyItsSession: a malformed cursor makes the
// multiplexed read fail as a whole; the multiplexer then reads each session
// on its own, so that only that session gets the error.
func TestPumpMuxBadCursorFailsOnlyItsSession(t *testing.T) {
	b, _, m, ctx := newTestPumpMux(t)
	if _, err := b.Outboxes.Append(ctx, []store.OutboxItem{{Gateway: "good", Payload: []byte("x")}}); err != nil {
		t.Fatal(err)
	}
	bad := newPumpClient("bad")
	bad.cursor = "not-an-id"
	good := newPumpClient("good")
	badErr := make(chan error, 1)
	go func() { badErr <- bad.fetchOnce(ctx, m) }()
	if err := good.fetchOnce(ctx, m); err != nil {
		t.Fatalf("the good session: %v", err)
	}
	if err := <-badErr; !errors.Is(err, store.ErrBadID) {
		t.Fatalf("the bad session: %v, want ErrBadID", err)
	}
	if len(good.got) != 1 {
		t.Fatalf("good got %v", good.got)
	}
}

// TestPumpMuxAbandonedRequest: a session that ends while waiting returns at
// once, and the multiplexer drops its request and stops.
func TestPumpMuxAbandonedRequest(t *testing.T) {
	b, srv := redisBackendAndServer(t, 4, nil)
	m := newPumpMux(b.MultiFetch, b.Outboxes, pumpReadCount)
	ctx, cancel := context.WithCancel(t.Context())
	c := newPumpClient("gone")
	done := make(chan error, 1)
	go func() { done <- c.fetchOnce(ctx, m) }()
	waitFor(t, "the multiplexer's read blocked in Redis with the request", func() bool {
		n, err := srv.BlockedClients()
		return err == nil && n > 0
	})
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("fetch after cancel: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("fetch did not return after its context was cancelled")
	}
	waitStopped(t, m)
}

// TestPumpMuxBoundsOneRead: with a backlog in every outbox, one read
// returns about pumpRoundEntries entries in all, not pumpReadCount per
// session.
func TestPumpMuxBoundsOneRead(t *testing.T) {
	b, counting, m, ctx := newTestPumpMux(t)
	const gateways, backlog = 20, 100
	for g := range gateways {
		items := make([]store.OutboxItem, backlog)
		for i := range items {
			items[i] = store.OutboxItem{Gateway: fmt.Sprintf("gw%d", g), Payload: fmt.Appendf(nil, "%d", i)}
		}
		if _, err := b.Outboxes.Append(ctx, items); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for g := range gateways {
		c := newPumpClient(fmt.Sprintf("gw%d", g))
		wg.Go(func() {
			<-start
			for len(c.got) < backlog {
				if err := c.fetchOnce(ctx, m); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	close(start)
	wg.Wait()
	if got := counting.maxEntries.Load(); got > pumpRoundEntries || got < pumpRoundEntries/4 {
		t.Errorf("the largest read returned %d entries; want at most pumpRoundEntries (%d), and a backlog read near it", got, pumpRoundEntries)
	}
}
