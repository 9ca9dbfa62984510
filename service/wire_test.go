package service

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/hashicorp/golang-lru/v2/simplelru"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/streamerd/streamer/internal/wire"
	"github.com/streamerd/streamer/match"
	streamerv1 "github.com/streamerd/streamer/proto/streamer/v1"
	"github.com/streamerd/streamer/store"
	"github.com/streamerd/streamer/store/memory"
)

// TestHandEncodedOutboxIsWhatProtoEncodingProduced runs random read batches
// through the consumer's event path (apply, router, dedup, as process drives
// them) and through protoConsumer, the proto.Unmarshal / proto.Marshal
// implementation it replaced, and requires the same dead-letter reasons and
// outbox items, in the same order, whose payloads decode (proto.Unmarshal)
// to equal OutboxBatches. The entries include publisher-set partitions and
// positions, unknown and mistyped fields, repeated scalar fields, invalid
// UTF-8, malformed bytes, empty documents, deletes with pre-images, replays
// (deduplication on, with a small window, and some batches retried) and
// events big enough to split batches.
func TestHandEncodedOutboxIsWhatProtoEncodingProduced(t *testing.T) {
	for _, p := range []int{0, 1} { // partition 0: the node's 0 must override a publisher's partition
		t.Run(fmt.Sprintf("partition %d", p), func(t *testing.T) {
			backend := memory.New(memory.Config{Partitions: 2})
			t.Cleanup(func() { _ = backend.Close() })
			n, err := New(Config{SoftDeleteField: "deleted", DedupSize: 16, Logger: testLogger()}, backend)
			if err != nil {
				t.Fatal(err)
			}
			c := newConsumer(n, p, nil)
			ref := newProtoConsumer(newConsumer(n, p, nil), 16)
			for gw, subs := range wireTestSubscriptions() {
				for _, sub := range subs {
					if err := c.add(gw, sub); err != nil {
						t.Fatal(err)
					}
					if err := ref.c.add(gw, sub); err != nil {
						t.Fatal(err)
					}
				}
			}

			gen := wireGen{rng: rand.New(rand.NewPCG(uint64(p), 42))}
			var dead, routed, retried int
			for batch := 0; batch < 300; batch++ {
				entries := make([]store.Entry, 1+gen.rng.IntN(40))
				big := batch%50 == 7 // a few batches whose events overflow maxBatchBytes
				for i := range entries {
					entries[i] = store.Entry{ID: fmt.Sprintf("%d-%d", batch+1, i), Payload: gen.entry(big)}
				}
				retry := gen.rng.IntN(10) == 0 // the outbox append fails: the batch is processed again
				for attempt := 0; attempt < 2; attempt++ {
					wantItems, wantReasons := ref.process(entries, !retry || attempt == 1)
					gotItems, gotReasons := c.processWithoutBackend(entries, !retry || attempt == 1)
					if !slices.Equal(gotReasons, wantReasons) {
						t.Fatalf("batch %d: dead-letter reasons\n%q\nwant\n%q", batch, gotReasons, wantReasons)
					}
					if len(gotItems) != len(wantItems) {
						t.Fatalf("batch %d: %d outbox items, want %d", batch, len(gotItems), len(wantItems))
					}
					for i, it := range gotItems {
						if it.Gateway != wantItems[i].Gateway {
							t.Fatalf("batch %d: item %d for %s, want %s", batch, i, it.Gateway, wantItems[i].Gateway)
						}
						var g, w streamerv1.OutboxBatch
						if err := proto.Unmarshal(it.Payload, &g); err != nil {
							t.Fatalf("batch %d: hand-encoded item %d does not decode: %v", batch, i, err)
						}
						if err := proto.Unmarshal(wantItems[i].Payload, &w); err != nil {
							t.Fatal(err)
						}
						if !proto.Equal(&g, &w) {
							t.Fatalf("batch %d: item %d decodes to\n%v\nwant\n%v", batch, i, &g, &w)
						}
						var m streamerv1.StreamerMessage // what the gateway receives
						if err := proto.Unmarshal(deliveryFrame("1-1", it.Payload).bytes(), &m); err != nil ||
							!proto.Equal(m.GetDelivery(), &streamerv1.Delivery{Cursor: "1-1", Matches: w.GetMatches()}) {
							t.Fatalf("batch %d: delivery frame decodes to %v, %v", batch, &m, err)
						}
						if n, _, err := wire.ScanBatch(it.Payload, func(int64) {}); err != nil || n != len(g.GetMatches()) {
							t.Fatalf("batch %d: scanBatch = %d, %v; want %d matches", batch, n, err, len(g.GetMatches()))
						}
						routed += len(g.GetMatches())
					}
					dead += len(gotReasons)
					if !retry {
						break
					}
					retried++
				}
			}
			t.Logf("%d matches, %d dead letters, %d replays, %d split batches, %d retries", routed, dead, ref.deduplicated, ref.split, retried)
			if routed < 1000 || dead < 100 || ref.deduplicated < 50 || ref.split == 0 || retried == 0 {
				t.Fatalf("the random batches exercise too little: %d matches, %d dead letters, %d replays, %d split batches, %d retries",
					routed, dead, ref.deduplicated, ref.split, retried)
			}
		})
	}
}

