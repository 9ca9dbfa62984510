package service

import (
	"cmp"
	"slices"

	"google.golang.org/protobuf/proto"

	"github.com/streamerd/streamer/match"
	streamerv1 "github.com/streamerd/streamer/proto/streamer/v1"
	"github.com/streamerd/streamer/store"
)

// maxBatchBytes bounds the approximate encoded size of one outbox batch (one
// Delivery): a gateway's matches of one read batch are split into several
// outbox entries beyond it, so that Deliveries stay well under gRPC's
// default 4 MiB message limit. One event alone may exceed it.
const maxBatchBytes = 1 << 20

// router groups one read batch's matches per gateway, keeping event order,
// into outbox batches.
type router struct {
	order []string // gateways in order of first match
	gws   map[string]*gatewayBatches
}

type gatewayBatches struct {
	batches []*streamerv1.OutboxBatch
	size    int // approximate bytes of the last batch
}

func newRouter() *router { return &router{gws: map[string]*gatewayBatches{}} }

// reset empties the router for the next read batch.
func (r *router) reset() {
	r.order = r.order[:0]
	clear(r.gws)
}

// add routes one event's match results. results is reordered.
func (r *router) add(ev *streamerv1.ChangeEvent, results []match.Result) {
	if len(results) == 0 {
		return
	}
	// Group by gateway, then by effective operation; ids sorted for
	// deterministic output.
	slices.SortFunc(results, func(a, b match.Result) int {
		return cmp.Or(cmp.Compare(a.Gateway, b.Gateway), cmp.Compare(a.Op, b.Op), cmp.Compare(a.ID, b.ID))
	})
	evSize := len(ev.GetDocument()) + len(ev.GetBefore()) + 256
	for i := 0; i < len(results); {
		gw := results[i].Gateway
		g := r.gws[gw]
		if g == nil {
			g = &gatewayBatches{}
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

// items encodes the outbox entries to append, all gateways together.
func (r *router) items() ([]store.OutboxItem, error) {
	var items []store.OutboxItem
	for _, gw := range r.order {
		for _, b := range r.gws[gw].batches {
			payload, err := proto.Marshal(b)
			if err != nil {
				return nil, err
			}
			items = append(items, store.OutboxItem{Gateway: gw, Payload: payload})
		}
	}
	return items, nil
}
