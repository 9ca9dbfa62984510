package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
	"google.golang.org/protobuf/proto"

	"github.com/streamerd/streamer/match"
	streamerv1 "github.com/streamerd/streamer/proto/streamer/v1"
	"github.com/streamerd/streamer/store"
)

// consumerBlock is the longest wait of one event-log read. Reads wake
// promptly on append, so it only bounds how often an idle consumer loops.
// It is shortened to LeaseTTL/4 for short leases, so that a read rarely
// outlives the lease fence.
const consumerBlock = 500 * time.Millisecond

// consumer processes one event-log partition: it applies control entries to
// the partition's match index in log order, matches events, routes the
// matches into gateway outboxes and acknowledges each read batch after its
// outbox entries are appended. It does not decide ownership: whoever starts
// it (ownership.go) holds the partition's lease, and every call that reads
// or writes the partition goes through the lease fence, so that the
// consumer stops touching the partition the moment the lease is no longer
// known to be valid.
//
// Each partition has its own index: a subscription lives in exactly one
// partition, and a gateway's expiry is applied per partition, so partitions
// never disturb each other's subscriptions.
type consumer struct {
	n        *Node
	p        int
	log      *slog.Logger
	ix       *match.Index
	fence    *leaseFence
	acquired time.Time // start of the Acquire that gave this node the lease

	router  *router
	results []match.Result

	// dedup remembers the ids of the events routed recently (nil when
	// deduplication is off); batchIDs are those of the batch in progress,
	// remembered once its outbox entries are appended.
	dedup    *simplelru.LRU[string, struct{}]
	batchIDs []string
	inBatch  map[string]struct{}
}

func newConsumer(n *Node, p int, fence *leaseFence, acquired time.Time) *consumer {
	c := &consumer{n: n, p: p, log: n.log.With("partition", p), ix: match.NewIndex(n.engine), fence: fence,
		acquired: acquired, router: newRouter()}
	if n.cfg.DedupSize > 0 {
		c.dedup, _ = simplelru.NewLRU[string, struct{}](n.cfg.DedupSize, nil) // size > 0: never fails
		c.inBatch = map[string]struct{}{}
	}
	return c
}

// run consumes until stop is done; work is the context of backend calls
// once a batch was read: it outlives stop so that the in-flight batch is
// finished, and is cancelled to abandon it (lease lost, shutdown timeout).
//
// It first loads the partition's subscriptions, then takes over the group's
// pending entries (left by a previous owner that crashed or lost its lease):
// it waits until claimGrace after the lease was acquired and claims them
// with that min-idle, oldest first, processing each claimed batch before
// claiming the next; only when none is left does it read new entries. After
// a failed batch it claims its own pending entries again (min-idle 0: it
// holds the lease) before reading on, so the partition's order holds.
func (c *consumer) run(stop, work context.Context) {
	for {
		err := c.load(stop)
		if err == nil {
			break
		}
		c.log.Error("loading subscriptions", "err", err)
		if !sleepCtx(stop, retryDelay) {
			return
		}
	}
	if !c.awaitTakeover(stop) {
		return
	}
	batch := c.n.cfg.ReadBatch
	block := min(consumerBlock, c.n.cfg.LeaseTTL/4)
	claim, minIdle := true, c.n.claimGrace()
	swept := time.Now()
	for stop.Err() == nil {
		if !claim && time.Since(swept) >= sweepEvery {
			swept = time.Now()
			claim = c.strays(stop)
		}
		var entries []store.Entry
		err := c.fence.guard(stop, func(ctx context.Context) (err error) {
			if claim {
				entries, err = c.n.backend.Log.ClaimPending(ctx, c.p, c.n.cfg.NodeID, minIdle, batch)
			} else {
				entries, err = c.n.backend.Log.Read(ctx, c.p, c.n.cfg.NodeID, batch, block)
			}
			return err
		})
		if err == nil && claim {
			if minIdle > 0 && len(entries) > 0 {
				c.log.Info("took over the pending entries of the previous owner", "first_batch", len(entries))
			}
			minIdle = 0
			claim = len(entries) > 0
		}
		if err == nil && len(entries) > 0 {
			err = c.process(work, entries)
		}
		if err != nil {
			if stop.Err() != nil || work.Err() != nil {
				return
			}
			if errors.Is(err, errLeaseExpired) {
				c.log.Debug("partition paused: lease not known to be valid", "err", err)
			} else {
				c.log.Error("processing partition, retrying its pending entries", "err", err)
			}
			claim = true
			if !sleepCtx(stop, retryDelay) {
				return
			}
		}
	}
}

