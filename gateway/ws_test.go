package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/streamerd/streamer/gateway"
)

// collectEvent reads event messages for eventID until the union of their
// subs is want (the node may split one event's subscriptions into several
// matches), checking that nothing else arrives meanwhile. It returns the
// op of each subscription.
func (w *wsClient) collectEvent(eventID string, want ...string) map[string]msg {
	w.t.Helper()
	got := map[string]msg{}
	for len(got) < len(want) {
		m := w.next()
		if m.Type != "event" || m.EventID != eventID {
			w.t.Fatalf("got %+v, want the event %s for %v (so far %v)", m, eventID, want, got)
		}
		for _, s := range m.Subs {
			if !slices.Contains(want, s) {
				w.t.Fatalf("event %s delivered to subscription %q, want only %v", eventID, s, want)
			}
			if _, dup := got[s]; dup {
				w.t.Fatalf("event %s delivered twice to %q", eventID, s)
			}
			got[s] = m
		}
	}
	return got
}

func TestWebSocket(t *testing.T) {
	e := newEnv(t, envOptions{})
	w := e.dialWS(t, token(t, "acme"))
	w.subscribe("all", "orders", nil)
	w.subscribe("doc", "orders", map[string]any{"doc": "o1"})
	w.subscribe("paid", "orders", map[string]any{"filters": []map[string]any{{"field": "status", "op": "==", "value": "paid"}}})
	w.subscribe("big", "orders", map[string]any{"cel": "doc.total > 100.0"})

	t.Run("an event carries every field and all matching subscriptions", func(t *testing.T) {
		w := w.in(t)
		ev := e.publish(event{Tenant: "acme", Collection: "orders", ID: "o1", Op: "create", Doc: json.RawMessage(`{"status":"paid","total":150}`)})[0]
		got := w.collectEvent(ev.EventID, "all", "doc", "paid", "big")
		m := got["all"]
		if m.Op != "create" || m.Collection != "orders" || m.ID != "o1" || m.Tenant != "acme" || m.TS != int64(ev.TS) {
			t.Fatalf("event message %+v does not describe %+v", m, ev)
		}
		var doc map[string]any
		if err := json.Unmarshal(m.Doc, &doc); err != nil || doc["status"] != "paid" || doc["total"] != 150.0 {
			t.Fatalf("doc = %s (%v)", m.Doc, err)
		}
	})

	t.Run("an event matching one subscription names only it", func(t *testing.T) {
		w := w.in(t)
		ev := e.publish(event{Tenant: "acme", Collection: "orders", ID: "o2", Op: "create", Doc: json.RawMessage(`{"status":"new","total":5}`)})[0]
		w.collectEvent(ev.EventID, "all")
	})

	t.Run("op is the effective operation per subscription", func(t *testing.T) {
		w := w.in(t)
		// o1 leaves "paid" (pre-image matched, document does not): a
		// delete for it, an update for the others.
		ev := e.publish(event{Tenant: "acme", Collection: "orders", ID: "o1", Op: "update",
			Before: json.RawMessage(`{"status":"paid","total":150}`), Doc: json.RawMessage(`{"status":"shipped","total":150}`),
			Changed: []string{"status"}})[0]
		got := w.collectEvent(ev.EventID, "all", "doc", "paid", "big")
		for sub, want := range map[string]string{"all": "update", "doc": "update", "paid": "delete", "big": "update"} {
			if got[sub].Op != want {
				t.Errorf("op for %s = %q, want %q", sub, got[sub].Op, want)
			}
		}
	})

	t.Run("a hard delete has a null doc", func(t *testing.T) {
		w := w.in(t)
		ev := e.publish(event{Tenant: "acme", Collection: "orders", ID: "o2", Op: "delete"})[0]
		// Without a pre-image a hard delete goes to every filter/CEL
		// subscription of the collection (over-delivery is safe).
		got := w.collectEvent(ev.EventID, "all", "paid", "big")
		if m := got["all"]; m.Op != "delete" || string(m.Doc) != "null" {
			t.Fatalf("delete message %+v, want op delete and doc null", m)
		}
	})

	t.Run("unsubscribe stops the subscription's events", func(t *testing.T) {
		w := w.in(t)
		w.send(map[string]any{"type": "unsubscribe", "id": "paid"})
		w.expect("unsubscribed", "paid")
		// Matches "all" and (were it active) "paid": only "all" is named.
		ev := e.publish(event{Tenant: "acme", Collection: "orders", ID: "o3", Op: "create", Doc: json.RawMessage(`{"status":"paid","total":1}`)})[0]
		w.collectEvent(ev.EventID, "all")
		w.send(map[string]any{"type": "unsubscribe", "id": "paid"})
		if m := w.expect("error", "paid"); m.Code != "unknown_subscription" {
			t.Fatalf("second unsubscribe: %+v", m)
		}
	})

	t.Run("subscribing again with an active id replaces it", func(t *testing.T) {
		w := w.in(t)
		w.subscribe("doc", "orders", map[string]any{"doc": "o4"})
		ev := e.publish(
			event{Tenant: "acme", Collection: "orders", ID: "o1", Op: "update", Doc: json.RawMessage(`{"total":1}`)},
			event{Tenant: "acme", Collection: "orders", ID: "o4", Op: "create", Doc: json.RawMessage(`{"total":2}`)},
		)
		w.collectEvent(ev[0].EventID, "all")
		w.collectEvent(ev[1].EventID, "all", "doc")
	})

	t.Run("invalid messages get errors and the connection stays usable", func(t *testing.T) {
		w := w.in(t)
		for _, tc := range []struct {
			name, message, id, code string
		}{
			{"not JSON", `{"type":`, "", "bad_message"},
			{"two objects", `{"type":"unsubscribe","id":"x"}{}`, "", "bad_message"},
			{"no type", `{"id":"x"}`, "x", "bad_message"},
			{"unknown type", `{"type":"publish","id":"x"}`, "x", "bad_message"},
			{"unknown field", `{"type":"subscribe","id":"x","collection":"c","filter":[]}`, "", "bad_message"},
			{"no id", `{"type":"subscribe","collection":"c"}`, "", "invalid_argument"},
			{"no collection", `{"type":"subscribe","id":"x"}`, "x", "invalid_argument"},
			{"two criteria", `{"type":"subscribe","id":"x","collection":"c","doc":"d","cel":"true"}`, "x", "invalid_argument"},
			{"empty doc", `{"type":"subscribe","id":"x","collection":"c","doc":""}`, "x", "invalid_argument"},
			{"unknown operator", `{"type":"subscribe","id":"x","collection":"c","filters":[{"field":"a","op":"~","value":1}]}`, "x", "invalid_filter"},
			{"filters not a list", `{"type":"subscribe","id":"x","collection":"c","filters":{"field":"a"}}`, "x", "invalid_filter"},
			{"in without a list", `{"type":"subscribe","id":"x","collection":"c","filters":[{"field":"a","op":"in","value":1}]}`, "x", "invalid_filter"},
			{"CEL syntax error", `{"type":"subscribe","id":"x","collection":"c","cel":"doc.a >"}`, "x", "invalid_cel"},
			{"CEL not boolean", `{"type":"subscribe","id":"x","collection":"c","cel":"doc.a + 1"}`, "x", "invalid_cel"},
			{"CEL too long", `{"type":"subscribe","id":"x","collection":"c","cel":"` + strings.Repeat("true && ", 1000) + `true"}`, "x", "too_large"},
			{"unsubscribe with a criterion", `{"type":"unsubscribe","id":"x","doc":"d"}`, "x", "bad_message"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				w := w.in(t)
				w.send(tc.message)
				m := w.expect("error", "")
				if m.Code != tc.code || m.ID != tc.id || m.Message == "" {
					t.Fatalf("got %+v, want code %q id %q and a message", m, tc.code, tc.id)
				}
			})
		}
		ctx := t.Context()
		if err := w.c.Write(ctx, websocket.MessageBinary, []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
		if m := w.expect("error", ""); m.Code != "bad_message" {
			t.Fatalf("binary message: %+v", m)
		}
		ev := e.publish(event{Tenant: "acme", Collection: "orders", ID: "o5", Op: "create", Doc: json.RawMessage(`{}`)})[0]
		w.collectEvent(ev.EventID, "all")
	})

	t.Run("connections and messages are counted", func(t *testing.T) {
		if got := e.gwMetric(`streamer_gateway_connections{transport="ws"}`); got != "1" {
			t.Fatalf("ws connections = %s", got)
		}
		if st := e.gw.Stats(); st.MessagesSent == 0 || st.ClientSubscriptions != 3 || st.UpstreamSubscriptions != 3 {
			t.Fatalf("stats %+v", st)
		}
	})

	t.Run("closing the connection removes its subscriptions upstream", func(t *testing.T) {
		w := w.in(t)
		_ = w.c.Close(websocket.StatusNormalClosure, "bye")
		waitFor(t, "upstream subscriptions to go", func() bool {
			st := e.gw.Stats()
			return st.WSConnections == 0 && st.ClientSubscriptions == 0 && st.UpstreamSubscriptions == 0
		})
		waitFor(t, "the node to drop the subscriptions", func() bool {
			return e.nodeMetric("streamer_subscriptions_indexed") == "0"
		})
	})
}

