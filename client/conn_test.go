package client_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/streamerd/streamer/client"
	"github.com/streamerd/streamer/internal/clock"
	"github.com/streamerd/streamer/internal/testproxy"
	"github.com/streamerd/streamer/match"
	streamerv1 "github.com/streamerd/streamer/proto/streamer/v1"
	"github.com/streamerd/streamer/service"
	"github.com/streamerd/streamer/store/memory"
)

const (
	create = streamerv1.Operation_OPERATION_CREATE
	update = streamerv1.Operation_OPERATION_UPDATE
	del    = streamerv1.Operation_OPERATION_DELETE
)

func TestEndToEndExactlyTheMatchingEvents(t *testing.T) {
	// One partition, so that every event is totally ordered and the marker
	// published last proves that nothing else is still on its way.
	n := startNode(t, service.Config{}, memory.Config{Partitions: 1}, nil)
	c := dial(t, n.addr)
	for _, s := range []client.Subscription{
		{ID: "byDoc", Tenant: "t1", Collection: "users", DocumentID: "u1"},
		{ID: "adults", Tenant: "t1", Collection: "users", Filters: []client.Filter{{Field: "age", Op: ">=", Value: 18}}},
		{ID: "paris", Tenant: "t1", Collection: "users", CEL: `doc.city == "Paris"`},
		{ID: "marker", Tenant: "t1", Collection: "markers"},
	} {
		subscribe(t, c, s)
	}
	pub := publisher(t, n.addr)
	publish(t, pub,
		event("e1", "t1", "users", "u1", create, `{"age":10,"city":"Rome"}`, ""),
		event("e2", "t1", "users", "u2", create, `{"age":20,"city":"Paris"}`, ""),
		event("e3", "t2", "users", "u1", create, `{"age":30,"city":"Paris"}`, ""),  // another tenant
		event("e4", "t1", "orders", "u1", create, `{"age":30,"city":"Paris"}`, ""), // another collection
		event("e5", "t1", "users", "u3", create, `{"age":5,"city":"Oslo"}`, ""),    // matches nothing
		event("e6", "t1", "users", "u1", update, `{"age":19,"city":"Rome"}`, `{"age":10,"city":"Rome"}`),
		event("e7", "t1", "users", "u2", update, `{"age":20,"city":"Lyon"}`, `{"age":20,"city":"Paris"}`),
		event("e8", "t2", "users", "u2", del, "", ""), // another tenant's hard delete
		event("e9", "t1", "users", "u1", del, "", ""), // hard delete, no pre-image
		event("mark", "t1", "markers", "m", create, `{}`, ""),
	)
	got := receive(t, c, untilEvent("mark"), nil)

	var lines []string
	for _, m := range got {
		lines = append(lines, describe(m))
	}
	// Matches of one event (one per effective operation) may come in any
	// order; events come in log order.
	slices.SortStableFunc(lines, func(a, b string) int {
		ea, eb := strings.Fields(a)[0], strings.Fields(b)[0]
		if ea == eb {
			return strings.Compare(a, b)
		}
		return 0
	})
	want := []string{
		"e1 create byDoc",
		"e2 create adults,paris",
		"e6 create adults", // entered the result set
		"e6 update byDoc",
		"e7 delete paris", // left the result set
		"e7 update adults",
		"e9 delete adults,byDoc,paris", // hard deletes go to every filter/CEL subscription
		"mark create marker",
	}
	if !slices.Equal(lines, want) {
		t.Errorf("received\n  %s\nwant\n  %s", strings.Join(lines, "\n  "), strings.Join(want, "\n  "))
	}
	if st := c.Stats(); st.Duplicates != 0 || st.Events != uint64(len(want)) {
		t.Errorf("stats %+v", st)
	}
	for _, m := range got {
		if m.Event.GetPosition() == "" {
			t.Errorf("event %s delivered without its log position", m.Event.GetEventId())
		}
	}
}

