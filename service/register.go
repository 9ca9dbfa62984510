package service

import (
	"context"
	"fmt"
	"slices"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	streamerv1 "github.com/streamerd/streamer/proto/streamer/v1"
	"github.com/streamerd/streamer/store"
)

// beginningCursor is the resume cursor meaning "from the beginning of the outbox".
const beginningCursor = "0-0"

// register opens the session for reg.gateway_id: it expires the gateway's
// leftovers if its TTL ran out, refreshes its TTL, claims its session epoch,
// supersedes any older local session, and sends Registered (followed by
// Resync when the resume cursor cannot be honoured). It returns the outbox
// position deliveries continue after, or a fatal Error.
func (s *session) register(ctx context.Context, reg *streamerv1.Register) (start string, fatal *streamerv1.Error) {
	n := s.n
	gw := reg.GetGatewayId()
	if gw == "" {
		return "", errorf(streamerv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "streamer: Register.gateway_id is required")
	}
	if len(gw) > n.cfg.MaxNameBytes {
		return "", n.nameTooLong("Register.gateway_id", len(gw))
	}
	cursor := reg.GetResumeCursor()
	if cursor != "" {
		if _, _, err := store.ParseID(cursor); err != nil {
			return "", errorf(streamerv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "streamer: Register.resume_cursor %q is not a delivery cursor", cursor)
		}
	}
	unavailable := func(what string, err error) *streamerv1.Error {
		return errorf(streamerv1.ErrorCode_ERROR_CODE_UNAVAILABLE, "streamer: %s: %v", what, err)
	}

	s.gateway = gw
	s.log = n.log.With("gateway", gw)
	if _, err := s.refreshTTL(ctx, func() error { return n.backend.Subscriptions.Touch(ctx, gw, n.cfg.GatewayTTL) }); err != nil {
		return "", unavailable("registering gateway", err)
	}
	epoch, err := n.backend.Sessions.Claim(ctx, gw, n.cfg.NodeID)
	if err != nil {
		return "", unavailable("claiming session", err)
	}
	s.epoch = epoch
	if !n.sessions.register(s) {
		return "", errorf(streamerv1.ErrorCode_ERROR_CODE_SUPERSEDED, "streamer: session superseded by a newer session of gateway %s", gw)
	}

	registered := &streamerv1.Registered{NodeId: n.cfg.NodeID, Ttl: durationpb.New(n.cfg.GatewayTTL)}
	start, resync, err := s.resumePoint(ctx, cursor, registered)
	if err != nil {
		return "", unavailable("reading outbox", err)
	}
	if start != "" && (registered.Resumed || resync != nil) {
		// Everything up to start is handled or unreachable.
		if err := n.backend.Outboxes.Trim(ctx, gw, start); err != nil {
			return "", unavailable("trimming outbox", err)
		}
		s.acked = start
	}
	if err := s.send(&streamerv1.StreamerMessage{Msg: &streamerv1.StreamerMessage_Registered{Registered: registered}}); err != nil {
		return "", errorf(streamerv1.ErrorCode_ERROR_CODE_UNAVAILABLE, "streamer: sending Registered: %v", err)
	}
	if resync != nil {
		if err := s.sendOut(outgoing{msg: &streamerv1.StreamerMessage{Msg: &streamerv1.StreamerMessage_Resync{Resync: resync}}}); err != nil {
			return "", errorf(streamerv1.ErrorCode_ERROR_CODE_UNAVAILABLE, "streamer: sending Resync: %v", err)
		}
	}
	s.log.Info("gateway session registered", "epoch", epoch, "cursor", start, "resumed", registered.Resumed, "resync", resync != nil)
	return start, nil
}

