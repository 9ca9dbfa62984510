package service

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/streamerd/streamer/match"
	streamerv1 "github.com/streamerd/streamer/proto/streamer/v1"
	"github.com/streamerd/streamer/store"
)

// subscribe validates and compiles a subscription, stores it, announces it
// to its partition with a SubscriptionAdded control entry, and only then
// answers, so that every event appended after the answer is matched against
// it. Invalid input is answered with a precise error and the session stays
// usable; fatal is set only when the gateway turned out to have expired.
func (s *session) subscribe(ctx context.Context, m *streamerv1.Subscribe) (res *streamerv1.SubscribeResult, fatal *streamerv1.Error) {
	n := s.n
	sub := m.GetSubscription()
	res = &streamerv1.SubscribeResult{SubscriptionId: sub.GetSubscriptionId()}
	if e := n.validateSubscription(sub); e != nil {
		res.Error = e
		return res, nil
	}
	// The snapshot is a request, answered once at the control entry's
	// position: the stored subscription, which a new partition owner
	// loads, has none.
	snap := sub.Snapshot
	sub.Snapshot = nil
	data, err := proto.MarshalOptions{Deterministic: true}.Marshal(sub)
	sub.Snapshot = snap
	if err != nil {
		res.Error = errorf(streamerv1.ErrorCode_ERROR_CODE_INTERNAL, "streamer: encoding subscription: %v", err)
		return res, nil
	}
	unavailable := func(what string, err error) (*streamerv1.SubscribeResult, *streamerv1.Error) {
		res.Error = errorf(streamerv1.ErrorCode_ERROR_CODE_UNAVAILABLE, "streamer: %s: %v", what, err)
		return res, nil
	}
	gw, id, p := s.gateway, sub.GetSubscriptionId(), store.PartitionOf(sub.GetTenant(), sub.GetCollection(), n.cfg.Partitions)

	// Replacing a subscription that lived in another partition: remove it
	// there first.
	old, found, err := n.backend.Subscriptions.Get(ctx, gw, id)
	if err != nil {
		return unavailable("reading subscription", err)
	}
	if !found { // a new subscription, not a replacement: within the gateway's limit?
		count, err := n.backend.Subscriptions.Count(ctx, gw)
		if err != nil {
			return unavailable("counting subscriptions", err)
		}
		if count >= n.cfg.MaxSubscriptionsPerGateway {
			res.Error = errorf(streamerv1.ErrorCode_ERROR_CODE_TOO_MANY_SUBSCRIPTIONS,
				"streamer: gateway %s has %d subscriptions, the limit is %d (--max-subscriptions-per-gateway): unsubscribe some first", gw, count, n.cfg.MaxSubscriptionsPerGateway)
			return res, nil
		}
		count, err = n.backend.Subscriptions.TenantCount(ctx, sub.GetTenant())
		if err != nil {
			return unavailable("counting subscriptions", err)
		}
		if count >= n.cfg.MaxSubscriptionsPerTenant {
			res.Error = errorf(streamerv1.ErrorCode_ERROR_CODE_TOO_MANY_SUBSCRIPTIONS,
				"streamer: tenant %q has %d subscriptions, the limit is %d (--max-subscriptions-per-tenant): unsubscribe some first", sub.GetTenant(), count, n.cfg.MaxSubscriptionsPerTenant)
			return res, nil
		}
	}
	if found {
		for _, op := range n.partitionsOf(old) {
			if op == p {
				continue
			}
			if err := n.appendControl(ctx, op, removedEntry(gw, id, old)); err != nil {
				return unavailable("announcing replaced subscription", err)
			}
		}
	}
	expired, err := s.refreshTTL(ctx, func() error {
		return n.backend.Subscriptions.Put(ctx, gw, store.StoredSubscription{ID: id, Tenant: sub.GetTenant(), Partition: p, Data: data}, n.cfg.GatewayTTL)
	})
	if err != nil {
		return unavailable("storing subscription", err)
	}
	if expired {
		return nil, s.expiredError()
	}
	added := &streamerv1.LogEntry{Entry: &streamerv1.LogEntry_SubscriptionAdded{SubscriptionAdded: &streamerv1.SubscriptionAdded{GatewayId: gw, Subscription: sub}}}
	if err := n.appendControl(ctx, p, added); err != nil {
		return unavailable("announcing subscription", err)
	}
	return res, nil
}