// processWithoutBackend is what process does with a read batch, up to the
// backend calls: the outbox items and the dead-letter reasons, in order.
// appended says whether the items' append succeeded.
func (c *consumer) processWithoutBackend(entries []store.Entry, appended bool) ([]store.OutboxItem, []string) {
	c.router.reset()
	c.dedup.abort()
	var reasons []string
	for _, e := range entries {
		if reason := c.apply(e); reason != "" {
			reasons = append(reasons, reason)
		}
	}
	items := c.router.items()
	if appended {
		c.dedup.commit()
	}
	return items, reasons
}

// wireTestSubscriptions are the subscriptions of the differential test, per
// gateway: several per gateway, so that one event yields matches of several
// operations (with pre-images), and several gateways.
func wireTestSubscriptions() map[string][]*streamerv1.Subscription {
	all := func(id, tenant string) *streamerv1.Subscription {
		return &streamerv1.Subscription{SubscriptionId: id, Tenant: tenant, Collection: "c"}
	}
	return map[string][]*streamerv1.Subscription{
		"gw0": {all("all", "t"), filterSub("k1", "t", "c", "k", "==", 1)},
		"gw1": {filterSub("k2", "t", "c", "k", "==", 2), filterSub("k-any", "t", "c", "k", ">=", 0), filterSub("k1b", "t", "c", "k", "==", 1)},
		"gw2": {{SubscriptionId: "doc", Tenant: "t", Collection: "c", Criterion: &streamerv1.Subscription_DocumentId{DocumentId: "d1"}}},
		"gw3": {all("empty-tenant", ""), all("u", "u")},
	}
}

// wireGen makes random log entries for the differential test.
type wireGen struct{ rng *rand.Rand }

func pick[T any](g *wireGen, vs ...T) T { return vs[g.rng.IntN(len(vs))] }

var (
	wireDocs    = []string{`{"k":1}`, `{"k":2}`, `{"k":1,"deleted":true}`, `{"k":2,"deleted":false}`, `{}`, ``, ``, `{"k":"é"}`}
	wireBadDocs = []string{`{"a":`, `[1]`, `{"k":"\xff"}`}
)

