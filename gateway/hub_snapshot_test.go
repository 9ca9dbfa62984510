package gateway

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/streamerd/streamer/client"
	streamerv1 "github.com/streamerd/streamer/proto/streamer/v1"
)

func snapReq(id string) subscribeRequest {
	return subscribeRequest{id: id, collection: "c", snapshot: true}
}

// page is snapshot page n of upstream subscription up, with one document
// per id, the last one when end.
func page(up string, n int32, end bool, ids ...string) client.Delivery {
	p := &streamerv1.SnapshotPage{SubscriptionId: up, Page: n}
	for _, id := range ids {
		p.Documents = append(p.Documents, &streamerv1.SnapshotDocument{DocumentId: id, Document: []byte(`{}`)})
	}
	if end {
		p.End = &streamerv1.SnapshotEnd{Documents: int32(len(ids)), Position: "1-1"}
	}
	return client.Delivery{Snapshot: p}
}

// kinds renders messages as "type:id" (snapshot: "snapshot:id:p<page>",
// event: "event:<doc id>").
func kinds(ms []map[string]any) string {
	var out []string
	for _, m := range ms {
		switch m["type"] {
		case "snapshot":
			out = append(out, fmt.Sprintf("snapshot:%v:p%v", m["id"], m["page"]))
		case "event":
			out = append(out, fmt.Sprintf("event:%v", m["id"]))
		default:
			out = append(out, fmt.Sprintf("%v:%v", m["type"], m["id"]))
		}
	}
	return strings.Join(out, " ")
}

func hubEvent(up, docID string) client.Delivery {
	return client.Delivery{Matches: []client.Match{{
		Event:           &streamerv1.ChangeEvent{EventId: "e-" + docID, Collection: "c", DocumentId: docID, Document: []byte(`{}`)},
		Operation:       streamerv1.Operation_OPERATION_UPDATE,
		SubscriptionIDs: []string{up},
	}}}
}

// TestHubSnapshotBeforeTheAnswer: the node may deliver a snapshot before
// the client library hands over its answer to Subscribe; the client gets
// "subscribed" first all the same, then the pages, then events. Events
// before the snapshot's first page are not the waiter's; a redelivered
// page is skipped.
func TestHubSnapshotBeforeTheAnswer(t *testing.T) {
	up := &fakeUpstream{gate: make(chan struct{})}
	h := newTestHub(t, up)
	other, s := testSession(h, transportWS), testSession(h, transportWS)
	// other shares the upstream subscription without a snapshot.
	go func() { _ = h.subscribe(context.Background(), other, subReq("o"), "k", nil, 10) }()
	waitUntil(t, func() bool { subs, _ := up.calls(); return len(subs) == 1 })
	close(up.gate)
	waitUntil(t, func() bool { h.mu.Lock(); defer h.mu.Unlock(); return len(h.byKey["k"].members) == 1 })
	up.mu.Lock()
	up.gate = make(chan struct{})
	gate := up.gate
	up.mu.Unlock()

	done := make(chan *protoError, 1)
	go func() { done <- h.subscribe(context.Background(), s, snapReq("x"), "k", nil, 10) }()
	waitUntil(t, func() bool { subs, _ := up.calls(); return len(subs) == 2 }) // the resnapshot, unanswered
	h.deliver(hubEvent("u1", "before"))                                        // before the snapshot's position
	h.deliver(page("u1", 0, false, "a"))
	h.deliver(page("u1", 0, false, "a")) // redelivered
	h.deliver(page("u1", 1, true, "b"))
	h.deliver(hubEvent("u1", "after"))
	close(gate)
	if e := <-done; e != nil {
		t.Fatal(e)
	}
	h.deliver(hubEvent("u1", "later"))
	// "after" follows the snapshot's end: the waiter's, although its
	// subscribe call had not returned yet.
	if got, want := kinds(drain(t, s)), "subscribed:x snapshot:x:p0 snapshot:x:p1 snapshot_end:x event:after event:later"; got != want {
		t.Fatalf("waiter got %s, want %s", got, want)
	}
	if got := kinds(drain(t, other)); got != "subscribed:o event:before event:after event:later" {
		t.Fatalf("the other member got %s", got)
	}
}