// unsubscribe removes a subscription and announces it to its partition with
// a SubscriptionRemoved control entry before answering.
func (s *session) unsubscribe(ctx context.Context, m *streamerv1.Unsubscribe) *streamerv1.SubscribeResult {
	n := s.n
	gw, id := s.gateway, m.GetSubscriptionId()
	res := &streamerv1.SubscribeResult{SubscriptionId: id, Unsubscribed: true}
	unavailable := func(what string, err error) *streamerv1.SubscribeResult {
		res.Error = errorf(streamerv1.ErrorCode_ERROR_CODE_UNAVAILABLE, "streamer: %s: %v", what, err)
		return res
	}
	if id == "" {
		res.Error = errorf(streamerv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "streamer: Unsubscribe.subscription_id is required")
		return res
	}
	old, found, err := n.backend.Subscriptions.Get(ctx, gw, id)
	if err != nil {
		return unavailable("reading subscription", err)
	}
	existed := false
	if found {
		if existed, err = n.backend.Subscriptions.Delete(ctx, gw, id); err != nil {
			return unavailable("deleting subscription", err)
		}
	}
	if !existed {
		res.Error = errorf(streamerv1.ErrorCode_ERROR_CODE_UNKNOWN_SUBSCRIPTION, "streamer: subscription %q is not active", id)
		return res
	}
	for _, p := range n.partitionsOf(old) {
		if err := n.appendControl(ctx, p, removedEntry(gw, id, old)); err != nil {
			return unavailable("announcing unsubscribe", err)
		}
	}
	return res
}

// heartbeat refreshes the gateway's TTL and trims its outbox up to the
// acknowledged cursor. A fatal Error closes the session: a malformed cursor,
// a superseded session, an expired gateway or a backend failure.
func (s *session) heartbeat(ctx context.Context, hb *streamerv1.Heartbeat) (*streamerv1.HeartbeatAck, *streamerv1.Error) {
	n := s.n
	ack := hb.GetAckCursor()
	if ack != "" {
		if _, _, err := store.ParseID(ack); err != nil {
			return nil, errorf(streamerv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "streamer: Heartbeat.ack_cursor %q is not a delivery cursor", ack)
		}
	}
	unavailable := func(what string, err error) *streamerv1.Error {
		return errorf(streamerv1.ErrorCode_ERROR_CODE_UNAVAILABLE, "streamer: %s: %v", what, err)
	}
	// A session elsewhere (another node) may have superseded this one.
	node, epoch, err := n.backend.Sessions.Current(ctx, s.gateway)
	if err != nil {
		return nil, unavailable("checking session", err)
	}
	if e := s.notCurrent(node, epoch); e != nil {
		return nil, e
	}
	expired, err := s.refreshTTL(ctx, func() error { return n.backend.Subscriptions.Touch(ctx, s.gateway, n.cfg.GatewayTTL) })
	if err != nil {
		return nil, unavailable("refreshing gateway ttl", err)
	}
	if expired {
		return nil, s.expiredError()
	}
	if ack != "" && store.CompareIDs(ack, s.acked) > 0 {
		if err := n.backend.Outboxes.Trim(ctx, s.gateway, ack); err != nil {
			return nil, unavailable("trimming outbox", err)
		}
		s.acked = ack
	}
	return &streamerv1.HeartbeatAck{Cursor: s.acked}, nil
}

