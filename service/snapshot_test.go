package service

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	streamerv1 "github.com/streamerd/streamer/proto/streamer/v1"
	"github.com/streamerd/streamer/store"
	"github.com/streamerd/streamer/store/memory"
)

// withSnapshot returns sub asking for a snapshot.
func withSnapshot(sub *streamerv1.Subscription, limit int32, after string) *streamerv1.Subscription {
	sub.Snapshot = &streamerv1.SnapshotRequest{Limit: limit, After: after}
	return sub
}

// snapshotOf collects the pages of sub's next snapshot, in order, and
// returns its documents (id → document) in page order, and its end.
func (g *gateway) snapshotOf(sub string) ([]string, map[string]string, *streamerv1.SnapshotEnd) {
	g.t.Helper()
	var ids []string
	docs := map[string]string{}
	for page := int32(0); ; page++ {
		d := g.take("snapshot page", func(m *streamerv1.StreamerMessage) bool {
			return m.GetDelivery().GetSnapshot().GetSubscriptionId() == sub
		}).GetDelivery()
		p := d.GetSnapshot()
		if p.GetPage() != page || len(d.GetMatches()) != 0 || d.GetCursor() == "" {
			g.t.Fatalf("snapshot page %d: %v", page, d)
		}
		for _, doc := range p.GetDocuments() {
			ids = append(ids, doc.GetDocumentId())
			docs[doc.GetDocumentId()] = string(doc.GetDocument())
		}
		if p.GetEnd() != nil {
			return ids, docs, p.GetEnd()
		}
	}
}

func snapshotNode(t *testing.T, cfg Config) *harness {
	cfg.Documents = memory.NewDocuments(0)
	return startNode(t, cfg, memory.Config{Partitions: 4})
}

// TestSnapshotThenChanges: the snapshot holds the latest version of every
// matching document as of the subscription (deleted and soft-deleted ones
// gone, other tenants' and collections' apart), and the changes after it
// follow, in order, with enter/leave relative to it. Nothing published
// before Subscribe returned is delivered as a change; everything after is.
func TestSnapshotThenChanges(t *testing.T) {
	h := snapshotNode(t, Config{})
	g, _ := h.connect("gw", "")
	h.publish(
		event("e1", "acme", "orders", "o1", opCreate, `{"status":"hot","n":1}`, ""),
		event("e2", "acme", "orders", "o2", opCreate, `{"status":"cold","n":2}`, ""),
		event("e3", "acme", "orders", "o3", opCreate, `{"status":"hot","n":3}`, ""),
		event("e4", "acme", "orders", "o1", opUpdate, `{"status":"hot","n":10}`, ""),
		event("e5", "acme", "orders", "o4", opCreate, `{"status":"hot","n":4}`, ""),
		event("e6", "acme", "orders", "o4", opDelete, "", ""),
		event("e7", "acme", "orders", "o5", opCreate, `{"status":"hot","n":5}`, ""),
		event("e8", "acme", "orders", "o5", opUpdate, `{"status":"hot","n":5,"deleted":true}`, ""), // soft delete
		event("e9", "globex", "orders", "x1", opCreate, `{"status":"hot"}`, ""),
		event("e10", "acme", "users", "u1", opCreate, `{"status":"hot"}`, ""),
	)
	g.mustSubscribe(withSnapshot(filterSub("hot", "acme", "orders", "status", "==", "hot"), 0, ""))
	ids, docs, end := g.snapshotOf("hot")
	if strings.Join(ids, ",") != "o1,o3" || docs["o1"] != `{"status":"hot","n":10}` {
		t.Fatalf("snapshot = %v %v", ids, docs)
	}
	if end.GetDocuments() != 2 || end.GetMore() || end.GetError() != nil || end.GetPosition() == "" {
		t.Fatalf("end = %v", end)
	}
	h.publish(
		event("f1", "acme", "orders", "o2", opUpdate, `{"status":"hot","n":2}`, `{"status":"cold","n":2}`),  // enters
		event("f2", "acme", "orders", "o3", opUpdate, `{"status":"cold","n":3}`, `{"status":"hot","n":3}`),  // leaves
		event("f3", "acme", "orders", "o1", opUpdate, `{"status":"hot","n":11}`, `{"status":"hot","n":10}`), // stays
	)
	got := summary(g.matchesUntil("f1", "f2", "f3"))
	if want := []string{"f1:CREATE:hot", "f2:DELETE:hot", "f3:UPDATE:hot"}; !slices.Equal(got, want) {
		t.Fatalf("changes after the snapshot = %v, want %v", got, want)
	}
	if m := g.takeNow(func(m *streamerv1.StreamerMessage) bool { return len(m.GetDelivery().GetMatches()) > 0 }); m != nil {
		t.Fatalf("an event before the snapshot was delivered as a change: %v", m)
	}
	if v := h.metricValue("streamer_snapshots_total"); v != 1 {
		t.Errorf("streamer_snapshots_total = %v", v)
	}
}

