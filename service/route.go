package service

import (
	"cmp"
	"slices"

	"google.golang.org/protobuf/proto"

	"github.com/streamerd/streamer/internal/wire"
	"github.com/streamerd/streamer/match"
	streamerv1 "github.com/streamerd/streamer/proto/streamer/v1"
	"github.com/streamerd/streamer/store"
)

// maxBatchBytes bounds the approximate encoded size of one outbox batch (one
// Delivery): a gateway's matches of one read batch are split into several
// outbox entries beyond it, so that Deliveries stay well under gRPC's
// default 4 MiB message limit. One event alone may exceed it.
const maxBatchBytes = 1 << 20

// routerRetain bounds the capacity of the slices a router keeps from one
// read batch to the next: a burst that needs more allocates afresh, and its
// memory is not held once it is over.
const routerRetain = 1 << 16

// router groups one read batch's matches per gateway, keeping event order,
// into outbox batches. It encodes each batch (an OutboxBatch) by hand around
// the events' bytes as read from the log (internal/wire), and reuses its
// bookkeeping from one read batch to the next.
type router struct {
	gws  map[string]int // gateway → index in out
	out  []gatewayOut   // gateways in order of first match; capacity reused
	evs  []routedEvent  // the read batch's routed events
	tail []byte         // the events' overrides, back to back
	ids  []string       // subscription ids of all matches, in routing order
}

// routedEvent is one routed event: its bytes as read, the fields that the
// node sets, which override the publisher's (wire.Event.AppendOverrides),
// and where it was read, which fences its outbox items (store.OutboxItem).
type routedEvent struct {
	raw                []byte
	tailStart, tailEnd int // its overrides: router.tail[tailStart:tailEnd]
	partition          int32
	position           string
}

// gatewayOut is one gateway's matches of the read batch, split into batches.
type gatewayOut struct {
	gateway string
	matches []matchRef // in event order
	starts  []int      // index in matches of each batch's first match
	size    int        // approximate bytes of the last batch
	cut     bool       // the next match starts a new batch (see cut)
	// ended are the gateway's subscriptions the node ended, routed after
	// its matches in an outbox entry of their own, fenced by endedAt.
	ended          []*streamerv1.SubscriptionEnded
	endedPartition int32
	endedAt        string
	// notices are outbox entries of their own (snapshot pages), placed
	// between the gateway's matches where they were routed.
	notices []notice
}

// notice is an encoded outbox entry routed before the gateway's batch
// number before (len(starts) when routed after every match so far).
type notice struct {
	before    int
	payload   []byte
	partition int32
	position  string
}

// matchRef is one EventMatch: an event, an effective operation, and the
// subscriptions router.ids[idStart:idEnd].
type matchRef struct {
	event          int // index in router.evs
	op             match.Op
	idStart, idEnd int
}

func newRouter() *router { return &router{gws: map[string]int{}} }

// reset empties the router for the next read batch.
func (r *router) reset() {
	clear(r.gws)
	r.out = r.out[:0]
	r.evs = reuse(r.evs)
	r.tail = reuse(r.tail)
	r.ids = reuse(r.ids)
}

// reuse returns s emptied, and cleared so that it holds no references into
// the previous read batch; nil when it grew beyond routerRetain.
func reuse[T any](s []T) []T {
	if cap(s) > routerRetain {
		return nil
	}
	clear(s)
	return s[:0]
}

// add routes one event's match results; partition, position and op are
// the event's fields as the node delivers them. results is reordered.
func (r *router) add(ev *wire.Event, partition int32, position string, op match.Op, results []match.Result) {
	if len(results) == 0 {
		return
	}
	// Group by gateway, then by effective operation; ids sorted for
	// deterministic output.
	slices.SortFunc(results, func(a, b match.Result) int {
		return cmp.Or(cmp.Compare(a.Gateway, b.Gateway), cmp.Compare(a.Op, b.Op), cmp.Compare(a.ID, b.ID))
	})
	evi, start := len(r.evs), len(r.tail)
	r.tail = ev.AppendOverrides(r.tail, partition, position, int32(op))
	r.evs = append(r.evs, routedEvent{raw: ev.Raw, tailStart: start, tailEnd: len(r.tail), partition: partition, position: position})
	evSize := len(ev.Document) + len(ev.Before) + 256
	for i := 0; i < len(results); {
		gw := results[i].Gateway
		g := r.gateway(gw)
		if len(g.starts) == 0 || g.cut || (g.size > 0 && g.size+evSize > maxBatchBytes) {
			g.starts = append(g.starts, len(g.matches))
			g.size, g.cut = 0, false
		}
		for i < len(results) && results[i].Gateway == gw {
			m := matchRef{event: evi, op: results[i].Op, idStart: len(r.ids)}
			for ; i < len(results) && results[i].Gateway == gw && results[i].Op == m.op; i++ {
				r.ids = append(r.ids, results[i].ID)
				g.size += len(results[i].ID) + 2
			}
			m.idEnd = len(r.ids)
			g.matches = append(g.matches, m)
		}
		g.size += evSize
	}
}