func TestWebSocketShutdownClosesWithReason(t *testing.T) {
	e := newEnv(t, envOptions{})
	w := e.dialWS(t, token(t, "acme"))
	w.subscribe("s", "orders", nil)
	read := make(chan error, 1)
	go func() {
		_, err := w.read()
		read <- err
	}()
	// Shut the gateway down as the test cleanup would, but now; Run
	// returns once the connection is closed.
	e.stopGateway(t)
	if err := <-read; websocket.CloseStatus(err) != websocket.StatusGoingAway {
		t.Fatalf("read after shutdown: %v, want close 1001", err)
	}
}

// TestWebSocketResume: a WebSocket client that lost its connection
// subscribes again with "after", the event id of the last event it got,
// and receives what it missed, then live events; an unknown id gets a
// resync. The lost connection's subscription was held meanwhile; a clean
// close is not held.
func TestWebSocketResume(t *testing.T) {
	e := newEnv(t, envOptions{cfg: gateway.Config{SSEResumeWindow: time.Minute}})
	tok := token(t, "acme")
	ev := func(id string) event {
		return event{Tenant: "acme", Collection: "orders", ID: id, Op: "create", Doc: json.RawMessage(`{"kind":"a"}`)}
	}
	sub := func(w *wsClient, after string) {
		m := map[string]any{"type": "subscribe", "id": "s", "collection": "orders", "cel": `doc.kind == "a"`}
		if after != "" {
			m["after"] = after
		}
		w.send(m)
		w.expect("subscribed", "s")
	}

	w := e.dialWS(t, tok)
	sub(w, "")
	first := e.publish(ev("d1"), ev("d2"))
	w.collectEvent(first[0].EventID, "s")
	w.collectEvent(first[1].EventID, "s")
	_ = w.c.CloseNow() // the connection is lost: no close frame
	waitFor(t, "the connection to end", func() bool { return e.gw.Stats().WSConnections == 0 })
	if st := e.gw.Stats(); st.UpstreamSubscriptions != 1 {
		t.Fatalf("the lost connection's subscription must be held for the resume window: %+v", st)
	}
	events0 := e.gw.Stats().Events
	missed := e.publish(ev("d3"), ev("d4"))
	waitFor(t, "the gateway to receive the missed events", func() bool { return e.gw.Stats().Events >= events0+2 })

	w = e.dialWS(t, tok)
	sub(w, first[0].EventID)
	w.collectEvent(first[1].EventID, "s")
	w.collectEvent(missed[0].EventID, "s")
	w.collectEvent(missed[1].EventID, "s")
	live := e.publish(ev("d5"))[0]
	w.collectEvent(live.EventID, "s")
	if got := e.gwMetric("streamer_gateway_sse_resumes_total"); got != "1" {
		t.Fatalf("resumes = %s", got)
	}

	t.Run("an unknown event id gets a resync, then live events", func(t *testing.T) {
		w := e.dialWS(t, tok).in(t)
		sub(w, "no-such-event")
		if m := w.next(); m.Type != "resync" || !strings.Contains(m.Reason, "no-such-event") {
			t.Fatalf("got %+v, want a resync naming the id", m)
		}
		live := e.publish(ev("d6"))[0]
		w.collectEvent(live.EventID, "s")
	})

	t.Run("an empty after is refused", func(t *testing.T) {
		w := e.dialWS(t, tok).in(t)
		w.send(map[string]any{"type": "subscribe", "id": "s", "collection": "orders", "after": ""})
		if m := w.expect("error", "s"); m.Code != gateway.CodeInvalidArgument {
			t.Fatalf("got %+v", m)
		}
	})

	t.Run("a clean close is not held", func(t *testing.T) {
		w := e.dialWS(t, tok).in(t)
		w.send(map[string]any{"type": "subscribe", "id": "x", "collection": "invoices"})
		w.expect("subscribed", "x")
		before := e.gw.Stats().UpstreamSubscriptions
		_ = w.c.Close(websocket.StatusNormalClosure, "bye")
		waitFor(t, "its upstream subscription to go", func() bool { return e.gw.Stats().UpstreamSubscriptions == before-1 })
	})
}

