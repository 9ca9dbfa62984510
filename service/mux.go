package service

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/streamerd/streamer/internal/clock"
	"github.com/streamerd/streamer/store"
)

// muxSlice is the longest one multiplexed read waits in the backend. A
// consumer that joins while a read is blocked (after a takeover or an
// error) waits at most that long; an idle node makes 1/muxSlice reads a
// second.
const muxSlice = 20 * time.Millisecond

// readMux reads every partition this node consumes with one backend call
// (store.MultiRouter: one XREADGROUP over all of them, pipelined with the
// script that appends the previous batches' outbox entries and
// acknowledges them). Without it each partition's consumer makes its own
// round trip for every read, and at moderate rates each read brings about
// one event: per-round-trip costs, not matching, then bound the node.
//
// The multiplexer works in rounds. A round's call includes every consumer
// waiting in routeRead; when it returns, the consumers whose partitions
// had entries take them away to process, and the next blocking round
// starts only when all of them are back (or have left). So a batch's
// outbox entries are appended by the very next call, never behind a
// blocked read that does not include them. A partition whose last read
// filled a whole batch has a backlog: when its consumer is back, a round
// that does not block starts at once, without waiting for the others, so
// that under load a busy partition is read as often as its consumer
// keeps up rather than once per round of the slowest. The consumers stay
// in charge of everything else: loading, takeover claims, errors, dead
// letters, shutdown.
//
// A round appends one outbox entry per gateway, not one per partition:
// the batches of all its partitions for one gateway are merged (an
// OutboxBatch is only its repeated matches, so encoded batches concatenate),
// up to maxBatchBytes each. That divides the outbox appends, the gateways'
// reads and the Delivery messages by up to the number of partitions.
//
// A consumer waiting through rounds without entries is answered with none
// every sweepEvery, so that it still checks its partition for stray
// pending entries (consumer.strays): a read whose reply was lost, which
// go-redis may retry on a network error, leaves its entries pending.
//
// Every round's call is fenced by the leases of all its partitions: a
// consumer whose fence has passed is answered errLeaseExpired before the
// call, and the call's deadline is the earliest fence among the others.
type readMux struct {
	n     *Node
	multi store.MultiRouter
	// msgs carries consumers' requests and leaves, in order: each consumer
	// has at most one message outstanding, and a partition at most two
	// consumers (one stopping, one starting).
	msgs chan muxMsg
}

// muxMsg is a consumer's request (req set) or its leaving (req nil): it
// will not call routeRead again before processing something else.
type muxMsg struct {
	p   int
	req *muxRequest
}

// muxRequest is one consumer's wait in routeRead.
type muxRequest struct {
	c      *consumer
	stop   context.Context
	items  []store.OutboxItem
	ack    []string
	routed bool // items appended and ack acknowledged by an earlier round
	reply  chan muxReply
}

type muxReply struct {
	entries []store.Entry
	routed  bool
	err     error
}

func newReadMux(n *Node, multi store.MultiRouter) *readMux {
	return &readMux{n: n, multi: multi, msgs: make(chan muxMsg, 2*n.cfg.Partitions)}
}

// routeRead is Router.RouteRead of c's partition through the
// multiplexer: it appends items, acknowledges ack and returns the next
// entries. It returns within about muxSlice once stop is done. After
// entries were returned, the consumer must call routeRead again or leave.
func (m *readMux) routeRead(stop context.Context, c *consumer, items []store.OutboxItem, ack []string) ([]store.Entry, bool, error) {
	req := c.muxReq // one request at a time: reused
	if req == nil {
		req = &muxRequest{c: c, reply: make(chan muxReply, 1)}
		c.muxReq = req
	}
	req.stop, req.items, req.ack, req.routed = stop, items, ack, false
	m.msgs <- muxMsg{p: c.p, req: req}
	r := <-req.reply
	return r.entries, r.routed, r.err
}

// leave tells the multiplexer that c, which took entries from it, will not
// call routeRead before doing something else (claim, retry, exit).
func (m *readMux) leave(c *consumer) { m.msgs <- muxMsg{p: c.p} }

// run serves rounds until ctx is done. ctx must end only after every
// consumer has stopped: a consumer waiting in routeRead then is answered
// with ctx's error.
func (m *readMux) run(ctx context.Context) {
	st := &muxState{
		waiting: map[int]*muxRequest{}, answered: map[int]time.Time{}, out: map[int]bool{}, backlog: map[int]bool{},
		merge: &batchMerger{open: map[string]int{}},
	}
	for {
		for !st.ready() {
			select {
			case msg := <-m.msgs:
				st.receive(msg)
			case <-ctx.Done():
				for p := range st.waiting {
					st.answer(p, muxReply{err: ctx.Err()})
				}
				return
			}
		}
		for more := true; more; { // whoever else is already waiting
			select {
			case msg := <-m.msgs:
				st.receive(msg)
			default:
				more = false
			}
		}
		m.round(ctx, st)
	}
}

// muxState is what run keeps from round to round.
type muxState struct {
	waiting  map[int]*muxRequest // by partition
	answered map[int]time.Time   // when each partition's consumer last had an answer
	out      map[int]bool        // partitions whose consumers hold entries from the last round
	backlog  map[int]bool        // the partition's last read filled a batch

	routes []store.PartitionRoute // the round's, reused
	order  []int                  // the round's partitions, sorted
	merge  *batchMerger
}

