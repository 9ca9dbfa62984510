package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	"github.com/streamerd/streamer/internal/clock"
	"github.com/streamerd/streamer/internal/wire"
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
// outbox entries are appended, both in the round trip of the next read. It
// does not decide ownership: whoever starts
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
	acquired time.Time // when this consumer was made, just after its lease was acquired (system clock: the grace bounds Redis's late work)

	router  *router
	results []match.Result
	// unrouted are the outbox entries of the batch processed last, and
	// unacked its entry ids: the next read appends and acknowledges them.
	unrouted []store.OutboxItem
	unacked  []string

	// wire is the event being processed, ev the same decoded for matching;
	// both are reused from event to event.
	wire wire.Event
	ev   match.Event
	// doc and before are the top-level maps ev's documents are parsed into,
	// reused too: nothing keeps a document past its event's matching.
	doc, before map[string]any

	// muxReq is this consumer's request to the read multiplexer, reused.
	muxReq *muxRequest

	// dedup remembers the ids of the events routed recently (nil when
	// deduplication is off).
	dedup *recentIDs

	// exceeded collects the index's reports of CEL evaluations over the
	// cost limit during one event's matching (the index may report from
	// several goroutines).
	exceededMu sync.Mutex
	exceeded   []match.CostExceeded
	// ending are the subscriptions suspended during the read batch, ended
	// once it is processed.
	ending []endedSub

	// fair accounts the partition's processing time per tenant; deferred
	// holds a read batch's entries of heavy tenants (capacity reused).
	fair     *fairness
	deferred []store.Entry
	// peek decodes an entry's tenant before it is applied; lastTenant is
	// the tenant name last seen (see tenantName); lastEvent reports that
	// the entry last applied was an event (c.wire holds it).
	peek       wire.Event
	lastTenant string
	lastEvent  bool

	// snapDoc is the map snapshot documents are parsed into, reused.
	snapDoc map[string]any
	// skips holds, per subscription whose snapshot was read from a
	// database, the cluster time it was read at (skipSnapshotted).
	skips map[match.Member]uint64
}

// endedSub is a subscription the consumer ends: suspended by the index at
// the event read at position.
type endedSub struct {
	match.Member
	tenant   string
	position string
	reason   string // for the notice, after "subscription %q ended: "
}