// TestSnapshotPagesAndLimits: pages are bounded in bytes and numbered, the
// limit is the request's or the node's, and next_after pages through the
// rest; document-id and CEL criteria select as they match.
func TestSnapshotPagesAndLimits(t *testing.T) {
	h := snapshotNode(t, Config{SnapshotPageBytes: 100, SnapshotMaxDocuments: 7})
	g, _ := h.connect("gw", "")
	var evs []*streamerv1.ChangeEvent
	for i := range 20 {
		evs = append(evs, event(fmt.Sprintf("e%d", i), "t", "c", fmt.Sprintf("d%02d", i), opCreate, fmt.Sprintf(`{"n":%d,"pad":"%s"}`, i, strings.Repeat("x", 30)), ""))
	}
	h.publish(evs...)

	g.mustSubscribe(withSnapshot(&streamerv1.Subscription{SubscriptionId: "all", Tenant: "t", Collection: "c"}, 0, ""))
	ids, _, end := g.snapshotOf("all")
	if len(ids) != 7 || ids[0] != "d00" || ids[6] != "d06" || !end.GetMore() || end.GetNextAfter() != "d06" || end.GetDocuments() != 7 {
		t.Fatalf("node limit: %v, end %v", ids, end)
	}
	// Paging by re-subscribing (a replacement) after next_after, with a
	// smaller limit.
	g.mustSubscribe(withSnapshot(&streamerv1.Subscription{SubscriptionId: "all", Tenant: "t", Collection: "c"}, 5, end.GetNextAfter()))
	ids, _, end = g.snapshotOf("all")
	if strings.Join(ids, ",") != "d07,d08,d09,d10,d11" || !end.GetMore() || end.GetNextAfter() != "d11" {
		t.Fatalf("second page: %v, end %v", ids, end)
	}
	g.mustSubscribe(withSnapshot(&streamerv1.Subscription{SubscriptionId: "cel", Tenant: "t", Collection: "c",
		Criterion: &streamerv1.Subscription_Cel{Cel: "int(doc.n) % 5 == 0"}}, 0, ""))
	if ids, _, end = g.snapshotOf("cel"); strings.Join(ids, ",") != "d00,d05,d10,d15" || end.GetMore() {
		t.Fatalf("cel: %v, end %v", ids, end)
	}
	g.mustSubscribe(withSnapshot(&streamerv1.Subscription{SubscriptionId: "one", Tenant: "t", Collection: "c",
		Criterion: &streamerv1.Subscription_DocumentId{DocumentId: "d13"}}, 0, ""))
	if ids, docs, _ := g.snapshotOf("one"); len(ids) != 1 || !strings.HasPrefix(docs["d13"], `{"n":13,`) {
		t.Fatalf("document id: %v", docs)
	}
	g.mustSubscribe(withSnapshot(filterSub("none", "t", "c", "n", ">", 100), 0, ""))
	if ids, _, end := g.snapshotOf("none"); len(ids) != 0 || end.GetDocuments() != 0 {
		t.Fatalf("empty result: %v, end %v", ids, end)
	}

	// The stored subscription, which a new partition owner loads, has no
	// snapshot request: it is answered once.
	data, found, err := h.backend.Subscriptions.Get(h.ctx(), "gw", "all")
	if err != nil || !found {
		t.Fatal(found, err)
	}
	var stored streamerv1.Subscription
	if err := proto.Unmarshal(data, &stored); err != nil || stored.GetSnapshot() != nil {
		t.Fatalf("stored subscription %v, %v", &stored, err)
	}
}