// entry returns an encoded LogEntry: mostly a valid event; one in three
// is hostile: encodings protobuf allows but proto.Marshal never writes,
// events the consumer dead-letters, and bytes protobuf rejects.
func (g *wireGen) entry(big bool) []byte {
	hostile := !big && g.rng.IntN(3) == 0
	ev := g.event(big, hostile)
	tagged := protowire.AppendBytes(protowire.AppendTag(nil, wire.FieldLogEntryEvent, protowire.BytesType), ev)
	if !hostile {
		return tagged
	}
	switch g.rng.IntN(12) {
	case 0: // a control entry that changes nothing
		b, _ := proto.Marshal(pick(g,
			&streamerv1.LogEntry{Entry: &streamerv1.LogEntry_SubscriptionRemoved{SubscriptionRemoved: &streamerv1.SubscriptionRemoved{GatewayId: "nobody", SubscriptionId: "s", Collection: "c"}}},
			&streamerv1.LogEntry{Entry: &streamerv1.LogEntry_GatewayExpired{GatewayExpired: &streamerv1.GatewayExpired{GatewayId: "nobody"}}},
			&streamerv1.LogEntry{Entry: &streamerv1.LogEntry_GatewayExpired{GatewayExpired: &streamerv1.GatewayExpired{}}},
			&streamerv1.LogEntry{}))
		return b
	case 1: // the event in two parts, which protobuf merges
		cut := fieldBoundary(ev, g.rng.IntN(len(ev)+1))
		b := protowire.AppendBytes(protowire.AppendTag(nil, wire.FieldLogEntryEvent, protowire.BytesType), ev[:cut])
		return protowire.AppendBytes(protowire.AppendTag(b, wire.FieldLogEntryEvent, protowire.BytesType), ev[cut:])
	case 2: // an event replaced by a control entry of the oneof, or the reverse
		ctl, _ := proto.Marshal(&streamerv1.LogEntry{Entry: &streamerv1.LogEntry_GatewayExpired{GatewayExpired: &streamerv1.GatewayExpired{GatewayId: "nobody"}}})
		if g.rng.IntN(2) == 0 {
			return append(tagged, ctl...)
		}
		return append(ctl, tagged...)
	case 3: // garbage
		b := make([]byte, g.rng.IntN(12))
		for i := range b {
			b[i] = byte(g.rng.Uint32())
		}
		return b
	case 4: // unknown fields around the event
		b := protowire.AppendVarint(protowire.AppendTag(nil, 99, protowire.VarintType), 7)
		return protowire.AppendBytes(protowire.AppendTag(append(b, tagged...), 100, protowire.BytesType), []byte("x"))
	case 5: // the event field mistyped: protobuf keeps it as unknown, the entry is empty
		return protowire.AppendVarint(protowire.AppendTag(nil, wire.FieldLogEntryEvent, protowire.VarintType), 1)
	case 6: // truncated
		return tagged[:g.rng.IntN(len(tagged))]
	}
	return tagged
}

// fieldBoundary returns the first field boundary of an encoded message at or
// after i (len(b) when none, or when b is malformed).
func fieldBoundary(b []byte, i int) int {
	for at := 0; at < len(b); {
		if at >= i {
			return at
		}
		_, _, n := protowire.ConsumeField(b[at:])
		if n < 0 {
			return len(b)
		}
		at += n
	}
	return len(b)
}

// event returns an encoded ChangeEvent; a hostile one may be invalid or
// malformed. A big one has a 300 kB document and matches.
func (g *wireGen) event(big, hostile bool) []byte {
	ce := &streamerv1.ChangeEvent{
		EventId:     pick(g, "", fmt.Sprintf("e%d", g.rng.IntN(150))),
		Tenant:      pick(g, "t", "t", "t", "", "u"),
		Collection:  "c",
		DocumentId:  pick(g, "d0", "d1", "d1", "d2"),
		Operation:   streamerv1.Operation(pick(g, 1, 2, 3)),
		Document:    []byte(pick(g, wireDocs...)),
		TimestampMs: g.rng.Int64(),
		Partition:   pick(g, int32(0), 0, 0, 1, 5, -5, math.MaxInt32),
		Position:    pick(g, "", "", "9-9", "0-1"),
	}
	if g.rng.IntN(2) == 0 {
		ce.Before = []byte(pick(g, wireDocs...))
	}
	ce.ChangedFields = pick(g, nil, nil, []string{"deleted"}, []string{"k"}, []string{"k", ""}, []string{""})
	if hostile {
		switch g.rng.IntN(6) {
		case 0:
			ce.Collection = pick(g, "", "other")
		case 1:
			ce.DocumentId = ""
		case 2:
			ce.Operation = streamerv1.Operation(pick(g, 0, 4, 257, -1))
		case 3:
			ce.Document = []byte(pick(g, wireBadDocs...))
		case 4:
			ce.Before = []byte(pick(g, wireBadDocs...))
		}
	}
	if big {
		ce.Tenant, ce.Operation, ce.Before = "t", streamerv1.Operation_OPERATION_CREATE, nil
		ce.Document = fmt.Appendf(nil, `{"k":1,"pad":%q}`, strings.Repeat("x", 300_000))
	}
	b, _ := proto.Marshal(ce)
	b = g.oddities(b, hostile)
	if hostile && g.rng.IntN(20) == 0 {
		b = b[:g.rng.IntN(len(b)+1)] // malformed, or merely shorter
	}
	return b
}

