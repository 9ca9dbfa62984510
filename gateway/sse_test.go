package gateway_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/streamerd/streamer/gateway"
	"github.com/streamerd/streamer/internal/clock"
	"github.com/streamerd/streamer/internal/testwait"
)

// expectEvent reads the next SSE event and checks it is the event message
// of eventID, with "id:" set to it.
func (s *sseClient) expectEvent(eventID string) msg {
	s.t.Helper()
	ev := s.next()
	if ev.data.Type != "event" || ev.data.EventID != eventID || ev.id != eventID {
		s.t.Fatalf("got id %q data %s, want the event %s", ev.id, ev.raw, eventID)
	}
	return ev.data
}

func (s *sseClient) expect(typ string) msg {
	s.t.Helper()
	ev := s.next()
	if ev.data.Type != typ {
		s.t.Fatalf("got %s, want a %q message", ev.raw, typ)
	}
	return ev.data
}

func TestSSE(t *testing.T) {
	e := newEnv(t, envOptions{})
	tok := token(t, "acme")
	paid := `[{"field":"status","op":"==","value":"paid"}]`

	t.Run("subscribe, receive, unsubscribe by closing", func(t *testing.T) {
		s := e.openSSE(t, url.Values{"collection": {"orders"}, "filters": {paid}, "id": {"mine"}}, tok, "")
		if m := s.expect("subscribed"); m.ID != "mine" {
			t.Fatalf("subscribed %+v", m)
		}
		evs := e.publish(
			event{Tenant: "acme", Collection: "orders", ID: "o1", Op: "create", Doc: json.RawMessage(`{"status":"new"}`)},
			event{Tenant: "acme", Collection: "orders", ID: "o2", Op: "create", Doc: json.RawMessage("{\n  \"status\": \"paid\"\n}")},
		)
		m := s.expectEvent(evs[1].EventID) // o1 does not match, and would come first
		if m.Op != "create" || m.ID != "o2" || m.Collection != "orders" || m.Tenant != "acme" ||
			len(m.Subs) != 1 || m.Subs[0] != "mine" || m.TS != int64(evs[1].TS) || string(m.Doc) != `{"status":"paid"}` {
			t.Fatalf("event %+v (doc %s)", m, m.Doc)
		}
		if st := e.gw.Stats(); st.SSEConnections != 1 || st.ClientSubscriptions != 1 {
			t.Fatalf("stats %+v", st)
		}
		s.close()
		waitFor(t, "the SSE connection to be gone", func() bool { return e.gw.Stats().SSEConnections == 0 })
	})

	t.Run("every criterion and the access_token parameter", func(t *testing.T) {
		for _, q := range []url.Values{
			{"collection": {"orders"}},
			{"collection": {"orders"}, "doc": {"o3"}},
			{"collection": {"orders"}, "cel": {"doc.total > 10.0"}},
			{"collection": {"orders"}, "filters": {`[]`}},
		} {
			q.Set("access_token", tok)
			s := e.openSSE(t, q, "", "")
			s.expect("subscribed")
			ev := e.publish(event{Tenant: "acme", Collection: "orders", ID: "o3", Op: "update", Doc: json.RawMessage(`{"total":20}`)})[0]
			if m := s.expectEvent(ev.EventID); m.Op != "update" || m.Subs[0] != "sse" {
				t.Fatalf("%v: %+v", q, m)
			}
			s.close()
		}
	})

	t.Run("invalid subscriptions are refused before streaming", func(t *testing.T) {
		// The streams of the subtests before end on the server after their
		// clients closed them: start from none.
		waitFor(t, "the earlier SSE streams gone", func() bool {
			st := e.gw.Stats()
			return st.SSEConnections == 0 && st.ClientSubscriptions == 0
		})
		for _, tc := range []struct {
			name  string
			query url.Values
			code  string
		}{
			{"no collection", url.Values{}, "invalid_argument"},
			{"two criteria", url.Values{"collection": {"c"}, "doc": {"d"}, "cel": {"true"}}, "invalid_argument"},
			{"filters not JSON", url.Values{"collection": {"c"}, "filters": {"status==paid"}}, "invalid_filter"},
			{"unknown operator", url.Values{"collection": {"c"}, "filters": {`[{"field":"a","op":"like","value":"x"}]`}}, "invalid_filter"},
			{"CEL syntax error", url.Values{"collection": {"c"}, "cel": {"doc.a ==="}}, "invalid_cel"},
			{"CEL not boolean", url.Values{"collection": {"c"}, "cel": {`"text"`}}, "invalid_cel"},
			{"empty CEL", url.Values{"collection": {"c"}, "cel": {" "}}, "invalid_cel"},
			{"unknown parameter", url.Values{"collection": {"c"}, "filter": {"[]"}}, "bad_message"},
			{"repeated parameter", url.Values{"collection": {"c", "d"}}, "bad_message"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				resp, err := trySSE(e.sseURL(tc.query), tok, "")
				if err != nil {
					t.Fatal(err)
				}
				checkHTTPError(t, resp, http.StatusBadRequest, tc.code)
			})
		}
		if st := e.gw.Stats(); st.SSEConnections != 0 || st.ClientSubscriptions != 0 {
			t.Fatalf("refused streams left state: %+v", st)
		}
	})
}