// TestSnapshotRefused: a node without a document source refuses a snapshot
// at subscribe, with the reason; a bad request is refused too.
func TestSnapshotRefused(t *testing.T) {
	h := startNode(t, Config{}, memory.Config{Partitions: 2})
	g, _ := h.connect("gw", "")
	res := g.subscribe(withSnapshot(filterSub("s", "t", "c", "a", "==", 1), 0, ""))
	if res.GetError().GetCode() != streamerv1.ErrorCode_ERROR_CODE_SNAPSHOT_UNAVAILABLE || !strings.Contains(res.GetError().GetMessage(), "document source") {
		t.Fatalf("without a document source: %v", res)
	}
	h2 := snapshotNode(t, Config{})
	g2, _ := h2.connect("gw", "")
	if res := g2.subscribe(withSnapshot(filterSub("s", "t", "c", "a", "==", 1), -1, "")); res.GetError().GetCode() != streamerv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT {
		t.Fatalf("negative limit: %v", res)
	}
}

// readAt is a document source read from a database at a cluster time: its
// documents are the fixed ones.
type readAt struct {
	at   uint64
	docs []store.Document
}

func (r readAt) Query(_ context.Context, q store.DocumentQuery) (store.DocumentPage, error) {
	var out []store.Document
	for _, d := range r.docs {
		if q.Keep == nil || q.Keep(d.ID, d.Data) {
			out = append(out, d)
		}
	}
	return store.DocumentPage{Documents: out, ClusterTime: r.at}, nil
}

// TestSnapshotAtClusterTime: a snapshot read from a database at cluster
// time T is followed by the subscription's events after T only: those at
// or before T (appended after the subscription by a lagging puller) are in
// the documents already. Other subscriptions, and events without a cluster
// time, are not affected.
func TestSnapshotAtClusterTime(t *testing.T) {
	h := startNode(t, Config{Documents: readAt{at: 100, docs: []store.Document{{ID: "o1", Data: []byte(`{"v":1}`)}}}}, memory.Config{Partitions: 2})
	g, _ := h.connect("gw", "")
	g.mustSubscribe(withSnapshot(&streamerv1.Subscription{SubscriptionId: "snap", Tenant: "t", Collection: "c"}, 0, ""))
	g.mustSubscribe(&streamerv1.Subscription{SubscriptionId: "plain", Tenant: "t", Collection: "c"})
	if ids, _, end := g.snapshotOf("snap"); len(ids) != 1 || end.GetDocuments() != 1 {
		t.Fatalf("snapshot %v, end %v", ids, end)
	}
	at := func(e *streamerv1.ChangeEvent, ct uint64) *streamerv1.ChangeEvent { e.ClusterTime = ct; return e }
	h.publish(
		at(event("e99", "t", "c", "o1", opUpdate, `{"v":1}`, ""), 99),
		at(event("e100", "t", "c", "o1", opUpdate, `{"v":1}`, ""), 100),
		at(event("e101", "t", "c", "o1", opUpdate, `{"v":2}`, ""), 101),
		at(event("e100b", "t", "c", "o2", opCreate, `{"v":1}`, ""), 100), // out of order: the snapshot's skip is gone
		event("e0", "t", "c", "o3", opCreate, `{"v":1}`, ""),
	)
	got := summary(g.matchesUntil("e99", "e100", "e101", "e100b", "e0"))
	want := []string{"e99:UPDATE:plain", "e100:UPDATE:plain", "e101:UPDATE:plain,snap", "e100b:CREATE:plain,snap", "e0:CREATE:plain,snap"}
	if !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}