// resumePoint decides where the session's deliveries start, from the
// gateway's resume cursor: it sets registered's cursor and resumed flag and
// returns the outbox position to deliver after, and the Resync to send
// when the cursor cannot be honoured:
//   - no cursor: after the newest entry, nothing to resume;
//   - a cursor issued before the gateway's outbox was retired (the gateway
//     expired since; the retirement is never forgotten): Resync, the
//     subscriptions are gone;
//   - a cursor beyond the newest entry ever appended, or "from the
//     beginning" of an outbox never appended to of a gateway without
//     subscriptions: the store lost them (Redis lost its data): Resync;
//   - a cursor before entries the cap dropped: Resync;
//   - otherwise resumed at the cursor.
func (s *session) resumePoint(ctx context.Context, cursor string, registered *streamerv1.Registered) (start string, resync *streamerv1.Resync, err error) {
	n, gw := s.n, s.gateway
	last, err := n.backend.Outboxes.Last(ctx, gw)
	if err != nil {
		return "", nil, err
	}
	registered.Cursor = last
	if cursor == "" {
		return last, nil, nil
	}
	retired, err := n.backend.Outboxes.Retired(ctx, gw)
	if err != nil {
		return "", nil, err
	}
	lost, err := n.backend.Outboxes.Lost(ctx, gw, cursor)
	if err != nil {
		return "", nil, err
	}
	beyond := store.CompareIDs(cursor, last) > 0
	if beyond && last == "" && cursor == beginningCursor {
		// "From the beginning" of an outbox never appended to: fine while
		// the gateway has its subscriptions; without them the store lost
		// them, or it never subscribed and a Resync is harmless.
		subs, err := n.backend.Subscriptions.List(ctx, gw)
		if err != nil {
			return "", nil, err
		}
		beyond = len(subs) == 0
	}
	reason := ""
	switch {
	case retired != "" && store.CompareIDs(cursor, retired) < 0:
		reason = fmt.Sprintf("the gateway expired (no heartbeat within %v) after this cursor was issued: its subscriptions and undelivered events were dropped; subscribe again", n.cfg.GatewayTTL)
	case beyond:
		reason = "the gateway's outbox no longer holds this cursor's position (the store lost it): subscribe again"
	case lost:
		reason = fmt.Sprintf("outbox entries after cursor %s were dropped before being acknowledged (%s)", cursor, n.outboxCaps())
	}
	if reason != "" {
		return last, &streamerv1.Resync{Reason: reason, Cursor: last}, nil
	}
	registered.Cursor, registered.Resumed = cursor, true
	if cursor == beginningCursor && last == "" {
		registered.Cursor = ""
		return "", nil, nil
	}
	return cursor, nil, nil
}

// unregister releases the session record after the session ends.
func (s *session) unregister(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	if err := s.n.backend.Sessions.Release(ctx, s.gateway, s.n.cfg.NodeID, s.epoch); err != nil {
		s.log.Warn("releasing session", "err", err)
	}
}

// refreshTTL runs op, a Put or Touch that moves the gateway's deadline to
// now+ttl, making sure it does not resurrect a gateway whose TTL already ran
// out (that would start an empty subscription set while partition indexes
// still hold the old one). Well before the deadline known from the
// session's last refresh it just runs op. Otherwise it checks, under the
// gateway's pool-wide expiry lock (so serialised with the janitor of every
// node), whether the gateway expired; if so it expires it (expired = true
// for an open session, op is not run; a session still registering goes on
// and runs op, starting afresh), else it runs op.
func (s *session) refreshTTL(ctx context.Context, op func() error) (expired bool, err error) {
	n := s.n
	margin := min(n.cfg.GatewayTTL/10, time.Second)
	if before := n.cfg.Clock.Now(); before.Add(margin).Before(s.deadline) {
		if err := op(); err != nil {
			return false, err
		}
		s.deadline = before.Add(n.cfg.GatewayTTL)
		return false, nil
	}
	unlock, err := n.lockGateway(ctx, s.gateway)
	if err != nil {
		return false, err
	}
	defer unlock()
	before := n.cfg.Clock.Now()
	var live []string
	if s.epoch != 0 {
		// Listed first: a gateway missing from both lists below was
		// forgotten, by a janitor here or on another node.
		if live, err = n.backend.Subscriptions.Live(ctx); err != nil {
			return false, err
		}
	}
	gone, err := n.backend.Subscriptions.Expired(ctx, n.cfg.Clock.Now())
	if err != nil {
		return false, err
	}
	past := slices.Contains(gone, s.gateway)
	kept := false
	if past && !n.expiryAllowed() {
		// Past its deadline only because the backend was unreachable (or
		// just came back): alive, so refreshed below, if its subscriptions
		// are still there. Redis expires them at the deadline (a failover
		// or an outage longer than the TTL): the gateway is then expired
		// like any other, so that it gets a Resync and subscribes again,
		// rather than go on with nothing delivered.
		k, err := n.backend.Subscriptions.Count(ctx, s.gateway)
		if err != nil {
			return false, err
		}
		if kept = k > 0; !kept {
			s.log.Warn("gateway past its deadline after an outage has no subscriptions left in the backend: expiring it", "gateway", s.gateway)
		}
	}
	switch {
	case past && kept:
	case past:
		if err := n.expireGateway(ctx, s.gateway, s); err != nil {
			return false, err
		}
		if s.epoch != 0 { // an open session: the caller must close it
			return true, nil
		}
	case s.epoch != 0 && !slices.Contains(live, s.gateway):
		s.log.Info("gateway was expired by a janitor while its session was open")
		return true, nil
	}
	if err := op(); err != nil {
		return false, err
	}
	s.deadline = before.Add(n.cfg.GatewayTTL)
	return false, nil
}