func TestInvalidSubscriptionsGetPreciseErrors(t *testing.T) {
	n := startNode(t, service.Config{Match: match.Config{MaxCELBytes: 64}}, memory.Config{}, nil)
	c := dial(t, n.addr)
	for _, tc := range []struct {
		name string
		sub  client.Subscription
		code streamerv1.ErrorCode
	}{
		{"unknown filter operator", client.Subscription{Collection: "c", Filters: []client.Filter{{Field: "a", Op: "~=", Value: 1}}},
			streamerv1.ErrorCode_ERROR_CODE_INVALID_FILTER},
		{"empty field path", client.Subscription{Collection: "c", Filters: []client.Filter{{Field: "", Op: "==", Value: 1}}},
			streamerv1.ErrorCode_ERROR_CODE_INVALID_FILTER},
		{"in without a list", client.Subscription{Collection: "c", Filters: []client.Filter{{Field: "a", Op: "in", Value: 1}}},
			streamerv1.ErrorCode_ERROR_CODE_INVALID_FILTER},
		{"CEL syntax error", client.Subscription{Collection: "c", CEL: "doc.a +"}, streamerv1.ErrorCode_ERROR_CODE_INVALID_CEL},
		{"CEL not bool", client.Subscription{Collection: "c", CEL: "doc.a"}, streamerv1.ErrorCode_ERROR_CODE_INVALID_CEL},
		{"CEL too long", client.Subscription{Collection: "c", CEL: "doc.a == '" + strings.Repeat("x", 100) + "'"},
			streamerv1.ErrorCode_ERROR_CODE_TOO_LARGE},
		{"no collection", client.Subscription{}, streamerv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.sub.ID = "bad"
			err := c.Subscribe(context.Background(), tc.sub)
			var se *client.SubscribeError
			if !errors.As(err, &se) || se.Code != tc.code || se.SubscriptionID != "bad" || se.Message == "" {
				t.Fatalf("err = %v, want *SubscribeError with %s and a message", err, tc.code)
			}
			t.Logf("node says: %s", se.Message)
		})
	}
	t.Run("the session stays usable", func(t *testing.T) {
		subscribe(t, c, client.Subscription{ID: "ok", Collection: "c", Filters: []client.Filter{{Field: "a", Op: "in", Value: []any{1, 2}}}})
		publish(t, publisher(t, n.addr), event("e1", "", "c", "d", create, `{"a":2}`, ""))
		if got := receive(t, c, untilEvent("e1"), nil); describe(got[0]) != "e1 create ok" {
			t.Fatalf("got %s", describe(got[0]))
		}
		var se *client.SubscribeError
		if err := c.Unsubscribe(context.Background(), "never-subscribed"); !errors.As(err, &se) ||
			se.Code != streamerv1.ErrorCode_ERROR_CODE_UNKNOWN_SUBSCRIPTION {
			t.Fatalf("Unsubscribe unknown: %v", err)
		}
		if err := c.Unsubscribe(context.Background(), "ok"); err != nil {
			t.Fatal(err)
		}
	})
}

func TestResumeAfterConnectionCutsLosesAndRepeatsNothing(t *testing.T) {
	const total = 2000
	n := startNode(t, service.Config{}, memory.Config{}, nil)
	proxy, err := testproxy.New(n.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proxy.Close() })
	c := dial(t, proxy.Addr())
	subscribe(t, c, client.Subscription{ID: "all", Tenant: "t", Collection: "c"})
	pub := publisher(t, n.addr) // producers do not go through the faulty link

	var received atomic.Int64
	got := make(chan []string, 1)
	go func() {
		var ids []string
		defer func() { got <- ids }()
		timeout := time.After(waitLimit)
		for len(ids) < total+1 {
			select {
			case d, ok := <-c.Deliveries():
				if !ok {
					return
				}
				if d.Resync != nil || d.Dropped != nil {
					ids = append(ids, fmt.Sprintf("unexpected %+v", d))
				}
				for _, m := range d.Matches {
					ids = append(ids, m.Event.GetEventId())
				}
				received.Store(int64(len(ids)))
			case <-timeout:
				return
			}
		}
	}()

	id := func(i int) string { return fmt.Sprintf("e%04d", i) }
	publishRange := func(from, to int) {
		for i := from; i < to; i += 50 {
			var batch []*streamerv1.ChangeEvent
			for j := i; j < min(i+50, to); j++ {
				batch = append(batch, event(id(j), "t", "c", fmt.Sprintf("d%d", j%17), update, fmt.Sprintf(`{"n":%d}`, j), ""))
			}
			publish(t, pub, batch...)
		}
	}
	publishRange(0, 700)
	waitFor(t, "300 events received", func() bool { return received.Load() >= 300 })
	if proxy.Cut() == 0 {
		t.Fatal("first cut: no live connection")
	}
	publishRange(700, 1400) // while the gateway is away
	waitFor(t, "1000 events received", func() bool { return received.Load() >= 1000 })
	if proxy.Cut() == 0 {
		t.Fatal("second cut: no live connection")
	}
	publishRange(1400, total)
	publish(t, pub, event("end", "t", "c", "end", create, `{}`, ""))

	ids := <-got
	want := make([]string, 0, total+1)
	for i := range total {
		want = append(want, id(i))
	}
	want = append(want, "end")
	if !slices.Equal(ids, want) {
		t.Fatalf("received %d events, not the exact sequence of %d; first difference at %s",
			len(ids), len(want), firstDiff(ids, want))
	}
	st := c.Stats()
	if st.Reconnects < 2 {
		t.Errorf("%d reconnects, want at least 2", st.Reconnects)
	}
	t.Logf("stats after two cuts: %+v (proxy accepted %d connections)", st, proxy.Accepted())
}

