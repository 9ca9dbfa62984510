package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/streamerd/streamer/client"
	"github.com/streamerd/streamer/internal/testwait"
	"github.com/streamerd/streamer/match"
	streamerv1 "github.com/streamerd/streamer/proto/streamer/v1"
)

// fakeUpstream records calls; Subscribe waits for gate (when set) and
// returns refuse's error.
type fakeUpstream struct {
	mu     sync.Mutex
	subs   []string
	unsubs []string
	gate   chan struct{}
	refuse error
}

func (f *fakeUpstream) Subscribe(ctx context.Context, s client.Subscription) error {
	f.mu.Lock()
	f.subs = append(f.subs, s.ID)
	gate, refuse := f.gate, f.refuse
	f.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return refuse
}

func (f *fakeUpstream) Unsubscribe(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.unsubs = append(f.unsubs, id)
	return nil
}

func (f *fakeUpstream) Deliveries() <-chan client.Delivery { return nil }
func (f *fakeUpstream) Err() error                         { return nil }
func (f *fakeUpstream) Ready() error                       { return nil }

func (f *fakeUpstream) calls() (subs, unsubs []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.subs), slices.Clone(f.unsubs)
}

func newTestHub(t *testing.T, up Upstream) *hub {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return newHub(ctx, up, time.Second, 1<<20, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

func testSession(h *hub, transport string) *session {
	s := newSession(transport, Identity{Tenant: "t"}, 16, 1<<20, new(atomic.Uint64))
	h.addSession(s)
	return s
}

// drain returns the messages queued for s.
func drain(t *testing.T, s *session) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, f := range s.take(nil) {
		var m map[string]any
		if err := json.Unmarshal(f.appendTo(nil), &m); err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

func subReq(id string) subscribeRequest {
	return subscribeRequest{id: id, collection: "c"}
}

func TestHubRefusalReachesEveryWaiter(t *testing.T) {
	up := &fakeUpstream{gate: make(chan struct{}), refuse: &client.SubscribeError{
		Code: streamerv1.ErrorCode_ERROR_CODE_TOO_LARGE, Message: "node limit"}}
	h := newTestHub(t, up)
	a, b := testSession(h, transportWS), testSession(h, transportWS)
	errs := make(chan *protoError, 2)
	go func() { errs <- h.subscribe(context.Background(), a, subReq("x"), "k", nil, 10) }()
	waitUntil(t, func() bool { subs, _ := up.calls(); return len(subs) == 1 })
	go func() { errs <- h.subscribe(context.Background(), b, subReq("y"), "k", nil, 10) }()
	waitUntil(t, func() bool { h.mu.Lock(); defer h.mu.Unlock(); return h.byKey["k"] != nil && h.byKey["k"].refs == 2 })
	close(up.gate)
	for range 2 {
		if e := <-errs; e == nil || e.code != CodeTooLarge || e.message != "node limit" || (e.id != "x" && e.id != "y") {
			t.Fatalf("got %+v, want too_large for its own id", e)
		}
	}
	subs, unsubs := up.calls()
	if st := h.stats(); st.upstreamSubs != 0 || st.clientSubs != 0 || len(subs) != 1 || len(unsubs) != 0 {
		t.Fatalf("after a refusal: %+v, subscribes %v, unsubscribes %v", st, subs, unsubs)
	}
}

func TestHubWaiterGivesUp(t *testing.T) {
	up := &fakeUpstream{gate: make(chan struct{})}
	h := newTestHub(t, up)
	a, b := testSession(h, transportWS), testSession(h, transportWS)
	done := make(chan *protoError, 1)
	go func() { done <- h.subscribe(context.Background(), a, subReq("x"), "k", nil, 10) }()
	waitUntil(t, func() bool { subs, _ := up.calls(); return len(subs) == 1 })
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if e := h.subscribe(ctx, b, subReq("y"), "k", nil, 10); e == nil || e.code != CodeUnavailable {
		t.Fatalf("cancelled waiter got %+v", e)
	}
	close(up.gate)
	if e := <-done; e != nil {
		t.Fatalf("creator got %+v", e)
	}
	if st := h.stats(); st.upstreamSubs != 1 || st.clientSubs != 1 {
		t.Fatalf("stats %+v, want the creator's subscription alone", st)
	}
	if e := h.unsubscribe(a, "x"); e != nil {
		t.Fatal(e)
	}
	if _, unsubs := up.calls(); !slices.Equal(unsubs, []string{"u1"}) {
		t.Fatalf("unsubscribes %v", unsubs)
	}
}

func TestHubTimeoutIsUnavailable(t *testing.T) {
	up := &fakeUpstream{gate: make(chan struct{})} // never answers
	h := newTestHub(t, up)
	h.timeout = 10 * time.Millisecond
	e := h.subscribe(context.Background(), testSession(h, transportWS), subReq("x"), "k", nil, 10)
	if e == nil || e.code != CodeUnavailable {
		t.Fatalf("got %+v", e)
	}
	// It may have become active on the node: it is unsubscribed.
	if _, unsubs := up.calls(); !slices.Equal(unsubs, []string{"u1"}) {
		t.Fatalf("unsubscribes %v", unsubs)
	}
}

func TestHubResyncAndDrop(t *testing.T) {
	up := &fakeUpstream{}
	h := newTestHub(t, up)
	ws, sse, idle := testSession(h, transportWS), testSession(h, transportSSE), testSession(h, transportWS)
	for _, c := range []struct {
		s   *session
		id  string
		key string
	}{{ws, "a", "k1"}, {ws, "b", "k2"}, {sse, "sse", "k1"}} {
		if e := h.subscribe(context.Background(), c.s, subReq(c.id), c.key, nil, 10); e != nil {
			t.Fatal(e)
		}
	}
	drain(t, ws)
	drain(t, sse)
	h.deliver(client.Delivery{Matches: []client.Match{{
		Event:     &streamerv1.ChangeEvent{EventId: "e1", Collection: "c", DocumentId: "d", Operation: streamerv1.Operation_OPERATION_CREATE},
		Operation: streamerv1.Operation_OPERATION_CREATE, SubscriptionIDs: []string{"u1", "u2"},
	}}})
	got := drain(t, ws)
	if len(got) != 1 || got[0]["type"] != "event" || len(got[0]["subs"].([]any)) != 2 {
		t.Fatalf("one event matching two upstream subscriptions of one connection: %v", got)
	}
	drain(t, sse)
	if h.ring.len() != 2 { // one per upstream subscription: SSE and WebSocket clients both resume
		t.Fatalf("the event is not in the resume buffer once per upstream subscription (%d entries)", h.ring.len())
	}

	h.deliver(client.Delivery{Resync: &client.Resync{Reason: "outbox overflow"}})
	for _, s := range []*session{ws, sse} {
		if got := drain(t, s); len(got) != 1 || got[0]["type"] != "resync" || got[0]["reason"] != "outbox overflow" {
			t.Fatalf("resync: %v", got)
		}
	}
	if got := drain(t, idle); len(got) != 0 {
		t.Fatalf("a connection without subscriptions got %v", got)
	}
	if h.ring.len() != 0 {
		t.Fatal("the resume buffer survived a resync")
	}

	h.deliver(client.Delivery{Dropped: &client.SubscribeError{SubscriptionID: "u1", Code: streamerv1.ErrorCode_ERROR_CODE_COST_LIMIT, Message: "ran over the cost limit"}})
	if got := drain(t, ws); len(got) != 1 || got[0]["type"] != "error" || got[0]["id"] != "a" || got[0]["code"] != CodeCostLimit ||
		!strings.Contains(fmt.Sprint(got[0]["message"]), "ran over the cost limit") {
		t.Fatalf("dropped: %v", got)
	}
	f := sse.take(nil)
	if len(f) != 1 || !f[0].final {
		t.Fatalf("the SSE stream of a dropped subscription must end after the error: %+v", f)
	}
	if st := h.stats(); st.clientSubs != 1 || st.upstreamSubs != 1 {
		t.Fatalf("stats %+v, want only b left", st)
	}
	if _, unsubs := up.calls(); len(unsubs) != 0 {
		t.Fatalf("a dropped subscription was unsubscribed: %v", unsubs)
	}
}

func TestHubReplaceAndLimit(t *testing.T) {
	up := &fakeUpstream{}
	h := newTestHub(t, up)
	s := testSession(h, transportWS)
	ctx := context.Background()
	if e := h.subscribe(ctx, s, subReq("a"), "k1", nil, 2); e != nil {
		t.Fatal(e)
	}
	if e := h.subscribe(ctx, s, subReq("a"), "k1", nil, 2); e != nil {
		t.Fatal(e)
	}
	if st := h.stats(); st.clientSubs != 1 || st.upstreamSubs != 1 {
		t.Fatalf("same subscription again: %+v", st)
	}
	if e := h.subscribe(ctx, s, subReq("a"), "k2", nil, 2); e != nil {
		t.Fatal(e)
	}
	if st := h.stats(); st.clientSubs != 1 || st.upstreamSubs != 1 {
		t.Fatalf("replaced by another criterion: %+v", st)
	}
	if _, unsubs := up.calls(); !slices.Equal(unsubs, []string{"u1"}) {
		t.Fatalf("the replaced upstream subscription was not removed: %v", unsubs)
	}
	if e := h.subscribe(ctx, s, subReq("b"), "k3", nil, 2); e != nil {
		t.Fatal(e)
	}
	if e := h.subscribe(ctx, s, subReq("c"), "k3", nil, 2); e == nil || e.code != CodeTooManySubscriptions {
		t.Fatalf("third subscription: %+v", e)
	}
	if e := h.subscribe(ctx, s, subReq("b"), "k1", nil, 2); e != nil {
		t.Fatalf("replacing at the limit: %+v", e)
	}
}

func TestCompileKeysAreCanonical(t *testing.T) {
	eng, err := match.NewEngine(match.Config{})
	if err != nil {
		t.Fatal(err)
	}
	key := func(cr match.Criterion) string {
		c, err := eng.Compile(cr)
		if err != nil {
			t.Fatal(err)
		}
		return c.Key()
	}
	a := key(match.Criterion{Filters: []match.Filter{{Field: "x", Op: "==", Value: 1.0}, {Field: "y", Op: ">", Value: 2.0}}})
	b := key(match.Criterion{Filters: []match.Filter{{Field: "y", Op: ">", Value: 2.0}, {Field: "x", Op: "==", Value: 1.0}}})
	if a != b {
		t.Fatalf("reordered filters: %q != %q", a, b)
	}
	if key(match.Criterion{CEL: "doc.a==1.0"}) != key(match.Criterion{CEL: "doc.a == 1.0"}) {
		t.Fatal("CEL spacing changes the key")
	}
	if key(match.Criterion{}) != key(match.Criterion{Filters: []match.Filter{}}) {
		t.Fatal("no criterion and an empty filter list differ")
	}
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	testwait.For(t, "the hub's condition", cond)
}
