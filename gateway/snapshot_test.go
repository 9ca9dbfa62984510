package gateway_test

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"
)

// snapshotIDs reads one snapshot of subscription id (pages, then
// snapshot_end) and returns its document ids and documents.
func (w *wsClient) snapshotIDs(id string) ([]string, map[string]string, msg) {
	w.t.Helper()
	var ids []string
	docs := map[string]string{}
	for page := int32(0); ; page++ {
		m := w.next()
		if m.Type == "snapshot_end" && m.ID == id {
			return ids, docs, m
		}
		if m.Type != "snapshot" || m.ID != id || m.Page != page || m.Collection == "" {
			w.t.Fatalf("got %+v, want page %d of the snapshot of %q", m, page, id)
		}
		for _, d := range m.Docs {
			ids = append(ids, d.ID)
			docs[d.ID] = string(d.Doc)
		}
	}
}

var hotFilter = []map[string]any{{"field": "status", "op": "==", "value": "hot"}}

// TestWebSocketSnapshot: "snapshot": true sends "subscribed", the matching
// documents as they are, "snapshot_end", then only the changes after them.
// A client joining an upstream subscription others already share gets its
// own snapshot; they get no snapshot frame and miss no event.
func TestWebSocketSnapshot(t *testing.T) {
	e := newEnv(t, envOptions{})
	tok := token(t, "acme")
	e.publish(
		event{Tenant: "acme", Collection: "orders", ID: "o2", Op: "create", Doc: json.RawMessage(`{"status":"hot","n":2}`)},
		event{Tenant: "acme", Collection: "orders", ID: "o1", Op: "create", Doc: json.RawMessage(`{"status":"hot","n":1}`)},
		event{Tenant: "acme", Collection: "orders", ID: "o3", Op: "create", Doc: json.RawMessage(`{"status":"cold"}`)},
		event{Tenant: "globex", Collection: "orders", ID: "g1", Op: "create", Doc: json.RawMessage(`{"status":"hot"}`)},
	)
	a := e.dialWS(t, tok)
	a.send(map[string]any{"type": "subscribe", "id": "a", "collection": "orders", "filters": hotFilter, "snapshot": true})
	a.expect("subscribed", "a")
	ids, docs, end := a.snapshotIDs("a")
	if strings.Join(ids, ",") != "o1,o2" || docs["o2"] != `{"status":"hot","n":2}` || end.Documents != 2 || end.More || end.Code != "" {
		t.Fatalf("snapshot %v %v, end %+v", ids, docs, end)
	}

	ev := e.publish(event{Tenant: "acme", Collection: "orders", ID: "o3", Op: "update", Doc: json.RawMessage(`{"status":"hot"}`)})[0]
	if got := a.collectEvent(ev.EventID, "a"); got["a"].ID != "o3" {
		t.Fatalf("change after the snapshot: %+v", got)
	}

	// b shares a's upstream subscription and asks for a snapshot: it gets
	// o3 as of now; a gets no snapshot frame, and both get the next event.
	b := e.dialWS(t, tok)
	b.send(map[string]any{"type": "subscribe", "id": "b", "collection": "orders", "filters": hotFilter, "snapshot": true})
	b.expect("subscribed", "b")
	if ids, docs, _ := b.snapshotIDs("b"); strings.Join(ids, ",") != "o1,o2,o3" || docs["o3"] != `{"status":"hot"}` {
		t.Fatalf("second snapshot %v", ids)
	}
	ev = e.publish(event{Tenant: "acme", Collection: "orders", ID: "o1", Op: "delete"})[0]
	a.collectEvent(ev.EventID, "a")
	b.collectEvent(ev.EventID, "b")
	if v := e.gwMetric("streamer_gateway_upstream_subscriptions"); v != "1" {
		t.Fatalf("upstream subscriptions = %s, want 1 (shared)", v)
	}

	// Without a snapshot on the same connection: subscribed, then events.
	a.send(map[string]any{"type": "subscribe", "id": "a2", "collection": "orders", "filters": hotFilter})
	a.expect("subscribed", "a2")
	ev = e.publish(event{Tenant: "acme", Collection: "orders", ID: "o2", Op: "delete"})[0]
	a.collectEvent(ev.EventID, "a", "a2")
	b.collectEvent(ev.EventID, "b")
}