func TestStalledLinkIsReplaced(t *testing.T) {
	n := startNode(t, service.Config{}, memory.Config{}, nil)
	proxy, err := testproxy.New(n.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proxy.Close() })
	// The Conn's heartbeats and silence watchdog run on a fake clock that
	// the test steps, so that only the stalled link, never a slow machine,
	// makes it give up on a connection.
	const interval = 10 * time.Second
	fc := clock.NewFake(time.Now())
	c := dial(t, proxy.Addr(), client.WithHeartbeatInterval(interval), client.WithClock(fc))
	subscribe(t, c, client.Subscription{ID: "s", Collection: "c"})
	pub := publisher(t, n.addr)
	publish(t, pub, event("e1", "", "c", "d", create, `{}`, ""))
	receive(t, c, untilEvent("e1"), nil)

	// No byte moves, nothing is closed: only the missing heartbeat answers
	// tell. The Conn gives up on the connection and dials a new one.
	proxy.Pause()
	publish(t, pub, event("e2", "", "c", "d", update, `{}`, ""))
	waitFor(t, "a new connection", func() bool {
		fc.Advance(interval / 2) // heartbeats unanswered, the watchdog, the reconnect backoff
		return proxy.Accepted() > 1
	})
	proxy.Resume()
	publish(t, pub, event("e3", "", "c", "d", update, `{}`, ""))
	var ids []string
	for _, m := range receive(t, c, untilEvent("e3"), nil) {
		ids = append(ids, m.Event.GetEventId())
	}
	if !slices.Equal(ids, []string{"e2", "e3"}) {
		t.Fatalf("after the stall got %v, want [e2 e3]", ids)
	}
}

func firstDiff(a, b []string) string {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return fmt.Sprintf("%d (%s vs %s)", i, a[i], b[i])
		}
	}
	return fmt.Sprintf("%d (one is a prefix of the other)", min(len(a), len(b)))
}

