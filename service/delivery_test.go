package service

import (
	"fmt"
	"slices"
	"testing"

	"github.com/streamerd/streamer/store"
	"github.com/streamerd/streamer/store/memory"

	streamerv1 "github.com/streamerd/streamer/proto/streamer/v1"
)

const (
	opCreate = streamerv1.Operation_OPERATION_CREATE
	opUpdate = streamerv1.Operation_OPERATION_UPDATE
	opDelete = streamerv1.Operation_OPERATION_DELETE
)

func TestDeliveryEndToEnd(t *testing.T) {
	h := startNode(t, Config{}, memory.Config{Partitions: 4})
	g, reg := h.connect("gw-1", "")
	if reg.GetNodeId() != "test-node" || reg.GetResumed() || reg.GetTtl().AsDuration() != DefaultGatewayTTL {
		t.Fatalf("Registered = %v", reg)
	}
	g.mustSubscribe(filterSub("hot", "acme", "orders", "status", "==", "hot"))
	g.mustSubscribe(&streamerv1.Subscription{SubscriptionId: "big", Tenant: "acme", Collection: "orders",
		Criterion: &streamerv1.Subscription_Cel{Cel: "doc.total > 100"}})
	g.mustSubscribe(&streamerv1.Subscription{SubscriptionId: "one", Tenant: "acme", Collection: "orders",
		Criterion: &streamerv1.Subscription_DocumentId{DocumentId: "o1"}})
	g.mustSubscribe(&streamerv1.Subscription{SubscriptionId: "all-users", Tenant: "acme", Collection: "users"})

	// Another tenant's identical events must never arrive, and nor must
	// events that match nothing.
	other := func(id string, e *streamerv1.ChangeEvent) *streamerv1.ChangeEvent {
		e = event(id, "globex", e.GetCollection(), e.GetDocumentId(), e.GetOperation(), string(e.GetDocument()), string(e.GetBefore()))
		return e
	}
	evs := []*streamerv1.ChangeEvent{
		event("e1", "acme", "orders", "o1", opCreate, `{"status":"hot","total":5}`, ""),
		event("e2", "acme", "orders", "o2", opCreate, `{"status":"cold","total":1}`, ""), // matches nothing
		// o1 leaves "hot", enters "big", stays in "one".
		event("e3", "acme", "orders", "o1", opUpdate, `{"status":"cold","total":500}`, `{"status":"hot","total":5}`),
		// o3 enters "hot" and stays in "big".
		event("e4", "acme", "orders", "o3", opUpdate, `{"status":"hot","total":200}`, `{"status":"new","total":150}`),
		// Soft delete: an update setting deleted:true is a delete.
		event("e5", "acme", "orders", "o3", opUpdate, `{"status":"hot","total":200,"deleted":true}`, `{"status":"hot","total":200}`),
		// A hard delete without pre-image reaches every subscription of the collection.
		event("e6", "acme", "orders", "o1", opDelete, "", ""),
		event("e7", "acme", "users", "u1", opCreate, `{"name":"ann"}`, ""),
	}
	var all []*streamerv1.ChangeEvent
	for i, e := range evs {
		all = append(all, e, other(fmt.Sprintf("x%d", i), e))
	}
	h.publish(all...)

	got := summary(g.matchesUntil("e6", "e7"))
	want := []string{
		"e1:CREATE:hot,one",
		"e3:CREATE:big", "e3:UPDATE:one", "e3:DELETE:hot",
		"e4:CREATE:hot", "e4:UPDATE:big",
		"e5:DELETE:big,hot",
		"e6:DELETE:big,hot,one",
		"e7:CREATE:all-users",
	}
	// users and orders may hash to different partitions: only the order
	// within each collection is guaranteed.
	if !slices.Equal(without(got, "e7"), without(want, "e7")) || !slices.Contains(got, "e7:CREATE:all-users") || len(got) != len(want) {
		t.Fatalf("matches:\n got %q\nwant %q", got, want)
	}

	// Nothing else is queued: a sentinel published last arrives next.
	h.publish(event("sentinel", "acme", "orders", "o9", opCreate, `{"status":"hot"}`, ""))
	if got := summary(g.matchesUntil("sentinel")); !slices.Equal(got, []string{"sentinel:CREATE:hot"}) {
		t.Fatalf("after the expected matches got %q", got)
	}
}