// oddities appends fields that proto.Marshal would not have written; those
// of a hostile event may make it invalid.
func (g *wireGen) oddities(b []byte, hostile bool) []byte {
	tag := protowire.AppendTag
	for range g.rng.IntN(4) {
		odd := g.rng.IntN(12)
		if !hostile && (odd == 3 || odd >= 6 && odd <= 10) {
			continue
		}
		switch odd {
		case 0: // unknown fields of every wire type
			b = protowire.AppendVarint(tag(b, protowire.Number(50+g.rng.IntN(50)), protowire.VarintType), g.rng.Uint64())
			b = protowire.AppendFixed32(tag(b, 120, protowire.Fixed32Type), g.rng.Uint32())
			b = protowire.AppendFixed64(tag(b, 121, protowire.Fixed64Type), g.rng.Uint64())
			b = protowire.AppendBytes(tag(b, 122, protowire.BytesType), []byte{0xff, 0xfe})
			b = tag(protowire.AppendVarint(tag(tag(b, 123, protowire.StartGroupType), 1, protowire.VarintType), 5), 123, protowire.EndGroupType)
		case 1: // a partition again
			b = protowire.AppendVarint(tag(b, wire.FieldEventPartition, protowire.VarintType),
				uint64(int64(pick(g, int32(0), 1, 7, -3, math.MinInt32))))
		case 2: // a position again
			b = protowire.AppendString(tag(b, wire.FieldEventPosition, protowire.BytesType), pick(g, "", "5-5", "0-0"))
		case 3: // an operation again, sometimes out of range or beyond 32 bits
			b = protowire.AppendVarint(tag(b, wire.FieldEventOperation, protowire.VarintType), pick(g, uint64(1), 2, 3, 0, 1<<40+2, 1<<8+1))
		case 4: // mistyped known fields, which protobuf keeps as unknown
			b = protowire.AppendVarint(tag(b, protowire.Number(pick(g, wire.FieldEventTenant, wire.FieldEventChangedFields, wire.FieldEventDocument, wire.FieldEventPosition)), protowire.VarintType), 3)
			b = protowire.AppendBytes(tag(b, protowire.Number(pick(g, wire.FieldEventOperation, wire.FieldEventPartition, wire.FieldEventTimestamp)), protowire.BytesType), []byte{1})
		case 5: // more changed fields
			b = protowire.AppendString(tag(b, wire.FieldEventChangedFields, protowire.BytesType), pick(g, "deleted", "k", ""))
		case 6: // invalid UTF-8 in a string field
			f := pick(g, wire.FieldEventID, wire.FieldEventTenant, wire.FieldEventCollection, wire.FieldEventDocumentID, wire.FieldEventChangedFields, wire.FieldEventPosition)
			b = protowire.AppendBytes(tag(b, protowire.Number(f), protowire.BytesType), []byte("a\xffb"))
		case 7: // a pre-image again, not UTF-8: bytes fields need not be
			b = protowire.AppendBytes(tag(b, wire.FieldEventBefore, protowire.BytesType), []byte("\xff"))
		case 8: // a string field again
			b = protowire.AppendString(tag(b, protowire.Number(pick(g, wire.FieldEventTenant, wire.FieldEventCollection, wire.FieldEventDocumentID, wire.FieldEventID)), protowire.BytesType), pick(g, "t", "c", "d1", "", "e3"))
		case 9: // a document or pre-image again
			b = protowire.AppendString(tag(b, protowire.Number(pick(g, wire.FieldEventDocument, wire.FieldEventBefore)), protowire.BytesType), pick(g, append(wireDocs, wireBadDocs...)...))
		case 10: // the largest field number protobuf accepts, and one beyond
			b = protowire.AppendVarint(tag(b, protowire.MaxValidNumber, protowire.VarintType), 1)
			if g.rng.IntN(4) == 0 {
				b = protowire.AppendVarint(protowire.AppendVarint(b, uint64(protowire.MaxValidNumber+1)<<3), 1)
			}
		case 11: // a timestamp again
			b = protowire.AppendVarint(tag(b, wire.FieldEventTimestamp, protowire.VarintType), g.rng.Uint64())
		}
	}
	return b
}

