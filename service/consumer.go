package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/streamerd/streamer/match"
	streamerv1 "github.com/streamerd/streamer/proto/streamer/v1"
	"github.com/streamerd/streamer/store"
)

// consumerBlock is the longest wait of one event-log read. Reads wake
// promptly on append, so it only bounds how often an idle consumer loops.
const consumerBlock = 500 * time.Millisecond

// consumer processes one event-log partition: it applies control entries to
// the partition's match index in log order, matches events, routes the
// matches into gateway outboxes and acknowledges each read batch after its
// outbox entries are appended. It does not decide ownership: whoever starts
// it (ownership.go) holds the partition's lease.
//
// Each partition has its own index: a subscription lives in exactly one
// partition, and a gateway's expiry is applied per partition, so partitions
// never disturb each other's subscriptions.
type consumer struct {
	n   *Node
	p   int
	log *slog.Logger
	ix  *match.Index

	router  *router
	results []match.Result
}

func newConsumer(n *Node, p int) *consumer {
	return &consumer{n: n, p: p, log: n.log.With("partition", p), ix: match.NewIndex(n.engine), router: newRouter()}
}

// run consumes until stop is done; work is the context of backend calls
// once a batch was read: it outlives stop so that the in-flight batch is
// finished, and is cancelled to abandon it (lease lost, shutdown timeout).
// It first loads the partition's subscriptions, then processes the group's
// pending entries (left by a previous owner or a failed batch), then new
// ones.
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
	batch := c.n.cfg.ReadBatch
	claim := true
	for stop.Err() == nil {
		var entries []store.Entry
		var err error
		if claim {
			entries, err = c.n.backend.Log.ClaimPending(stop, c.p, c.n.cfg.NodeID, 0, batch)
			claim = err != nil || len(entries) > 0
		} else {
			entries, err = c.n.backend.Log.Read(stop, c.p, c.n.cfg.NodeID, batch, consumerBlock)
		}
		if err == nil && len(entries) > 0 {
			err = c.process(work, entries)
		}
		if err != nil {
			if stop.Err() != nil || work.Err() != nil {
				return
			}
			c.log.Error("processing partition, retrying its pending entries", "err", err)
			claim = true
			if !sleepCtx(stop, retryDelay) {
				return
			}
		}
	}
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

// process handles one read batch: apply, match, route, append, ack.
func (c *consumer) process(ctx context.Context, entries []store.Entry) error {
	c.router.reset()
	ids := make([]string, len(entries))
	for i, e := range entries {
		ids[i] = e.ID
		if reason := c.apply(e); reason != "" {
			c.log.Warn("dead-lettering log entry", "id", e.ID, "reason", reason)
			if err := c.n.backend.Log.DeadLetter(ctx, c.p, e, reason); err != nil {
				return fmt.Errorf("dead-lettering %s: %w", e.ID, err)
			}
			c.n.metrics.deadLetters.Inc()
		}
	}
	items, err := c.router.items()
	if err != nil {
		return fmt.Errorf("encoding outbox batch: %w", err)
	}
	if _, err := c.n.backend.Outboxes.Append(ctx, items); err != nil {
		return fmt.Errorf("appending to outboxes: %w", err)
	}
	c.n.metrics.outboxBatches.Add(float64(len(items)))
	if err := c.n.backend.Log.Ack(ctx, c.p, ids...); err != nil {
		return fmt.Errorf("acknowledging: %w", err)
	}
	return nil
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