// receive takes a consumer's message: a request, or word that it left.
func (st *muxState) receive(msg muxMsg) {
	delete(st.out, msg.p)
	if msg.req == nil {
		return
	}
	st.waiting[msg.p] = msg.req
	if _, ok := st.answered[msg.p]; !ok {
		st.answered[msg.p] = time.Now()
	}
}

// answer replies to partition p's waiting request.
func (st *muxState) answer(p int, r muxReply) {
	req := st.waiting[p]
	delete(st.waiting, p)
	r.routed = r.routed || req.routed
	st.answered[p] = time.Now()
	req.reply <- r
}

// ready reports whether a round can start: a blocking one once every
// consumer that took entries is back, a non-blocking one as soon as a
// partition with a backlog waits.
func (st *muxState) ready() bool {
	if len(st.waiting) == 0 {
		return false
	}
	if len(st.out) == 0 {
		return true
	}
	for p := range st.waiting {
		if st.backlog[p] {
			return true
		}
	}
	return false
}

// round makes one call for every waiting consumer whose fence still holds:
// it appends all their outbox entries, acknowledges their batches and reads
// their partitions, then answers each.
func (m *readMux) round(ctx context.Context, st *muxState) {
	// Stopped consumers and lapsed fences leave first.
	deadline := time.Time{}
	st.order = st.order[:0]
	for p, req := range st.waiting {
		if err := req.stop.Err(); err != nil {
			st.answer(p, muxReply{err: err})
			continue
		}
		d, ok := req.c.fence.deadline()
		if !ok {
			st.answer(p, muxReply{err: errLeaseExpired})
			continue
		}
		if deadline.IsZero() || d.Before(deadline) {
			deadline = d
		}
		st.order = append(st.order, p)
	}
	if len(st.order) == 0 {
		return
	}
	slices.Sort(st.order)
	st.routes = st.routes[:0]
	st.merge.reset()
	for _, p := range st.order {
		req := st.waiting[p]
		st.merge.add(req.items)
		st.routes = append(st.routes, store.PartitionRoute{P: p, Ack: req.ack})
	}
	st.routes[0].Items = st.merge.done() // all appended together, before any ack
	block := muxSlice
	if len(st.out) > 0 { // a round for a backlog: the others will be back soon
		block = 0
	}
	cctx, cancel := clock.WithDeadline(ctx, m.n.cfg.Clock, deadline) // the fences' clock
	routed, err := m.multi.RouteReadMany(cctx, m.n.cfg.NodeID, st.routes, m.n.cfg.ReadBatch, block)
	cut := err != nil && ctx.Err() == nil && cctx.Err() != nil
	cancel()
	if routed {
		m.n.metrics.outboxBatches.Add(float64(len(st.merge.items)))
		for _, p := range st.order {
			req := st.waiting[p]
			req.routed, req.items, req.ack = true, nil, nil
		}
	}
	if err != nil {
		if cut {
			err = fmt.Errorf("%w: %v", errLeaseExpired, err)
		}
		for _, p := range st.order {
			st.answer(p, muxReply{err: err})
		}
		return
	}
	for i, p := range st.order {
		entries := st.routes[i].Entries
		st.backlog[p] = len(entries) >= m.n.cfg.ReadBatch
		switch {
		case len(entries) > 0:
			st.answer(p, muxReply{entries: entries})
			st.out[p] = true
		case time.Since(st.answered[p]) >= sweepEvery:
			st.answer(p, muxReply{}) // idle: time for its sweep
		}
	}
	clear(st.routes) // drop references to payloads
	st.merge.reset()
}

// batchMerger merges outbox items per gateway: each gateway's payloads, in
// the order added, are concatenated into one item while it stays within
// maxBatchBytes. Payloads added are never modified: a merged item is a new
// buffer of exactly its size, made by done.
type batchMerger struct {
	items  []store.OutboxItem
	open   map[string]int // gateway → index in items of its item still growing
	pieces [][][]byte     // per item, the payloads it is made of
	sizes  []int          // per item, the bytes of its pieces
}

func (b *batchMerger) reset() {
	clear(b.items)
	b.items = b.items[:0]
	for i := range b.pieces {
		clear(b.pieces[i])
		b.pieces[i] = b.pieces[i][:0]
	}
	b.pieces, b.sizes = b.pieces[:0], b.sizes[:0]
	clear(b.open)
}

func (b *batchMerger) add(items []store.OutboxItem) {
	for _, it := range items {
		i, ok := b.open[it.Gateway]
		if ok && b.sizes[i]+len(it.Payload) <= maxBatchBytes {
			b.pieces[i] = append(b.pieces[i], it.Payload)
			b.sizes[i] += len(it.Payload)
			continue
		}
		b.open[it.Gateway] = len(b.items)
		b.items = append(b.items, store.OutboxItem{Gateway: it.Gateway, Payload: it.Payload})
		if len(b.pieces) < cap(b.pieces) {
			b.pieces = b.pieces[:len(b.pieces)+1]
		} else {
			b.pieces = append(b.pieces, nil)
		}
		b.pieces[len(b.pieces)-1] = append(b.pieces[len(b.pieces)-1], it.Payload)
		b.sizes = append(b.sizes, len(it.Payload))
	}
}

// done joins the items made of several payloads and returns all items.
func (b *batchMerger) done() []store.OutboxItem {
	for i, ps := range b.pieces {
		if len(ps) > 1 {
			joined := make([]byte, 0, b.sizes[i])
			for _, p := range ps {
				joined = append(joined, p...)
			}
			b.items[i].Payload = joined
		}
	}
	return b.items
}