// protoConsumer is the implementation the wire path replaced, kept as the
// differential test's reference: it decodes entries with proto.Unmarshal,
// sets the node's fields on the decoded ChangeEvent and proto.Marshals
// OutboxBatch messages, with an LRU of event ids for deduplication.
type protoConsumer struct {
	c        *consumer // its index, node and partition only
	results  []match.Result
	router   protoRouter
	dedup    *simplelru.LRU[string, struct{}]
	batchIDs []string
	inBatch  map[string]struct{}

	deduplicated, split int // what the random batches exercised
}

func newProtoConsumer(c *consumer, dedupSize int) *protoConsumer {
	lru, _ := simplelru.NewLRU[string, struct{}](dedupSize, nil)
	return &protoConsumer{c: c, dedup: lru, inBatch: map[string]struct{}{}, router: protoRouter{gws: map[string]*protoGateway{}}}
}

// process is processWithoutBackend the way it was done before internal/wire.
func (r *protoConsumer) process(entries []store.Entry, appended bool) ([]store.OutboxItem, []string) {
	r.router.order = r.router.order[:0]
	clear(r.router.gws)
	r.batchIDs = r.batchIDs[:0]
	clear(r.inBatch)
	var reasons []string
	for _, e := range entries {
		if reason := r.apply(e); reason != "" {
			reasons = append(reasons, reason)
		}
	}
	var items []store.OutboxItem
	for _, gw := range r.router.order {
		r.split += len(r.router.gws[gw].batches) - 1
		for _, b := range r.router.gws[gw].batches {
			payload, err := proto.Marshal(b)
			if err != nil {
				panic(err)
			}
			items = append(items, store.OutboxItem{Gateway: gw, Payload: payload})
		}
	}
	if appended {
		for _, id := range r.batchIDs {
			r.dedup.Add(id, struct{}{})
		}
	}
	return items, reasons
}

func (r *protoConsumer) apply(e store.Entry) string {
	var le streamerv1.LogEntry
	if err := proto.Unmarshal(e.Payload, &le); err != nil {
		return "undecodable log entry: " + err.Error()
	}
	switch x := le.GetEntry().(type) {
	case *streamerv1.LogEntry_Event:
		if err := r.event(x.Event, e.ID); err != nil {
			return err.Error()
		}
		return ""
	case *streamerv1.LogEntry_SubscriptionRemoved:
		if x.SubscriptionRemoved.GetGatewayId() == "" || x.SubscriptionRemoved.GetSubscriptionId() == "" {
			return "subscription_removed without gateway or subscription id"
		}
		r.c.ix.Remove(x.SubscriptionRemoved.GetGatewayId(), x.SubscriptionRemoved.GetSubscriptionId())
		return ""
	case *streamerv1.LogEntry_GatewayExpired:
		if x.GatewayExpired.GetGatewayId() == "" {
			return "gateway_expired without gateway id"
		}
		r.c.ix.RemoveGateway(x.GatewayExpired.GetGatewayId())
		return ""
	case nil:
		return "log entry has no content"
	}
	panic("the generator makes no other entries")
}

