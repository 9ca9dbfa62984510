package service

import (
	"context"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	streamerv1 "github.com/streamerd/streamer/proto/streamer/v1"
)

// gatewayLockTTL bounds how long a node that died while expiring a gateway
// holds up that gateway's registration elsewhere.
const gatewayLockTTL = 10 * time.Second

// gatewayLockPoll is how often a busy gateway expiry lock is tried again.
const gatewayLockPoll = 5 * time.Millisecond

// lockSeq makes every acquisition of a gateway lock a distinct owner, so
// that two goroutines of one node exclude each other too.
var lockSeq atomic.Uint64

// runJanitor expires gateways whose TTL ran out, every JanitorInterval,
// until ctx is done. Every node runs it: expiry is idempotent, and each
// gateway is expired under its pool-wide lock, after checking again that it
// is still expired, so that a janitor never forgets a gateway that
// registered again meanwhile on any node.
func (n *Node) runJanitor(ctx context.Context) {
	t := n.cfg.Clock.NewTimer(n.cfg.JanitorInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
			if err := n.expireGateways(ctx); err != nil && ctx.Err() == nil {
				n.log.Warn("janitor", "err", err)
			}
			t.Reset(n.cfg.JanitorInterval)
		}
	}
}

// expiryAllowed reports whether this node may expire gateways now: only
// once the backend has been reachable for a whole GatewayTTL, as its probes
// saw it. Deadlines are absolute: a gateway's heartbeats fail while the
// backend is unreachable, so after an outage longer than the TTL every
// deadline has passed, though the gateways were alive. Waiting one TTL after
// the outage gives each of them a full TTL of heartbeats to refresh its
// deadline; the gateways that did not were gone.
func (n *Node) expiryAllowed() bool {
	return n.probe.reachableFor(n.cfg.Clock.Now()) >= n.cfg.GatewayTTL
}

// expireGateways expires every gateway past its deadline, unless expiry is
// not allowed yet (expiryAllowed).
func (n *Node) expireGateways(ctx context.Context) error {
	if !n.expiryAllowed() {
		return nil
	}
	gone, err := n.backend.Subscriptions.Expired(ctx, n.cfg.Clock.Now())
	if err != nil {
		return err
	}
	for _, gw := range gone {
		if err := n.expireIfExpired(ctx, gw); err != nil {
			return err
		}
	}
	return nil
}

// expireIfExpired expires gw under its lock if it is still expired: another
// node's janitor may have expired it already, or it may have registered
// again.
func (n *Node) expireIfExpired(ctx context.Context, gw string) error {
	unlock, err := n.lockGateway(ctx, gw)
	if err != nil {
		return err
	}
	defer unlock()
	gone, err := n.backend.Subscriptions.Expired(ctx, n.cfg.Clock.Now())
	if err != nil || !slices.Contains(gone, gw) || !n.expiryAllowed() {
		return err
	}
	return n.expireGateway(ctx, gw, nil)
}

// lockGateway takes gateway gw's expiry lock (store.Locks, so pool-wide),
// waiting while another holder has it, until ctx is done or gatewayLockTTL
// has passed (the holder's lease has then lapsed). unlock releases it.
func (n *Node) lockGateway(ctx context.Context, gw string) (unlock func(), err error) {
	name := "gateway-expiry:" + gw
	owner := n.cfg.NodeID + "/" + strconv.FormatUint(lockSeq.Add(1), 10)
	wctx, cancel := context.WithTimeout(ctx, gatewayLockTTL+time.Second)
	defer cancel()
	for {
		ok, err := n.backend.Locks.Acquire(wctx, name, owner, gatewayLockTTL)
		if err != nil {
			return nil, err
		}
		if ok {
			break
		}
		if !sleepCtx(wctx, gatewayLockPoll) {
			return nil, wctx.Err()
		}
	}
	return func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		if err := n.backend.Locks.Release(rctx, name, owner); err != nil {
			n.log.Warn("releasing gateway expiry lock (it lapses by itself)", "gateway", gw, "err", err)
		}
	}, nil
}

// expireGateway announces gw's expiry to every partition (a GatewayExpired
// control entry, so each owner drops its subscriptions in log order), then
// forgets its subscriptions, retires its outbox, and closes its local
// session unless it is except. The caller holds gw's expiry lock.
//
// Retiring the outbox at the announcements' positions is what keeps the
// expiry from being silently undone: an owner still behind in its log
// routes events of before the announcement to gw, and the outbox drops
// them; and every cursor the gateway was given before is recognised as
// expired when it comes back (register.go).
func (n *Node) expireGateway(ctx context.Context, gw string, except *session) error {
	return n.retireGateway(ctx, gw, except, "gateway expired: no heartbeat within ttl; subscriptions dropped, outbox retired",
		"streamer: gateway "+gw+" expired (no heartbeat within "+n.cfg.GatewayTTL.String()+") and its subscriptions were dropped: register again and subscribe again")
}

// retireGateway is expireGateway, logging logMsg and closing gw's other
// sessions with closeMsg.
func (n *Node) retireGateway(ctx context.Context, gw string, except *session, logMsg, closeMsg string) error {
	entry := &streamerv1.LogEntry{Entry: &streamerv1.LogEntry_GatewayExpired{GatewayExpired: &streamerv1.GatewayExpired{GatewayId: gw}}}
	fences := make(map[int]string, n.cfg.Partitions)
	for p := range n.cfg.Partitions {
		pos, err := n.appendControlAt(ctx, p, entry)
		if err != nil {
			return err
		}
		fences[p] = pos
	}
	if err := n.backend.Subscriptions.Forget(ctx, gw); err != nil {
		return err
	}
	retired, err := n.backend.Outboxes.Retire(ctx, gw, fences)
	if err != nil {
		return err
	}
	n.log.Info(logMsg, "gateway", gw, "ttl", n.cfg.GatewayTTL, "retired_at", retired)
	n.sessions.closeGatewayExcept(gw, except, streamerv1.ErrorCode_ERROR_CODE_UNAVAILABLE, closeMsg)
	return nil
}