// sweepEvery is how often a consumer between batches checks that nothing
// is pending in its partition (see strays).
const sweepEvery = 5 * time.Second

// strays reports whether entries are pending in the partition although this
// consumer, between batches, has none: a previous owner's read that Redis
// served after the takeover claim (a race the lease fence and claimGrace
// make very unlikely). Claiming them then delivers them late, out of
// partition order, rather than never.
func (c *consumer) strays(stop context.Context) bool {
	var pending int64
	err := c.fence.guard(stop, func(ctx context.Context) (err error) {
		pending, err = c.n.backend.Log.Pending(ctx, c.p)
		return err
	})
	if err != nil || pending == 0 {
		return false
	}
	c.log.Warn("entries pending outside any batch of this owner: claiming them (they arrive late, out of order)", "pending", pending)
	return true
}

// awaitTakeover waits until claimGrace after the lease was acquired, so
// that no read of a previous owner can still reach Redis; it returns false
// when stop ended first. Waiting even when nothing is pending matters: a
// previous owner's blocked read that Redis served late would leave entries
// pending that a consumer already reading new ones would never claim in
// order.
func (c *consumer) awaitTakeover(stop context.Context) bool {
	return sleepCtx(stop, time.Until(c.acquired.Add(c.n.claimGrace())))
}

// load indexes the subscriptions of the live gateways that belong to this
// partition.
func (c *consumer) load(ctx context.Context) error {
	subs := c.n.backend.Subscriptions
	gateways, err := subs.Live(ctx)
	if err != nil {
		return err
	}
	loaded := 0
	for _, gw := range gateways {
		all, err := subs.List(ctx, gw)
		if err != nil {
			return err
		}
		for id, data := range all {
			var sub streamerv1.Subscription
			if err := proto.Unmarshal(data, &sub); err != nil {
				c.log.Warn("skipping undecodable stored subscription", "gateway", gw, "subscription", id, "err", err)
				continue
			}
			if PartitionOf(sub.GetTenant(), sub.GetCollection(), c.n.cfg.Partitions) != c.p {
				continue
			}
			if err := c.add(gw, &sub); err != nil {
				c.log.Warn("skipping stored subscription", "gateway", gw, "subscription", id, "err", err)
				continue
			}
			loaded++
		}
	}
	c.log.Debug("partition consumer started", "subscriptions", loaded)
	return nil
}

// add compiles sub and indexes it for gw.
func (c *consumer) add(gw string, sub *streamerv1.Subscription) error {
	compiled, err := c.n.compile(sub)
	if err != nil {
		return err
	}
	return c.ix.Add(match.Subscription{
		Gateway: gw, ID: sub.GetSubscriptionId(), Tenant: sub.GetTenant(), Collection: sub.GetCollection(), Criterion: compiled,
	})
}

// process handles one read batch: apply, match, route, append, ack. Every
// backend call goes through the lease fence.
func (c *consumer) process(ctx context.Context, entries []store.Entry) error {
	c.router.reset()
	c.batchIDs = c.batchIDs[:0]
	clear(c.inBatch)
	log := c.n.backend.Log
	ids := make([]string, len(entries))
	for i, e := range entries {
		ids[i] = e.ID
		if reason := c.apply(e); reason != "" {
			c.log.Warn("dead-lettering log entry", "id", e.ID, "reason", reason)
			if err := c.fence.guard(ctx, func(ctx context.Context) error { return log.DeadLetter(ctx, c.p, e, reason) }); err != nil {
				return fmt.Errorf("dead-lettering %s: %w", e.ID, err)
			}
			c.n.metrics.deadLetters.Inc()
		}
	}
	items, err := c.router.items()
	if err != nil {
		return fmt.Errorf("encoding outbox batch: %w", err)
	}
	if err := c.fence.guard(ctx, func(ctx context.Context) error {
		_, err := c.n.backend.Outboxes.Append(ctx, items)
		return err
	}); err != nil {
		return fmt.Errorf("appending to outboxes: %w", err)
	}
	c.n.metrics.outboxBatches.Add(float64(len(items)))
	if c.dedup != nil {
		for _, id := range c.batchIDs {
			c.dedup.Add(id, struct{}{})
		}
	}
	if err := c.fence.guard(ctx, func(ctx context.Context) error { return log.Ack(ctx, c.p, ids...) }); err != nil {
		return fmt.Errorf("acknowledging: %w", err)
	}
	return nil
}