func (r *protoConsumer) event(ce *streamerv1.ChangeEvent, id string) error {
	if ce.GetCollection() == "" || ce.GetDocumentId() == "" {
		return fmt.Errorf("%w: collection and document_id are required", errBadEvent)
	}
	op := match.Op(ce.GetOperation())
	if op < match.Create || op > match.Delete {
		return fmt.Errorf("%w: operation %v", errBadEvent, ce.GetOperation())
	}
	if op != match.Delete && len(ce.GetDocument()) == 0 {
		return fmt.Errorf("%w: %v without document", errBadEvent, ce.GetOperation())
	}
	if !utf8.Valid(ce.GetDocument()) || !utf8.Valid(ce.GetBefore()) {
		return fmt.Errorf("%w: document or before is not valid UTF-8", errBadEvent)
	}
	ev := &match.Event{Tenant: ce.GetTenant(), Collection: ce.GetCollection(), ID: ce.GetDocumentId(), Op: op, Changed: ce.GetChangedFields()}
	var err error
	if len(ce.GetDocument()) > 0 {
		if ev.Doc, err = match.ParseDocument(ce.GetDocument()); err != nil {
			return fmt.Errorf("%w: document: %v", errBadEvent, err)
		}
	}
	if len(ce.GetBefore()) > 0 {
		if ev.Before, err = match.ParseDocument(ce.GetBefore()); err != nil {
			return fmt.Errorf("%w: before: %v", errBadEvent, err)
		}
	}
	if id := ce.GetEventId(); id != "" {
		if _, ok := r.inBatch[id]; ok || r.dedup.Contains(id) {
			r.deduplicated++
			return nil
		}
		r.inBatch[id] = struct{}{}
		r.batchIDs = append(r.batchIDs, id)
	}
	if !match.SoftDelete(ev, r.c.n.cfg.SoftDeleteField) {
		return nil
	}
	r.results = r.c.ix.Match(ev, r.results[:0])
	if len(r.results) == 0 {
		return nil
	}
	ce.Partition, ce.Position, ce.Operation = int32(r.c.p), id, streamerv1.Operation(ev.Op)
	r.router.add(ce, r.results)
	return nil
}

type protoRouter struct {
	order []string
	gws   map[string]*protoGateway
}

type protoGateway struct {
	batches []*streamerv1.OutboxBatch
	size    int
}

func (r *protoRouter) add(ev *streamerv1.ChangeEvent, results []match.Result) {
	slices.SortFunc(results, func(a, b match.Result) int {
		return cmp.Or(cmp.Compare(a.Gateway, b.Gateway), cmp.Compare(a.Op, b.Op), cmp.Compare(a.ID, b.ID))
	})
	evSize := len(ev.GetDocument()) + len(ev.GetBefore()) + 256
	for i := 0; i < len(results); {
		gw := results[i].Gateway
		g := r.gws[gw]
		if g == nil {
			g = &protoGateway{}
			r.gws[gw] = g
			r.order = append(r.order, gw)
		}
		if len(g.batches) == 0 || (g.size > 0 && g.size+evSize > maxBatchBytes) {
			g.batches = append(g.batches, &streamerv1.OutboxBatch{})
			g.size = 0
		}
		b := g.batches[len(g.batches)-1]
		for i < len(results) && results[i].Gateway == gw {
			op := results[i].Op
			em := &streamerv1.EventMatch{Event: ev, Operation: streamerv1.Operation(op)}
			for ; i < len(results) && results[i].Gateway == gw && results[i].Op == op; i++ {
				em.SubscriptionIds = append(em.SubscriptionIds, results[i].ID)
				g.size += len(results[i].ID) + 2
			}
			b.Matches = append(b.Matches, em)
		}
		g.size += evSize
	}
}