// TestHubSnapshotAfterResync: a resync while a snapshot is under way (its
// pages may be lost) asks for a new one; a snapshot that cannot be asked
// for ends with an error and the client gets the changes without it.
func TestHubSnapshotAfterResync(t *testing.T) {
	up := &fakeUpstream{}
	h := newTestHub(t, up)
	s := testSession(h, transportWS)
	if e := h.subscribe(context.Background(), s, snapReq("x"), "k", nil, 10); e != nil {
		t.Fatal(e)
	}
	h.deliver(page("u1", 0, false, "a"))
	h.deliver(client.Delivery{Resync: &client.Resync{Reason: "outbox overflow"}})
	waitUntil(t, func() bool { subs, _ := up.calls(); return len(subs) == 2 }) // asked again
	h.deliver(page("u1", 1, true, "b"))                                        // the rest of the old one: ignored
	h.deliver(page("u1", 0, true, "a", "b"))
	h.deliver(hubEvent("u1", "c"))
	if got, want := kinds(drain(t, s)), "subscribed:x snapshot:x:p0 resync:<nil> snapshot:x:p0 snapshot_end:x event:c"; got != want {
		t.Fatalf("got %s, want %s", got, want)
	}

	// A second waiter whose snapshot cannot be asked for.
	s2 := testSession(h, transportWS)
	up.mu.Lock()
	up.refuse = &client.SubscribeError{Code: streamerv1.ErrorCode_ERROR_CODE_SNAPSHOT_UNAVAILABLE, Message: "no document source"}
	up.mu.Unlock()
	if e := h.subscribe(context.Background(), s2, snapReq("y"), "k", nil, 10); e != nil {
		t.Fatal(e)
	}
	h.deliver(hubEvent("u1", "d"))
	ms := drain(t, s2)
	if got, want := kinds(ms), "subscribed:y snapshot_end:y event:d"; got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
	if ms[1]["code"] != CodeSnapshotUnavailable || !strings.Contains(ms[1]["message"].(string), "no document source") {
		t.Fatalf("failed snapshot_end %v", ms[1])
	}
	h.async.Wait()
}

// TestHubUnaskedSnapshotResyncs: a snapshot nobody waits for (the node
// applied the subscription again after its partition moved) tells the
// clients of the upstream subscription to refetch: the new snapshot's
// position may skip events they never got.
func TestHubUnaskedSnapshotResyncs(t *testing.T) {
	h := newTestHub(t, &fakeUpstream{})
	s := testSession(h, transportWS)
	if e := h.subscribe(context.Background(), s, snapReq("x"), "k", nil, 10); e != nil {
		t.Fatal(e)
	}
	h.deliver(page("u1", 0, true, "a"))
	h.deliver(hubEvent("u1", "b"))
	h.deliver(page("u1", 0, false, "a", "b")) // again, unasked
	h.deliver(page("u1", 1, true, "c"))
	h.deliver(hubEvent("u1", "d"))
	if got, want := kinds(drain(t, s)), "subscribed:x snapshot:x:p0 snapshot_end:x event:b resync:<nil> event:d"; got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
}

// TestHubSyntrixSessions: a Syntrix session gets its snapshot pages
// gathered into one message after subscribe_ack, events one per
// subscription, and a resync ends it (its protocol cannot say so).
func TestHubSyntrixSessions(t *testing.T) {
	h := newTestHub(t, &fakeUpstream{})
	s := testSession(h, transportWS)
	s.syntrix = true
	if e := h.subscribe(context.Background(), s, snapReq("x"), "k", nil, 10); e != nil {
		t.Fatal(e)
	}
	h.deliver(page("u1", 0, false, "a"))
	h.deliver(page("u1", 1, true, "b"))
	h.deliver(hubEvent("u1", "c"))
	ms := drain(t, s)
	if len(ms) != 3 || ms[0]["type"] != "subscribe_ack" || ms[1]["type"] != "snapshot" || ms[2]["type"] != "event" {
		t.Fatalf("got %v", ms)
	}
	if docs := ms[1]["payload"].(map[string]any)["documents"].([]any); len(docs) != 2 || docs[1].(map[string]any)["id"] != "b" {
		t.Fatalf("snapshot %v", ms[1])
	}
	if p := ms[2]["payload"].(map[string]any); p["subId"] != "x" || p["delta"].(map[string]any)["id"] != "c/c" {
		t.Fatalf("event %v", ms[2])
	}
	h.deliver(client.Delivery{Resync: &client.Resync{Reason: "outbox overflow"}})
	if !s.isDone() {
		t.Fatal("a resync did not end the Syntrix session")
	}
	if reason, _ := s.ended(); reason != endResync {
		t.Fatalf("ended with %v", reason)
	}
}