func TestResyncWhenTheResumeCursorLeftTheOutbox(t *testing.T) {
	const outboxMax = 4
	n := startNode(t, service.Config{OutboxMaxLen: outboxMax}, memory.Config{Partitions: 1, OutboxMaxLen: outboxMax}, nil)
	proxy, err := testproxy.New(n.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proxy.Close() })
	c := dial(t, proxy.Addr())
	subscribe(t, c, client.Subscription{ID: "all", Collection: "c"})
	pub := publisher(t, n.addr)
	publish(t, pub, event("first", "", "c", "d", create, `{}`, ""))
	var cursor string // of the delivery of "first": where the gateway resumes
	for cursor == "" {
		select {
		case d := <-c.Deliveries():
			if untilEvent("first")(d.Matches) {
				cursor = d.Cursor
			}
		case <-time.After(waitLimit):
			t.Fatal("first was not delivered")
		}
	}

	// The gateway is away (its connection cut, reconnects refused) while
	// more batches than the outbox keeps are routed to it: until the cap
	// has deleted entries after its cursor. (The events of one consumer
	// batch share an outbox entry, so a fixed number of events may not be
	// enough, and a deletion up to the cursor can be its acknowledgement.)
	proxy.Refuse(true)
	proxy.Cut()
	for i := 0; ; i++ {
		if i == 1000 {
			t.Fatal("the outbox did not overflow after 1000 events")
		}
		publish(t, pub, event(fmt.Sprintf("missed%d", i), "", "c", "d", update, `{}`, ""))
		lost, err := n.backend.Outboxes.Lost(context.Background(), c.GatewayID(), cursor)
		if err != nil {
			t.Fatal(err)
		}
		if lost {
			break
		}
	}
	proxy.Refuse(false)

	var resync *client.Resync
	receive(t, c, func([]client.Match) bool { return resync != nil }, func(d client.Delivery) {
		if d.Resync == nil {
			t.Fatalf("unexpected %+v", d)
		}
		resync = d.Resync
	})
	// Deliveries continue after the Resync.
	publish(t, pub, event("after", "", "c", "d", update, `{}`, ""))
	got := receive(t, c, untilEvent("after"), nil)
	t.Logf("resync reason: %s; then %d matches", resync.Reason, len(got))
	if st := c.Stats(); st.Resyncs != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestResyncWhenTheGatewayStopsReading(t *testing.T) {
	const outboxMax = 4
	n := startNode(t, service.Config{OutboxMaxLen: outboxMax}, memory.Config{Partitions: 1, OutboxMaxLen: outboxMax}, nil)
	proxy, err := testproxy.New(n.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proxy.Close() })
	c := dial(t, proxy.Addr(), client.WithDeliveryBuffer(0))
	subscribe(t, c, client.Subscription{ID: "all", Collection: "c"})
	pub := publisher(t, n.addr)

	// The caller reads nothing and its link stalls (a slow gateway): gRPC
	// flow control stops the node's delivery pump once the stream's window
	// and the sockets' buffers are full, and the gateway's outbox overflows
	// its cap. How much those absorb varies (gRPC grows its window with the
	// measured bandwidth), so publish until the node has dropped outbox
	// entries: with the link paused no acknowledgement reaches it, so any
	// deletion is the cap's.
	proxy.Pause()
	doc := fmt.Sprintf(`{"pad":%q}`, strings.Repeat("x", 16<<10))
	events := 0
	for ; ; events++ {
		if events == 5000 {
			t.Fatal("the outbox did not overflow after 5000 events of 16 KiB")
		}
		publish(t, pub, event(fmt.Sprintf("e%04d", events), "", "c", "d", update, doc, ""))
		if events >= 300 {
			lost, err := n.backend.Outboxes.Lost(context.Background(), c.GatewayID(), "0-0")
			if err != nil {
				t.Fatal(err)
			}
			if lost {
				break
			}
		}
	}
	proxy.Resume()
	// Now read. A Resync may still skip a marker published meanwhile (that
	// is what it means), so publish markers until one arrives.
	resyncs, matches := 0, 0
	onResync := func(d client.Delivery) {
		if d.Resync == nil {
			t.Fatalf("unexpected %+v", d)
		}
		resyncs++
	}
	for k := 0; ; k++ {
		if k == 10 {
			t.Fatal("no marker arrived after 10 tries")
		}
		marker, before := fmt.Sprintf("end%d", k), resyncs
		publish(t, pub, event(marker, "", "c", "d", update, `{}`, ""))
		got := receive(t, c, func(ms []client.Match) bool {
			return untilEvent(marker)(ms) || resyncs > before
		}, onResync)
		matches += len(got)
		if untilEvent(marker)(got) {
			break
		}
	}
	if resyncs == 0 {
		t.Fatalf("all %d matches arrived without a Resync: the outbox never overflowed", matches)
	}
	t.Logf("%d matches delivered for %d events, %d resyncs", matches, events+1, resyncs)
}