// TestRecentIDsIsTheLRUItReplaced compares recentIDs with the LRU the
// consumer used before, over random batches of which some fail (abort).
func TestRecentIDsIsTheLRUItReplaced(t *testing.T) {
	for _, size := range []int{1, 3, 16} {
		t.Run(fmt.Sprintf("size %d", size), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(size), 1))
			got := newRecentIDs(size)
			lru, _ := simplelru.NewLRU[string, struct{}](size, nil)
			for batch := range 2000 {
				var pending []string
				inBatch := map[string]bool{}
				for range rng.IntN(2 * size) {
					id := fmt.Sprintf("e%d", rng.IntN(3*size))
					want := inBatch[id] || lru.Contains(id)
					if !want {
						inBatch[id] = true
						pending = append(pending, id)
					}
					if replayed := got.replayed([]byte(id)); replayed != want {
						t.Fatalf("batch %d: replayed(%s) = %v, want %v", batch, id, replayed, want)
					}
				}
				if rng.IntN(5) == 0 { // the outbox append failed: the batch is retried
					got.abort()
					continue
				}
				got.commit()
				for _, id := range pending {
					lru.Add(id, struct{}{})
				}
				if len(got.seen) != lru.Len() {
					t.Fatalf("batch %d: %d ids remembered, want %d", batch, len(got.seen), lru.Len())
				}
			}
		})
	}
}

// FuzzLogEntryDecoding checks the wire decoding of event-log entries
// against proto.Unmarshal: whatever it accepts, proto.Unmarshal accepts
// and decodes to the same values; an event it declines to decode,
// proto.Unmarshal rejects too.
func FuzzLogEntryDecoding(f *testing.F) {
	gen := wireGen{rng: rand.New(rand.NewPCG(1, 2))}
	for range 64 {
		f.Add(gen.entry(false))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		raw, ok := wire.LogEntryEvent(payload)
		if !ok {
			return // proto.Unmarshal decides
		}
		var le streamerv1.LogEntry
		err := proto.Unmarshal(payload, &le)
		var w wire.Event
		if !w.Decode(raw) {
			if err == nil {
				t.Fatalf("wire decoding declined an event proto.Unmarshal accepts: %v", le.GetEvent())
			}
			return
		}
		if err != nil {
			t.Fatalf("wire decoding accepted what proto.Unmarshal rejects: %v", err)
		}
		if err := wireEventEquals(&w, le.GetEvent()); err != nil {
			t.Fatal(err)
		}
	})
}

// wireEventEquals reports how w differs from ce.
func wireEventEquals(w *wire.Event, ce *streamerv1.ChangeEvent) error {
	if ce == nil {
		return errors.New("proto.Unmarshal found no event")
	}
	var errs []error
	check := func(name string, got, want any) {
		if fmt.Sprint(got) != fmt.Sprint(want) {
			errs = append(errs, fmt.Errorf("%s = %q, want %q", name, got, want))
		}
	}
	check("event_id", string(w.EventID), ce.GetEventId())
	check("tenant", string(w.Tenant), ce.GetTenant())
	check("collection", string(w.Collection), ce.GetCollection())
	check("document_id", string(w.DocumentID), ce.GetDocumentId())
	check("operation", w.Op, int32(ce.GetOperation()))
	check("document", string(w.Document), string(ce.GetDocument()))
	check("before", string(w.Before), string(ce.GetBefore()))
	check("partition", w.Partition, ce.GetPartition())
	check("position", string(w.Position), ce.GetPosition())
	ev := w.MatchEvent()
	if (ev.Changed == nil) != (ce.GetChangedFields() == nil) || !slices.Equal(ev.Changed, ce.GetChangedFields()) {
		errs = append(errs, fmt.Errorf("changed_fields = %q, want %q", ev.Changed, ce.GetChangedFields()))
	}
	check("match tenant", ev.Tenant, ce.GetTenant())
	check("match collection", ev.Collection, ce.GetCollection())
	check("match id", ev.ID, ce.GetDocumentId())
	return errors.Join(errs...)
}