// notCurrent returns the Error that closes this session when the session
// record (node, epoch) is not its own, or nil: SUPERSEDED when a newer
// session of the gateway holds it, the expiry error when there is none (the
// gateway expired and a janitor forgot it): the gateway must then register
// again, which is not final.
func (s *session) notCurrent(node string, epoch int64) *streamerv1.Error {
	switch {
	case node == s.n.cfg.NodeID && epoch == s.epoch:
		return nil
	case node == "":
		return s.expiredError()
	default:
		return errorf(streamerv1.ErrorCode_ERROR_CODE_SUPERSEDED, "streamer: session superseded by a newer session of gateway %s", s.gateway)
	}
}

// expiredError is the Error that closes a session whose gateway expired.
func (s *session) expiredError() *streamerv1.Error {
	return errorf(streamerv1.ErrorCode_ERROR_CODE_UNAVAILABLE,
		"streamer: gateway %s expired (no heartbeat within %v) and its subscriptions were dropped: register again and subscribe again", s.gateway, s.n.cfg.GatewayTTL)
}

// validateSubscription checks a subscription as Subscribe receives it and
// compiles its criterion, returning the error to answer with, or nil.
func (n *Node) validateSubscription(sub *streamerv1.Subscription) *streamerv1.Error {
	invalid := func(format string, args ...any) *streamerv1.Error {
		return errorf(streamerv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "streamer: "+format, args...)
	}
	switch {
	case sub == nil:
		return invalid("Subscribe.subscription is required")
	case sub.GetSubscriptionId() == "":
		return invalid("subscription_id is required")
	case sub.GetCollection() == "":
		return invalid("subscription %q: collection is required", sub.GetSubscriptionId())
	}
	for _, f := range []struct {
		name  string
		value string
	}{{"subscription_id", sub.GetSubscriptionId()}, {"tenant", sub.GetTenant()}, {"collection", sub.GetCollection()}, {"document_id", sub.GetDocumentId()}} {
		if len(f.value) > n.cfg.MaxNameBytes {
			return n.nameTooLong(f.name, len(f.value))
		}
	}
	if snap := sub.GetSnapshot(); snap != nil {
		switch {
		case n.cfg.Documents == nil:
			return errorf(streamerv1.ErrorCode_ERROR_CODE_SNAPSHOT_UNAVAILABLE,
				"streamer: subscription %q asks for a snapshot, but this node has no document source: snapshots are served in the embedded mode (no --redis, no --mongo)", sub.GetSubscriptionId())
		case snap.GetLimit() < 0:
			return invalid("subscription %q: snapshot.limit %d is negative", sub.GetSubscriptionId(), snap.GetLimit())
		case len(snap.GetAfter()) > n.cfg.MaxNameBytes:
			return n.nameTooLong("snapshot.after", len(snap.GetAfter()))
		}
	}
	if nf := len(sub.GetFilters().GetFilters()); nf > n.cfg.MaxFilters {
		return errorf(streamerv1.ErrorCode_ERROR_CODE_TOO_LARGE, "streamer: subscription %q has %d filters, the limit is %d (--max-filters)", sub.GetSubscriptionId(), nf, n.cfg.MaxFilters)
	}
	compiled, err := n.compile(sub)
	if err == nil {
		if left := n.bans.banned(sub.GetTenant(), sub.GetCollection(), compiled.Key()); left > 0 {
			return errorf(streamerv1.ErrorCode_ERROR_CODE_COST_LIMIT,
				"streamer: subscription %q refused: the same CEL expression ran over the cost limit (--cel-cost-limit) on %d events in a row in collection %q; it is refused there for %v more",
				sub.GetSubscriptionId(), match.SuspendAfter, sub.GetCollection(), left.Round(time.Second))
		}
	}
	if err != nil {
		code := streamerv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT
		switch {
		case errors.Is(err, match.ErrTooLong):
			code = streamerv1.ErrorCode_ERROR_CODE_TOO_LARGE
		case errors.Is(err, match.ErrTooExpensive):
			return errorf(streamerv1.ErrorCode_ERROR_CODE_INVALID_CEL, "%v (--cel-worst-case-limit)", err)
		case errors.Is(err, match.ErrInvalidFilter):
			code = streamerv1.ErrorCode_ERROR_CODE_INVALID_FILTER
		case errors.Is(err, match.ErrInvalidCEL):
			code = streamerv1.ErrorCode_ERROR_CODE_INVALID_CEL
		}
		return &streamerv1.Error{Code: code, Message: err.Error()}
	}
	return nil
}