// TestSnapshotRefusals: after and snapshot together are refused; a node
// without a document source serves the subscription without its snapshot,
// whose end (Syntrix: an error snapshot_failed) says why.
func TestSnapshotRefusals(t *testing.T) {
	e := newEnv(t, envOptions{noDocuments: true})
	w := e.dialWS(t, token(t, "acme"))
	w.send(map[string]any{"type": "subscribe", "id": "x", "collection": "orders", "snapshot": true, "after": "ev-1"})
	if m := w.expect("error", "x"); m.Code != "invalid_argument" {
		t.Fatalf("after with snapshot: %+v", m)
	}
	// Without a document source the subscription works without its
	// snapshot, which ends with the node's reason.
	w.send(map[string]any{"type": "subscribe", "id": "y", "collection": "orders", "snapshot": true})
	w.expect("subscribed", "y")
	if m := w.expect("snapshot_end", "y"); m.Code != "snapshot_unavailable" || !strings.Contains(m.Message, "document source") {
		t.Fatalf("without a document source: %+v", m)
	}
	ev := e.publish(event{Tenant: "acme", Collection: "orders", ID: "o1", Op: "create", Doc: json.RawMessage(`{}`)})[0]
	w.collectEvent(ev.EventID, "y")
	w.send(map[string]any{"type": "unsubscribe", "id": "y", "snapshot": true})
	if m := w.expect("error", "y"); m.Code != "bad_message" {
		t.Fatalf("unsubscribe with snapshot: %+v", m)
	}

	// Syntrix's protocol: subscribe_ack, snapshot_failed, then the events.
	c := e.syntrix(t)
	c.auth(token(t, "acme"))
	c.subscribe("s", "orders", nil, true, true)
	if m := c.expect("error", "s"); m.Payload.Code != "snapshot_failed" || !strings.Contains(m.Payload.Message, "document source") {
		t.Fatalf("Syntrix snapshot without a document source: %s", m.raw)
	}
	e.publish(event{Tenant: "acme", Collection: "orders", ID: "o2", Op: "create", Doc: json.RawMessage(`{}`)})
	if got := c.events(1); got[0] != "s create orders/o2" {
		t.Fatalf("after the failed snapshot: %v", got)
	}
}

// TestSSESnapshot: snapshot=1 on /v1/sse sends the snapshot as data
// messages before the events; a reconnect with Last-Event-ID resumes
// instead of sending it again.
func TestSSESnapshot(t *testing.T) {
	e := newEnv(t, envOptions{})
	tok := token(t, "acme")
	e.publish(event{Tenant: "acme", Collection: "orders", ID: "o1", Op: "create", Doc: json.RawMessage(`{"status":"hot"}`)})
	q := url.Values{"collection": {"orders"}, "filters": {`[{"field":"status","op":"==","value":"hot"}]`}, "snapshot": {"1"}}
	s := e.openSSE(t, q, tok, "")
	if m := s.next().data; m.Type != "subscribed" {
		t.Fatalf("first message %+v", m)
	}
	if m := s.next(); m.data.Type != "snapshot" || len(m.data.Docs) != 1 || m.data.Docs[0].ID != "o1" || m.id != "" {
		t.Fatalf("snapshot message %+v", m)
	}
	if m := s.next().data; m.Type != "snapshot_end" || m.Documents != 1 {
		t.Fatalf("end message %+v", m)
	}
	ev := e.publish(event{Tenant: "acme", Collection: "orders", ID: "o2", Op: "create", Doc: json.RawMessage(`{"status":"hot"}`)})[0]
	if m := s.next(); m.data.Type != "event" || m.id != ev.EventID {
		t.Fatalf("event %+v", m)
	}
	s.close()

	r := e.openSSE(t, q, tok, ev.EventID)
	if m := r.next().data; m.Type != "subscribed" {
		t.Fatalf("resumed stream's first message %+v", m)
	}
	ev2 := e.publish(event{Tenant: "acme", Collection: "orders", ID: "o3", Op: "create", Doc: json.RawMessage(`{"status":"hot"}`)})[0]
	if m := r.next(); m.data.Type != "event" || m.id != ev2.EventID {
		t.Fatalf("resumed stream: %+v, want the event %s and no snapshot", m, ev2.EventID)
	}

	if resp, err := trySSE(e.sseURL(url.Values{"collection": {"orders"}, "snapshot": {"yes"}}), tok, ""); err != nil || resp.StatusCode != 400 {
		t.Fatalf("snapshot=yes: %v %v", resp.Status, err)
	}
}