func TestNodeRestartWithManySubscriptions(t *testing.T) {
	// Thousands of live subscriptions, all lost by the node and
	// re-subscribed by the client (bounded in flight; see
	// TestConnBoundsRequestsInFlight).
	const subs = 3000
	n1 := startNode(t, service.Config{}, memory.Config{}, nil)
	c := dial(t, n1.addr)
	subscribeMany(t, c, subs)
	pub1 := publisher(t, n1.addr)
	publish(t, pub1, event("before", "", "c", "d0", create, `{}`, ""))
	receive(t, c, untilEvent("before"), nil)

	// The node restarts with an empty memory backend: the gateway's
	// subscriptions and outbox are gone.
	n1.stop()
	lis, err := net.Listen("tcp", n1.addr)
	if err != nil {
		t.Fatal(err)
	}
	n2 := startNode(t, service.Config{}, memory.Config{}, lis)
	var resync *client.Resync
	receive(t, c, func([]client.Match) bool { return resync != nil }, func(d client.Delivery) {
		if d.Resync == nil {
			t.Fatalf("unexpected %+v", d)
		}
		resync = d.Resync // handed out once every re-subscribe is answered
	})
	t.Logf("resync after restart: %s", resync.Reason)

	pub2 := publisher(t, n1.addr)
	publish(t, pub2, event("first", "", "c", "d0", update, `{}`, ""), event("middle", "", "c", fmt.Sprintf("d%d", subs/2), update, `{}`, ""),
		event("last", "", "c", fmt.Sprintf("d%d", subs-1), update, `{}`, ""))
	got := receive(t, c, func(ms []client.Match) bool { return len(ms) == 3 }, nil)
	var lines []string
	for _, m := range got {
		lines = append(lines, describe(m))
	}
	want := []string{"first update s0", fmt.Sprintf("middle update s%d", subs/2), fmt.Sprintf("last update s%d", subs-1)}
	if !slices.Equal(lines, want) {
		t.Fatalf("after restart got %q, want %q", lines, want)
	}
	_ = n2
}