// TestWebSocketCompression: with Compression the gateway accepts
// permessage-deflate, and a large event arrives whole; without it the
// extension is not negotiated.
func TestWebSocketCompression(t *testing.T) {
	for _, on := range []bool{false, true} {
		t.Run(fmt.Sprint(on), func(t *testing.T) {
			e := newEnv(t, envOptions{cfg: gateway.Config{Compression: on}})
			ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
			defer cancel()
			u := "ws" + strings.TrimPrefix(e.url, "http") + "/v1/ws"
			c, resp, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + token(t, "acme")}},
				CompressionMode: websocket.CompressionNoContextTakeover})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = c.CloseNow() })
			if got := strings.Contains(resp.Header.Get("Sec-WebSocket-Extensions"), "permessage-deflate"); got != on {
				t.Fatalf("permessage-deflate negotiated: %v, want %v (%q)", got, on, resp.Header.Get("Sec-WebSocket-Extensions"))
			}
			w := &wsClient{t: t, c: c}
			w.subscribe("s", "orders", nil)
			big := strings.Repeat("compressible ", 500)
			ev := e.publish(event{Tenant: "acme", Collection: "orders", ID: "d", Op: "create", Doc: json.RawMessage(`{"text":"` + big + `"}`)})[0]
			m := w.collectEvent(ev.EventID, "s")["s"]
			if !strings.Contains(string(m.Doc), big) {
				t.Fatalf("event document %d bytes, want the %d-byte text", len(m.Doc), len(big))
			}
		})
	}
}

// TestWebSocketKeepAlive: the gateway pings every KeepAlive; a client that
// answers (it reads, so its library sends pongs) stays, one that does not
// is disconnected.
func TestWebSocketKeepAlive(t *testing.T) {
	e := newEnv(t, envOptions{cfg: gateway.Config{KeepAlive: 100 * time.Millisecond}})
	tok := token(t, "acme")
	live := e.dialWS(t, tok)
	live.subscribe("s", "orders", nil)
	msgs := make(chan msg, 16)
	go func() {
		for {
			m, err := live.read()
			if err != nil {
				close(msgs)
				return
			}
			msgs <- m
		}
	}()
	mute := e.dialWS(t, tok) // never reads: never answers a ping
	_ = mute
	waitFor(t, "the silent client to be disconnected", func() bool { return e.gw.Stats().WSConnections == 1 })
	ev := e.publish(event{Tenant: "acme", Collection: "orders", ID: "d", Op: "create", Doc: json.RawMessage(`{}`)})[0]
	for m := range msgs {
		if m.Type == "event" && m.EventID == ev.EventID {
			return
		}
	}
	t.Fatal("the answering client was disconnected")
}