// compile turns a wire subscription's criterion into a compiled one. Errors
// wrap match.ErrInvalidFilter, match.ErrInvalidCEL or
// match.ErrInvalidCriterion.
func (n *Node) compile(sub *streamerv1.Subscription) (*match.Compiled, error) {
	var cr match.Criterion
	switch c := sub.GetCriterion().(type) {
	case nil:
	case *streamerv1.Subscription_DocumentId:
		if c.DocumentId == "" {
			return nil, fmt.Errorf("%w: document_id is set but empty", match.ErrInvalidCriterion)
		}
		cr.DocumentID = c.DocumentId
	case *streamerv1.Subscription_Filters:
		for i, f := range c.Filters.GetFilters() {
			var v any
			switch {
			case f.Integer != nil && f.GetValue() != nil:
				return nil, fmt.Errorf("%w: filter %d (field %q, op %q): set value or integer, not both", match.ErrInvalidFilter, i, f.GetField(), f.GetOp())
			case f.Integer != nil:
				v = f.GetInteger()
			case f.GetValue() == nil:
				return nil, fmt.Errorf("%w: filter %d (field %q, op %q): value is required", match.ErrInvalidFilter, i, f.GetField(), f.GetOp())
			default:
				v = f.GetValue().AsInterface()
			}
			cr.Filters = append(cr.Filters, match.Filter{Field: f.GetField(), Op: match.Operator(f.GetOp()), Value: v})
		}
	case *streamerv1.Subscription_Cel:
		if c.Cel == "" {
			return nil, fmt.Errorf("%w: cel is set but empty", match.ErrInvalidCEL)
		}
		cr.CEL = c.Cel
	}
	return n.engine.Compile(cr)
}

// partitionsOf returns the partition of an encoded subscription, or every
// partition when it cannot be decoded (so that a removal reaches it
// wherever it is).
func (n *Node) partitionsOf(data []byte) []int {
	var sub streamerv1.Subscription
	if err := proto.Unmarshal(data, &sub); err == nil && sub.GetCollection() != "" {
		return []int{store.PartitionOf(sub.GetTenant(), sub.GetCollection(), n.cfg.Partitions)}
	}
	all := make([]int, n.cfg.Partitions)
	for p := range all {
		all[p] = p
	}
	return all
}

// removedEntry is the SubscriptionRemoved control entry for (gw, id), whose
// encoded subscription was data.
func removedEntry(gw, id string, data []byte) *streamerv1.LogEntry {
	var sub streamerv1.Subscription
	_ = proto.Unmarshal(data, &sub) // best effort: tenant and collection are informative
	return &streamerv1.LogEntry{Entry: &streamerv1.LogEntry_SubscriptionRemoved{SubscriptionRemoved: &streamerv1.SubscriptionRemoved{
		GatewayId: gw, SubscriptionId: id, Tenant: sub.GetTenant(), Collection: sub.GetCollection(),
	}}}
}

// appendControl appends a control entry to partition p.
func (n *Node) appendControl(ctx context.Context, p int, e *streamerv1.LogEntry) error {
	_, err := n.appendControlAt(ctx, p, e)
	return err
}

// appendControlAt is appendControl returning the entry's position.
func (n *Node) appendControlAt(ctx context.Context, p int, e *streamerv1.LogEntry) (string, error) {
	payload, err := proto.Marshal(e)
	if err != nil {
		return "", err
	}
	ids, err := n.backend.Log.Append(ctx, p, payload)
	if err != nil {
		return "", err
	}
	return ids[0], nil
}