// replayed reports whether the event id was routed recently (in an earlier
// batch whose outbox entries were appended, or earlier in this batch), and
// otherwise records it as part of this batch.
func (c *consumer) replayed(id string) bool {
	if c.dedup == nil || id == "" {
		return false
	}
	if _, ok := c.inBatch[id]; ok || c.dedup.Contains(id) {
		return true
	}
	c.inBatch[id] = struct{}{}
	c.batchIDs = append(c.batchIDs, id)
	return false
}

// apply handles one entry; it returns why the entry must be dead-lettered,
// or "".
func (c *consumer) apply(e store.Entry) (deadReason string) {
	var le streamerv1.LogEntry
	if err := proto.Unmarshal(e.Payload, &le); err != nil {
		return "undecodable log entry: " + err.Error()
	}
	kind := ""
	switch x := le.GetEntry().(type) {
	case *streamerv1.LogEntry_Event:
		if err := c.event(x.Event, e.ID); err != nil {
			return err.Error()
		}
		return ""
	case *streamerv1.LogEntry_SubscriptionAdded:
		a := x.SubscriptionAdded
		if a.GetGatewayId() == "" || a.GetSubscription().GetSubscriptionId() == "" {
			return "subscription_added without gateway or subscription id"
		}
		if err := c.add(a.GetGatewayId(), a.GetSubscription()); err != nil {
			return "subscription_added does not compile on this node: " + err.Error()
		}
		kind = "subscription_added"
	case *streamerv1.LogEntry_SubscriptionRemoved:
		r := x.SubscriptionRemoved
		if r.GetGatewayId() == "" || r.GetSubscriptionId() == "" {
			return "subscription_removed without gateway or subscription id"
		}
		c.ix.Remove(r.GetGatewayId(), r.GetSubscriptionId())
		kind = "subscription_removed"
	case *streamerv1.LogEntry_GatewayExpired:
		if x.GatewayExpired.GetGatewayId() == "" {
			return "gateway_expired without gateway id"
		}
		c.ix.RemoveGateway(x.GatewayExpired.GetGatewayId())
		kind = "gateway_expired"
	default:
		return "log entry has no content"
	}
	c.n.metrics.controlEntries.WithLabelValues(kind).Inc()
	return ""
}

// errBadEvent marks events that are dead-lettered.
var errBadEvent = errors.New("malformed event")

// event transforms, matches and routes one change event read at position
// id.
func (c *consumer) event(ce *streamerv1.ChangeEvent, id string) error {
	if ce.GetCollection() == "" || ce.GetDocumentId() == "" {
		return fmt.Errorf("%w: collection and document_id are required", errBadEvent)
	}
	op := match.Op(ce.GetOperation())
	if op < match.Create || op > match.Delete {
		return fmt.Errorf("%w: operation %v", errBadEvent, ce.GetOperation())
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
	if c.replayed(ce.GetEventId()) {
		c.n.metrics.eventsDeduplicated.Inc()
		return nil
	}
	c.n.metrics.eventsProcessed.Inc()
	if !match.SoftDelete(ev, c.n.cfg.SoftDeleteField) {
		return nil
	}
	c.results = c.ix.Match(ev, c.results[:0])
	if len(c.results) == 0 {
		return nil
	}
	ce.Partition, ce.Position, ce.Operation = int32(c.p), id, streamerv1.Operation(ev.Op)
	c.n.metrics.eventsMatched.Inc()
	c.n.metrics.matches.Add(float64(len(c.results)))
	c.router.add(ce, c.results)
	return nil
}