func newConsumer(n *Node, p int, fence *leaseFence) *consumer {
	c := &consumer{n: n, p: p, log: n.log.With("partition", p), ix: match.NewIndex(n.engine), fence: fence,
		acquired: time.Now(), router: newRouter()}
	if n.cfg.DedupSize > 0 {
		c.dedup = newRecentIDs(n.cfg.DedupSize)
	}
	c.fair = newFairness(n.cfg.Clock, c.fairWindowClosed)
	c.ix.OnCostExceeded = func(ce match.CostExceeded) {
		c.exceededMu.Lock()
		defer c.exceededMu.Unlock()
		c.exceeded = append(c.exceeded, ce)
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
	if !c.loadSubscriptions(stop) || !c.awaitTakeover(stop) {
		return
	}
	r := &partitionReader{c: c, mux: c.n.mux, claim: true, minIdle: c.n.claimGrace(), swept: time.Now(),
		batch: c.n.cfg.ReadBatch, block: min(consumerBlock, c.n.cfg.LeaseTTL/4)}
	defer c.finishLastBatch(work)
	defer r.leave() // first, before finishing the last batch
	for stop.Err() == nil {
		r.sweepIfDue(stop)
		entries, err := r.next(stop)
		if err == nil && len(entries) > 0 {
			err = c.process(work, entries)
		}
		if err != nil && !r.pause(stop, work, err) {
			return
		}
	}
}

// loadSubscriptions loads the partition's subscriptions, retrying until it
// succeeds; false when stop ended first.
func (c *consumer) loadSubscriptions(stop context.Context) bool {
	for {
		err := c.load(stop)
		if err == nil {
			return true
		}
		c.log.Error("loading subscriptions", "err", err)
		if !clock.Sleep(stop, c.n.cfg.Clock, retryDelay) {
			return false
		}
	}
}

// finishLastBatch appends and acknowledges the last batch processed, unless
// work was cancelled (its entries then stay pending for the next owner).
func (c *consumer) finishLastBatch(work context.Context) {
	if len(c.unacked) > 0 && work.Err() == nil {
		if err := c.fence.guard(work, c.flush); err != nil {
			c.log.Warn("finishing the last batch; its entries stay pending for the next owner", "err", err)
		}
	}
}

// partitionReader is where a consumer's next entries come from: claimed
// pending entries (after a takeover or a failed batch), the read
// multiplexer (mux.go), or its own reads. Each read also appends and
// acknowledges the previous batch.
type partitionReader struct {
	c       *consumer
	mux     *readMux // nil without a store.MultiRouter
	fromMux bool     // holding entries the multiplexer returned: must come back or leave
	claim   bool     // claim pending entries before reading new ones
	minIdle time.Duration
	swept   time.Time // last check for stray pending entries
	batch   int
	block   time.Duration
}

// leave gives the multiplexer's round back, if held.
func (r *partitionReader) leave() {
	if r.fromMux {
		r.mux.leave(r.c)
		r.fromMux = false
	}
}

// sweepIfDue looks for stray pending entries every sweepEvery between
// batches. Still holding the multiplexer's round, it costs one more round
// trip, while leaving would cost the way back in, up to muxSlice.
func (r *partitionReader) sweepIfDue(stop context.Context) {
	if !r.claim && time.Since(r.swept) >= sweepEvery {
		r.swept = time.Now()
		r.claim = r.c.strays(stop)
	}
}

// next returns the next entries to process (none when a blocking read timed
// out).
func (r *partitionReader) next(stop context.Context) ([]store.Entry, error) {
	c := r.c
	var entries []store.Entry
	var err error
	switch {
	case r.claim:
		r.leave()
		err = c.fence.guard(stop, func(ctx context.Context) (err error) {
			if err := c.flush(ctx); err != nil {
				return err
			}
			entries, err = c.n.backend.Log.ClaimPending(ctx, c.p, c.n.cfg.NodeID, r.minIdle, r.batch)
			return err
		})
	case r.mux != nil:
		var routed bool
		entries, routed, err = r.mux.routeRead(stop, c, c.unrouted, c.unacked)
		if routed {
			c.routed()
		}
		r.fromMux = err == nil && len(entries) > 0
		if err == nil && len(entries) == 0 {
			r.swept = time.Time{} // the multiplexer's idle answer: time to sweep
		}
	default:
		err = c.fence.guard(stop, func(ctx context.Context) (err error) {
			var routed bool
			entries, routed, err = c.n.backend.Router.RouteRead(ctx, c.p, c.n.cfg.NodeID, c.unrouted, c.unacked, r.batch, r.block)
			if routed {
				c.n.metrics.outboxBatches.Add(float64(len(c.unrouted)))
				c.routed()
			}
			return err
		})
	}
	if err == nil && r.claim {
		if r.minIdle > 0 && len(entries) > 0 {
			c.log.Info("took over the pending entries of the previous owner", "first_batch", len(entries))
		}
		r.minIdle = 0
		r.claim = len(entries) > 0
	}
	return entries, err
}

// pause handles a failed read or batch: the consumer claims its pending
// entries again after retryDelay, so the partition's order holds. It
// returns false when the consumer must stop.
func (r *partitionReader) pause(stop, work context.Context, err error) bool {
	r.leave()
	if stop.Err() != nil || work.Err() != nil {
		return false
	}
	if errors.Is(err, errLeaseExpired) {
		r.c.log.Debug("partition paused: lease not known to be valid", "err", err)
	} else {
		r.c.log.Error("processing partition, retrying its pending entries", "err", err)
	}
	r.claim = true
	return clock.Sleep(stop, r.c.n.cfg.Clock, retryDelay)
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
		if err := c.flush(ctx); err != nil {
			return err
		}
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

// load indexes the subscriptions of the registered gateways that belong to this
// partition: only those (ListPartition), so that taking a partition over
// costs what moves, not every subscription of every gateway.
func (c *consumer) load(ctx context.Context) error {
	subs := c.n.backend.Subscriptions
	// Every registered gateway, also those past their deadline that no
	// janitor has expired yet: their heartbeats may not have reached Redis
	// (an outage, a Redis Cluster failover of the registry's master), and
	// their subscriptions stand until a GatewayExpired entry removes them
	// in log order. Skipping them would drop their events silently.
	gateways, err := subs.Live(ctx)
	if err != nil {
		return err
	}
	late, err := subs.Expired(ctx, c.n.cfg.Clock.Now())
	if err != nil {
		return err
	}
	gateways = append(gateways, late...)
	loaded := 0
	for _, gw := range gateways {
		all, err := subs.ListPartition(ctx, gw, c.p)
		if err != nil {
			return err
		}
		for id, data := range all {
			var sub streamerv1.Subscription
			if err := proto.Unmarshal(data, &sub); err != nil {
				c.log.Warn("skipping undecodable stored subscription", "gateway", gw, "subscription", id, "err", err)
				continue
			}
			if store.PartitionOf(sub.GetTenant(), sub.GetCollection(), c.n.cfg.Partitions) != c.p {
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
	return c.addCompiled(gw, sub, compiled)
}

// cooling ends, without evaluating it, a subscription added at position
// whose CEL criterion is in its cooldown after being ended for its cost
// (another node accepted it, or it was subscribed before the ban).
func (c *consumer) cooling(gw string, sub *streamerv1.Subscription, compiled *match.Compiled, position string) bool {
	left := c.n.bans.banned(sub.GetTenant(), sub.GetCollection(), compiled.Key())
	if left <= 0 {
		return false
	}
	c.ending = append(c.ending, endedSub{Member: match.Member{Gateway: gw, ID: sub.GetSubscriptionId()}, tenant: sub.GetTenant(), position: position,
		reason: fmt.Sprintf("the same CEL expression ran over the cost limit (--cel-cost-limit) in this collection recently; it is refused for %v more", left.Round(time.Second))})
	return true
}

// addCompiled indexes sub, compiled, for gw.
func (c *consumer) addCompiled(gw string, sub *streamerv1.Subscription, compiled *match.Compiled) error {
	return c.ix.Add(match.Subscription{
		Gateway: gw, ID: sub.GetSubscriptionId(), Tenant: sub.GetTenant(), Collection: sub.GetCollection(), Criterion: compiled,
	})
}

// process handles one read batch: apply, match, route, append, ack. Every
// backend call goes through the lease fence.
func (c *consumer) process(ctx context.Context, entries []store.Entry) error {
	c.router.reset()
	if c.dedup != nil {
		c.dedup.abort() // the ids of a failed attempt at this batch
	}
	c.fair.rotate()
	ids := make([]string, len(entries))
	deferred := c.deferred[:0]
	for i, e := range entries {
		ids[i] = e.ID
		if c.fair.anyHeavy() && c.fair.isHeavy(c.tenantOf(e)) {
			deferred = append(deferred, e)
			continue
		}
		if err := c.applyEntry(ctx, e); err != nil {
			return err
		}
	}
	if len(deferred) > 0 {
		if err := c.routeNow(ctx); err != nil {
			return err
		}
		for _, e := range deferred {
			c.n.metrics.tenantDeferred.WithLabelValues(c.tenantOf(e)).Inc()
			if err := c.applyEntry(ctx, e); err != nil {
				return err
			}
		}
		clear(deferred)
		c.deferred = deferred[:0]
	}
	if err := c.endSuspended(ctx); err != nil {
		return err
	}
	// The outbox entries are appended and the batch acknowledged by the
	// next read (Router.RouteRead), in one round trip, or by flush.
	c.unrouted = c.router.items()
	c.unacked = ids
	return nil
}

// applyEntry applies one entry, charging its time to its tenant, and
// dead-letters it when it must be.
func (c *consumer) applyEntry(ctx context.Context, e store.Entry) error {
	start := time.Now() // real time: what the entry cost this node
	reason := c.apply(e)
	if c.lastEvent {
		c.fair.charge(c.tenantName(c.wire.Tenant), time.Since(start))
	}
	if reason == "" {
		return nil
	}
	c.log.Warn("dead-lettering log entry", "id", e.ID, "reason", reason)
	if err := c.fence.guard(ctx, func(ctx context.Context) error { return c.n.backend.Log.DeadLetter(ctx, c.p, e, reason) }); err != nil {
		return fmt.Errorf("dead-lettering %s: %w", e.ID, err)
	}
	c.n.metrics.deadLetters.Inc()
	return nil
}

// routeNow appends the outbox entries routed so far in the read batch,
// before the deferred entries are processed; the batch is acknowledged
// with the rest (a failure replays it whole).
func (c *consumer) routeNow(ctx context.Context) error {
	if err := c.endSuspended(ctx); err != nil {
		return err
	}
	items := c.router.items()
	c.router.reset()
	if len(items) == 0 {
		return nil
	}
	if err := c.fence.guard(ctx, func(ctx context.Context) error {
		_, err := c.n.backend.Outboxes.Append(ctx, items)
		return err
	}); err != nil {
		return fmt.Errorf("appending to outboxes: %w", err)
	}
	c.n.metrics.outboxBatches.Add(float64(len(items)))
	return nil
}

// tenantName returns b as a string, without allocating when it is the
// tenant of the previous call.
func (c *consumer) tenantName(b []byte) string {
	if string(b) != c.lastTenant {
		c.lastTenant = string(b)
	}
	return c.lastTenant
}

// tenantOf returns the tenant of an entry before it is applied: the event's,
// or the subscription's of a subscription control entry ("" for other
// entries, never deferred).
func (c *consumer) tenantOf(e store.Entry) string {
	if raw, ok := wire.LogEntryEvent(e.Payload); ok && c.peek.Decode(raw) {
		return c.tenantName(c.peek.Tenant)
	}
	var le streamerv1.LogEntry
	if proto.Unmarshal(e.Payload, &le) != nil {
		return ""
	}
	switch x := le.GetEntry().(type) {
	case *streamerv1.LogEntry_Event:
		return x.Event.GetTenant()
	case *streamerv1.LogEntry_SubscriptionAdded:
		return x.SubscriptionAdded.GetSubscription().GetTenant()
	case *streamerv1.LogEntry_SubscriptionRemoved:
		return x.SubscriptionRemoved.GetTenant()
	}
	return ""
}

// fairWindowClosed exports a fairness window and logs the tenants whose
// entries are deferred from now on, or no longer.
func (c *consumer) fairWindowClosed(used map[string]time.Duration, became, ended []string) {
	for t, d := range used {
		c.n.metrics.tenantTime.WithLabelValues(t).Add(d.Seconds())
	}
	for _, t := range became {
		c.log.Warn("tenant uses more than its share of the partition: its entries are processed after the other tenants' in each batch",
			"tenant", t, "used_ms", used[t].Milliseconds(), "window", fairWindow, "tenants", len(used))
	}
	for _, t := range ended {
		c.log.Info("tenant back within its share of the partition: its entries are no longer deferred", "tenant", t, "used_ms", used[t].Milliseconds())
	}
}

// routed records that the processed batch's outbox entries were appended
// and its entries acknowledged. Whoever appended them counts the outbox
// entries: the read multiplexer merges the batches of many partitions.
func (c *consumer) routed() {
	if c.dedup != nil {
		c.dedup.commit()
	}
	c.unrouted, c.unacked = nil, nil
}

// flush appends the processed batch's outbox entries and acknowledges it,
// when no read did.
func (c *consumer) flush(ctx context.Context) error {
	if len(c.unacked) == 0 {
		return nil
	}
	if len(c.unrouted) > 0 {
		if _, err := c.n.backend.Outboxes.Append(ctx, c.unrouted); err != nil {
			return fmt.Errorf("appending to outboxes: %w", err)
		}
		c.n.metrics.outboxBatches.Add(float64(len(c.unrouted)))
		// Appended: if the acknowledgement fails (a shutdown cancels ctx
		// between the two), the retry only acknowledges.
		c.unrouted = nil
	}
	if err := c.n.backend.Log.Ack(ctx, c.p, c.unacked...); err != nil {
		return fmt.Errorf("acknowledging: %w", err)
	}
	c.routed()
	return nil
}

// replayed reports whether the event id was routed recently (in an earlier
// batch whose outbox entries were appended, or earlier in this batch), and
// otherwise records it as part of this batch.
func (c *consumer) replayed(id []byte) bool {
	return c.dedup != nil && len(id) > 0 && c.dedup.replayed(id)
}

// apply handles one entry; it returns why the entry must be dead-lettered,
// or "".
func (c *consumer) apply(e store.Entry) (deadReason string) {
	c.lastEvent = false
	// An event, nearly every entry, is read without decoding it whole
	// (internal/wire). Control entries, and whatever that declines, go through
	// proto.Unmarshal, whose error is the reason to dead-letter.
	if raw, ok := wire.LogEntryEvent(e.Payload); ok && c.wire.Decode(raw) {
		c.lastEvent = true
		if err := c.event(e.ID); err != nil {
			return err.Error()
		}
		return ""
	}
	var le streamerv1.LogEntry
	if err := proto.Unmarshal(e.Payload, &le); err != nil {
		return "undecodable log entry: " + err.Error()
	}
	kind := ""
	switch x := le.GetEntry().(type) {
	case *streamerv1.LogEntry_Event:
		// An event encoded oddly (its entry field repeated, which protobuf
		// merges): routed as protobuf reads it.
		raw, err := proto.Marshal(x.Event)
		if err != nil || !c.wire.Decode(raw) { // proto.Unmarshal accepted it: cannot happen
			return "undecodable log entry: event does not re-encode"
		}
		if err := c.event(e.ID); err != nil {
			return err.Error()
		}
		return ""
	case *streamerv1.LogEntry_SubscriptionAdded:
		a := x.SubscriptionAdded
		if a.GetGatewayId() == "" || a.GetSubscription().GetSubscriptionId() == "" {
			return "subscription_added without gateway or subscription id"
		}
		compiled, err := c.n.compile(a.GetSubscription())
		if err != nil {
			return "subscription_added does not compile on this node: " + err.Error()
		}
		c.forgetSkip(a.GetGatewayId(), a.GetSubscription().GetSubscriptionId())
		if c.cooling(a.GetGatewayId(), a.GetSubscription(), compiled, e.ID) {
			kind = "subscription_added"
			break
		}
		if err := c.addCompiled(a.GetGatewayId(), a.GetSubscription(), compiled); err != nil {
			return "subscription_added does not compile on this node: " + err.Error()
		}
		if a.GetSubscription().GetSnapshot() != nil {
			c.snapshot(a.GetGatewayId(), a.GetSubscription(), compiled, e.ID)
		}
		kind = "subscription_added"
	case *streamerv1.LogEntry_SubscriptionRemoved:
		r := x.SubscriptionRemoved
		if r.GetGatewayId() == "" || r.GetSubscriptionId() == "" {
			return "subscription_removed without gateway or subscription id"
		}
		c.ix.Remove(r.GetGatewayId(), r.GetSubscriptionId())
		c.forgetSkip(r.GetGatewayId(), r.GetSubscriptionId())
		kind = "subscription_removed"
	case *streamerv1.LogEntry_GatewayExpired:
		if x.GatewayExpired.GetGatewayId() == "" {
			return "gateway_expired without gateway id"
		}
		c.ix.RemoveGateway(x.GatewayExpired.GetGatewayId())
		c.router.cut(x.GatewayExpired.GetGatewayId())
		kind = "gateway_expired"
	default:
		return "log entry has no content"
	}
	c.n.metrics.controlEntries.WithLabelValues(kind).Inc()
	return ""
}

// costExceeded counts the CEL evaluations the event's matching stopped at
// the cost limit, per tenant, and keeps the subscriptions it suspended for
// endSuspended.
func (c *consumer) costExceeded(position string) {
	c.exceededMu.Lock()
	defer c.exceededMu.Unlock()
	for _, ce := range c.exceeded {
		c.n.metrics.celOverLimit.WithLabelValues(ce.Tenant).Inc()
		if len(ce.Suspended) == 0 {
			continue
		}
		c.log.Warn("CEL criterion ran over the cost limit "+strconv.Itoa(match.SuspendAfter)+" times in a row: ending its subscriptions, and refusing it for "+costCooldown.String(),
			"tenant", ce.Tenant, "collection", ce.Collection, "criterion", ce.Criterion, "subscriptions", len(ce.Suspended),
			"cost_limit", c.n.engine.CostLimit(), "position", position)
		c.n.bans.ban(ce.Tenant, ce.Collection, ce.Criterion)
		reason := fmt.Sprintf("its CEL expression ran over the cost limit of one evaluation (%d, --cel-cost-limit) on %d events in a row (the last at %s in partition %d); it is refused in this collection for %v",
			c.n.engine.CostLimit(), match.SuspendAfter, position, c.p, costCooldown)
		for _, m := range ce.Suspended {
			c.ending = append(c.ending, endedSub{Member: m, tenant: ce.Tenant, position: position, reason: reason})
		}
	}
	c.exceeded = c.exceeded[:0]
}

// endSuspended ends the subscriptions suspended during the read batch: it
// deletes them from the store, removes them from the index, and routes each
// gateway a notice (Delivery.ended) after its matches.
func (c *consumer) endSuspended(ctx context.Context) error {
	if len(c.ending) == 0 {
		return nil
	}
	for _, e := range c.ending {
		if err := c.fence.guard(ctx, func(ctx context.Context) error {
			_, err := c.n.backend.Subscriptions.Delete(ctx, e.Gateway, e.ID)
			return err
		}); err != nil {
			return fmt.Errorf("ending subscription %s/%s: %w", e.Gateway, e.ID, err)
		}
		c.ix.Remove(e.Gateway, e.ID)
		c.n.metrics.celEnded.WithLabelValues(e.tenant).Inc()
		c.router.end(e.Gateway, int32(c.p), e.position, &streamerv1.SubscriptionEnded{SubscriptionId: e.ID, Error: errorf(
			streamerv1.ErrorCode_ERROR_CODE_COST_LIMIT, "streamer: subscription %q ended: %s", e.ID, e.reason)})
	}
	c.ending = c.ending[:0]
	return nil
}

// errBadEvent marks events that are dead-lettered.
var errBadEvent = errors.New("malformed event")

// event transforms, matches and routes the change event c.wire, read at
// position id.
func (c *consumer) event(id string) error {
	w := &c.wire
	if len(w.Collection) == 0 || len(w.DocumentID) == 0 {
		return fmt.Errorf("%w: collection and document_id are required", errBadEvent)
	}
	// As always, an operation becomes a match.Op by its low 8 bits.
	if op := match.Op(w.Op); op < match.Create || op > match.Delete {
		return fmt.Errorf("%w: operation %v", errBadEvent, streamerv1.Operation(w.Op))
	}
	if op := match.Op(w.Op); op != match.Delete && len(w.Document) == 0 {
		return fmt.Errorf("%w: %v without document", errBadEvent, streamerv1.Operation(w.Op))
	}
	if !utf8.Valid(w.Document) || !utf8.Valid(w.Before) {
		return fmt.Errorf("%w: document or before is not valid UTF-8", errBadEvent)
	}
	c.ev = w.MatchEvent()
	ev := &c.ev
	var err error
	if len(w.Document) > 0 {
		if c.doc, err = match.ParseDocumentInto(c.doc, w.Document); err != nil {
			return fmt.Errorf("%w: document: %v", errBadEvent, err)
		}
		ev.Doc = c.doc
	}
	if len(w.Before) > 0 {
		if c.before, err = match.ParseDocumentInto(c.before, w.Before); err != nil {
			return fmt.Errorf("%w: before: %v", errBadEvent, err)
		}
		ev.Before = c.before
	}
	if c.replayed(w.EventID) {
		c.n.metrics.eventsDeduplicated.Inc()
		return nil
	}
	c.n.metrics.eventsProcessed.Inc()
	keep := match.SoftDelete(ev, c.n.cfg.SoftDeleteField)
	c.recordDocument(ev, keep)
	if !keep {
		return nil
	}
	c.results = c.ix.Match(ev, c.results[:0])
	c.skipSnapshotted(w.ClusterTime)
	c.costExceeded(id)
	if len(c.results) == 0 {
		return nil
	}
	c.n.metrics.eventsMatched.Inc()
	c.n.metrics.matches.Add(float64(len(c.results)))
	c.router.add(w, int32(c.p), id, ev.Op, c.results)
	return nil
}