// subscribeMany subscribes s<i> to document d<i> of collection c, for i <
// count, from 32 goroutines.
func subscribeMany(t *testing.T, c *client.Conn, count int) {
	t.Helper()
	const workers = 32
	errs := make(chan error, workers)
	for w := range workers {
		go func() {
			var err error
			for i := w; i < count && err == nil; i += workers {
				err = c.Subscribe(context.Background(), client.Subscription{ID: fmt.Sprintf("s%d", i), Collection: "c", DocumentID: fmt.Sprintf("d%d", i)})
			}
			errs <- err
		}()
	}
	for range workers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

func TestUnauthenticated(t *testing.T) {
	n := startNode(t, service.Config{AuthToken: "s3cret"}, memory.Config{}, nil)
	for _, tc := range []struct {
		name string
		opts []client.Option
	}{
		{"no token", nil},
		{"wrong token", []client.Option{client.WithToken("guess")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
			defer cancel()
			_, err := client.Dial(ctx, n.addr, append(tc.opts, client.WithLogger(logger()))...)
			if !errors.Is(err, client.ErrUnauthenticated) {
				t.Fatalf("Dial: %v, want ErrUnauthenticated", err)
			}
			_, err = publisher(t, n.addr, tc.opts...).Publish(ctx, []*streamerv1.ChangeEvent{event("e", "", "c", "d", create, `{}`, "")})
			if !errors.Is(err, client.ErrUnauthenticated) {
				t.Fatalf("Publish: %v, want ErrUnauthenticated", err)
			}
		})
	}
	t.Run("right token", func(t *testing.T) {
		c := dial(t, n.addr, client.WithToken("s3cret"))
		subscribe(t, c, client.Subscription{ID: "s", Collection: "c"})
		publish(t, publisher(t, n.addr, client.WithToken("s3cret")), event("e", "", "c", "d", create, `{}`, ""))
		receive(t, c, untilEvent("e"), nil)
	})
}

func TestInProcessTransport(t *testing.T) {
	p := client.NewInProcess()
	startNode(t, service.Config{}, memory.Config{}, p.Listener())
	c := dial(t, client.InProcessAddr, p.Option())
	subscribe(t, c, client.Subscription{ID: "s", Collection: "c", DocumentID: "d"})
	pub := publisher(t, client.InProcessAddr, p.Option())
	publish(t, pub, event("other", "", "c", "x", create, `{}`, ""), event("e", "", "c", "d", create, `{"a":1}`, ""))
	got := receive(t, c, untilEvent("e"), nil)
	if len(got) != 1 || describe(got[0]) != "e create s" || string(got[0].Event.GetDocument()) != `{"a":1}` {
		t.Fatalf("got %v", got)
	}
}

func TestCloseWaitsForEveryGoroutine(t *testing.T) {
	n := startNode(t, service.Config{}, memory.Config{}, nil)
	pub := publisher(t, n.addr)
	publish(t, pub, event("warmup", "", "c", "d", create, `{}`, "")) // the publisher's connection exists before the snapshot
	ignore := goleak.IgnoreCurrent()

	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	c, err := client.Dial(ctx, n.addr, client.WithLogger(logger()), client.WithDeliveryBuffer(0))
	if err != nil {
		t.Fatal(err)
	}
	subscribe(t, c, client.Subscription{ID: "s", Collection: "c"})
	publish(t, pub, event("e1", "", "c", "d", update, `{}`, ""), event("e2", "", "c", "d", update, `{}`, ""))
	receive(t, c, untilEvent("e1"), nil) // e2 is left in flight
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(c.Err(), client.ErrClosed) {
		t.Errorf("Err() = %v", c.Err())
	}
	for range c.Deliveries() { // closed: the loop ends
	}
	if err := c.Subscribe(ctx, client.Subscription{ID: "t", Collection: "c"}); !errors.Is(err, client.ErrClosed) {
		t.Errorf("Subscribe after Close: %v", err)
	}
	// Close returned: none of the Conn's goroutines is left, and the node's
	// side of the session ends too.
	goleak.VerifyNone(t, ignore)
}

func TestSecondConnWithSameGatewayIDSupersedesTheFirst(t *testing.T) {
	n := startNode(t, service.Config{}, memory.Config{Partitions: 1}, nil)
	first := dial(t, n.addr, client.WithGatewayID("shared"))
	second := dial(t, n.addr, client.WithGatewayID("shared"))
	for range first.Deliveries() { // drained until the Conn gives up
	}
	if err := first.Err(); !errors.Is(err, client.ErrSuperseded) {
		t.Fatalf("first Conn ended with %v, want ErrSuperseded", err)
	}
	// The newer session keeps working.
	subscribe(t, second, client.Subscription{ID: "s", Tenant: "t", Collection: "c"})
}

// TestNodeEndsRunawaySubscription: a subscription the node ends for its CEL
// cost arrives as a Dropped delivery with ERROR_CODE_COST_LIMIT, after the
// matches before it; the Conn's other subscriptions go on.
func TestNodeEndsRunawaySubscription(t *testing.T) {
	n := startNode(t, service.Config{}, memory.Config{Partitions: 1}, nil)
	c := dial(t, n.addr)
	subscribe(t, c, client.Subscription{ID: "bad", Tenant: "t", Collection: "c", CEL: `doc.s + doc.s + doc.s + doc.s + doc.s != ""`})
	subscribe(t, c, client.Subscription{ID: "all", Tenant: "t", Collection: "c"})
	pub := publisher(t, n.addr)
	big := `{"s":"` + strings.Repeat("x", 100_000) + `"}`
	for i := range 3 {
		publish(t, pub, event(fmt.Sprintf("big%d", i), "t", "c", "d", streamerv1.Operation_OPERATION_UPDATE, big, ""))
	}
	publish(t, pub, event("after", "t", "c", "d", streamerv1.Operation_OPERATION_UPDATE, `{"s":"x"}`, ""))
	var dropped []*client.SubscribeError
	// The notice follows the matches of the read batch that ended the
	// subscription: it may come after "after".
	got := receive(t, c, func(ms []client.Match) bool { return untilEvent("after")(ms) && len(dropped) > 0 }, func(d client.Delivery) {
		if d.Dropped == nil {
			t.Fatalf("unexpected %+v", d)
		}
		dropped = append(dropped, d.Dropped)
	})
	var ids []string
	for _, m := range got {
		ids = append(ids, describe(m))
	}
	if want := []string{"big0 update all", "big1 update all", "big2 update all", "after update all"}; !slices.Equal(ids, want) {
		t.Fatalf("matches %q, want %q", ids, want)
	}
	if len(dropped) != 1 || dropped[0].SubscriptionID != "bad" || dropped[0].Code != streamerv1.ErrorCode_ERROR_CODE_COST_LIMIT ||
		!strings.Contains(dropped[0].Message, "--cel-cost-limit") {
		t.Fatalf("dropped = %v, want bad with ERROR_CODE_COST_LIMIT", dropped)
	}
}