// cut makes gw's next match start a new outbox batch: its expiry was
// applied, so the matches before and after belong to different
// incarnations of its outbox, which its fence tells apart by the position of
// each batch's first event.
func (r *router) cut(gw string) {
	if i, ok := r.gws[gw]; ok {
		r.out[i].cut = true
	}
}

// gateway returns gw's entry, adding it (with the slices of an entry of an
// earlier read batch) on its first match.
func (r *router) gateway(gw string) *gatewayOut {
	if i, ok := r.gws[gw]; ok {
		return &r.out[i]
	}
	r.gws[gw] = len(r.out)
	if len(r.out) == cap(r.out) {
		r.out = append(r.out, gatewayOut{})
	} else {
		r.out = r.out[:len(r.out)+1]
	}
	g := &r.out[len(r.out)-1]
	*g = gatewayOut{gateway: gw, matches: reuse(g.matches), starts: g.starts[:0], notices: reuse(g.notices)}
	return g
}

// notice routes gw an outbox entry of its own, payload (an encoded
// OutboxBatch), after its matches routed so far and before the next ones;
// position, in partition, fences it like a batch whose first event was read
// there.
func (r *router) notice(gw string, partition int32, position string, payload []byte) {
	g := r.gateway(gw)
	g.notices = append(g.notices, notice{before: len(g.starts), payload: payload, partition: partition, position: position})
	g.cut = true
}

// end routes gw the notice that one of its subscriptions was ended by the
// event at position in partition: after every match of the read batch.
func (r *router) end(gw string, partition int32, position string, e *streamerv1.SubscriptionEnded) {
	g := r.gateway(gw)
	if len(g.ended) == 0 {
		g.endedPartition, g.endedAt = partition, position
	}
	g.ended = append(g.ended, e)
}

// items encodes the outbox entries to append, all gateways together. Each
// payload is a new allocation: the outbox may keep it.
func (r *router) items() []store.OutboxItem {
	n := 0
	for i := range r.out {
		n += len(r.out[i].starts) + len(r.out[i].notices)
		if len(r.out[i].ended) > 0 {
			n++
		}
	}
	if n == 0 {
		return nil
	}
	items := make([]store.OutboxItem, 0, n)
	for i := range r.out {
		g := &r.out[i]
		k := 0 // next notice
		emitNotices := func(before int) {
			for ; k < len(g.notices) && g.notices[k].before == before; k++ {
				nt := &g.notices[k]
				items = append(items, store.OutboxItem{Gateway: g.gateway, Payload: nt.payload, Partition: int(nt.partition), Position: nt.position})
			}
		}
		for j, start := range g.starts {
			emitNotices(j)
			end := len(g.matches)
			if j+1 < len(g.starts) {
				end = g.starts[j+1]
			}
			first := &r.evs[g.matches[start].event]
			items = append(items, store.OutboxItem{Gateway: g.gateway, Payload: r.encode(g.matches[start:end]),
				Partition: int(first.partition), Position: first.position})
		}
		emitNotices(len(g.starts))
		if len(g.ended) > 0 {
			payload, err := proto.Marshal(&streamerv1.OutboxBatch{Ended: g.ended})
			if err != nil {
				panic("service: encoding ended subscriptions: " + err.Error()) // strings and enums only: cannot fail
			}
			items = append(items, store.OutboxItem{Gateway: g.gateway, Payload: payload,
				Partition: int(g.endedPartition), Position: g.endedAt})
		}
	}
	return items
}

// encode returns the OutboxBatch of matches, encoded as proto.Marshal would
// encode it but for each event, whose bytes are the ones read followed by
// the node's overrides.
func (r *router) encode(matches []matchRef) []byte {
	size := 0
	for _, m := range matches {
		size += wire.BatchMatchSize(r.matchSize(m))
	}
	b := make([]byte, 0, size)
	for _, m := range matches {
		ev := &r.evs[m.event]
		b = wire.AppendBatchMatch(b, r.matchSize(m), ev.raw, r.tail[ev.tailStart:ev.tailEnd], int32(m.op), r.ids[m.idStart:m.idEnd])
	}
	return b
}

// matchSize is the encoded size of m's EventMatch.
func (r *router) matchSize(m matchRef) int {
	ev := &r.evs[m.event]
	return wire.EventMatchSize(len(ev.raw)+ev.tailEnd-ev.tailStart, int32(m.op), r.ids[m.idStart:m.idEnd])
}