func TestSSEResume(t *testing.T) {
	e := newEnv(t, envOptions{cfg: gateway.Config{SSEResumeWindow: time.Minute}})
	tok := token(t, "acme")
	q := url.Values{"collection": {"orders"}, "cel": {`doc.kind == "a"`}}
	ev := func(id string) event {
		return event{Tenant: "acme", Collection: "orders", ID: id, Op: "create", Doc: json.RawMessage(`{"kind":"a"}`)}
	}

	s := e.openSSE(t, q, tok, "")
	s.expect("subscribed")
	first := e.publish(ev("d1"), ev("d2"))
	s.expectEvent(first[0].EventID)
	s.expectEvent(first[1].EventID)
	s.close()
	waitFor(t, "the stream to end", func() bool { return e.gw.Stats().SSEConnections == 0 })
	if st := e.gw.Stats(); st.UpstreamSubscriptions != 1 {
		t.Fatalf("the ended stream's subscription must be held for the resume window: %+v", st)
	}

	// Published while no client is connected: the held subscription
	// still receives them into the resume buffer.
	events0 := e.gw.Stats().Events
	missed := e.publish(ev("d3"), ev("d4"))
	waitFor(t, "the gateway to receive the missed events", func() bool { return e.gw.Stats().Events >= events0+2 })

	var live event // published in the first subtest
	t.Run("Last-Event-ID replays every event after it", func(t *testing.T) {
		s := e.openSSE(t, q, tok, first[0].EventID)
		s.expect("subscribed")
		s.expectEvent(first[1].EventID)
		s.expectEvent(missed[0].EventID)
		s.expectEvent(missed[1].EventID)
		live = e.publish(ev("d5"))[0]
		s.expectEvent(live.EventID)
		s.close()
		if got := e.gwMetric("streamer_gateway_sse_resumes_total"); got != "1" {
			t.Fatalf("resumes = %s", got)
		}
	})

	t.Run("the last_event_id parameter works like the header", func(t *testing.T) {
		q := url.Values{"collection": q["collection"], "cel": q["cel"], "last_event_id": {missed[1].EventID}}
		s := e.openSSE(t, q, tok, "")
		s.expect("subscribed")
		s.expectEvent(live.EventID) // d5, delivered after d4
		s.close()
	})

	t.Run("an unknown Last-Event-ID gets a resync, then live events", func(t *testing.T) {
		s := e.openSSE(t, q, tok, "no-such-event")
		s.expect("subscribed")
		if m := s.expect("resync"); !strings.Contains(m.Reason, "no-such-event") {
			t.Fatalf("resync %+v", m)
		}
		live := e.publish(ev("d6"))[0]
		s.expectEvent(live.EventID)
		s.close()
	})

	t.Run("an event id of another subscription gets a resync", func(t *testing.T) {
		other := url.Values{"collection": {"orders"}}
		s := e.openSSE(t, other, tok, first[0].EventID)
		s.expect("subscribed")
		s.expect("resync")
		s.close()
	})
}

func TestSSEWithoutResumeWindowUnsubscribesAtOnce(t *testing.T) {
	e := newEnv(t, envOptions{cfg: gateway.Config{SSEResumeWindow: -1}})
	s := e.openSSE(t, url.Values{"collection": {"orders"}}, token(t, "acme"), "")
	s.expect("subscribed")
	s.close()
	waitFor(t, "the upstream subscription to go", func() bool {
		st := e.gw.Stats()
		return st.SSEConnections == 0 && st.UpstreamSubscriptions == 0
	})
	waitFor(t, "the node to drop it", func() bool { return e.nodeMetric("streamer_subscriptions_indexed") == "0" })
}

func TestSSEHeldSubscriptionExpires(t *testing.T) {
	const window = time.Minute
	fc := clock.NewFake(time.Now())
	e := newEnv(t, envOptions{cfg: gateway.Config{SSEResumeWindow: window, Clock: fc}})
	s := e.openSSE(t, url.Values{"collection": {"orders"}}, token(t, "acme"), "")
	s.expect("subscribed")
	s.close()
	waitFor(t, "the stream closed", func() bool { return e.gw.Stats().SSEConnections == 0 })
	fc.Advance(window - time.Second)
	if err := fc.WaitDelivered(testwait.Timeout); err != nil {
		t.Fatal(err)
	}
	if n := e.gw.Stats().UpstreamSubscriptions; n != 1 {
		t.Fatalf("%d upstream subscriptions before the resume window ended, want the held one", n)
	}
	waitFor(t, "the held upstream subscription to expire", func() bool {
		fc.Advance(time.Second)
		return e.gw.Stats().UpstreamSubscriptions == 0
	})
}