// without drops the matches of the event skip from s.
func without(s []string, skip string) []string {
	return slices.DeleteFunc(slices.Clone(s), func(x string) bool { return len(x) > len(skip) && x[:len(skip)+1] == skip+":" })
}

func TestDeliveryInPartitionOrder(t *testing.T) {
	h := startNode(t, Config{ReadBatch: 7}, memory.Config{Partitions: 3})
	g := h.watching("gw-1")

	const n = 300
	var want []string
	for batch := range 3 {
		var evs []*streamerv1.ChangeEvent
		for i := range n / 3 {
			id := fmt.Sprintf("e%03d", batch*n/3+i)
			evs = append(evs, event(id, "t", "c", id, opCreate, `{"i":1}`, ""))
			want = append(want, id+":CREATE:s")
		}
		h.publish(evs...)
	}
	ms := g.matchesUntil(fmt.Sprintf("e%03d", n-1))
	if got := summary(ms); !slices.Equal(got, want) {
		t.Fatalf("got %d matches, want %d in publish order; first difference in\n got %q", len(got), len(want), got)
	}
	p := store.PartitionOf("t", "c", 3)
	for i, m := range ms {
		e := m.GetEvent()
		if int(e.GetPartition()) != p || e.GetPosition() == "" {
			t.Fatalf("match %d: partition %d position %q, want partition %d and a position", i, e.GetPartition(), e.GetPosition(), p)
		}
		if i > 0 && store.CompareIDs(ms[i-1].GetEvent().GetPosition(), e.GetPosition()) >= 0 {
			t.Fatalf("positions out of order at %d", i)
		}
	}
}

func TestUnsubscribeAndReplace(t *testing.T) {
	h := startNode(t, Config{}, memory.Config{Partitions: 8})
	g, _ := h.connect("gw-1", "")
	g.mustSubscribe(filterSub("a", "t", "c", "k", "==", "x"))
	g.mustSubscribe(filterSub("b", "t", "c", "k", "==", "x"))

	g.send(&streamerv1.GatewayMessage{Msg: &streamerv1.GatewayMessage_Unsubscribe{Unsubscribe: &streamerv1.Unsubscribe{SubscriptionId: "a"}}})
	res := g.take("unsubscribe result", func(m *streamerv1.StreamerMessage) bool { return m.GetSubscribeResult() != nil }).GetSubscribeResult()
	if res.GetError() != nil || !res.GetUnsubscribed() || res.GetSubscriptionId() != "a" {
		t.Fatalf("unsubscribe result %v", res)
	}
	// Replace b with a subscription to another collection (possibly another
	// partition): the old criterion must stop matching.
	g.mustSubscribe(filterSub("b", "t", "other", "k", "==", "y"))

	h.publish(
		event("e1", "t", "c", "d1", opCreate, `{"k":"x"}`, ""),
		event("e2", "t", "other", "d2", opCreate, `{"k":"x"}`, ""),
		event("e3", "t", "other", "d3", opCreate, `{"k":"y"}`, ""),
	)
	if got := summary(g.matchesUntil("e3")); !slices.Equal(got, []string{"e3:CREATE:b"}) {
		t.Fatalf("got %q, want only e3 for b", got)
	}
	// The removal from the old partition is applied by that partition's
	// consumer, which runs independently of the one that delivered e3.
	waitFor(t, "one indexed subscription", func() bool { return h.node.indexedSubscriptions() == 1 })
}
