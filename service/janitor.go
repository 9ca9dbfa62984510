package service

import (
	"context"
	"time"

	streamerv1 "github.com/streamerd/streamer/proto/streamer/v1"
)

// runJanitor expires gateways whose TTL ran out, every JanitorInterval,
// until ctx is done. Expiry is idempotent: several nodes may run it for the
// same gateway.
func (n *Node) runJanitor(ctx context.Context) {
	t := time.NewTicker(n.cfg.JanitorInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := n.expireGateways(ctx); err != nil && ctx.Err() == nil {
				n.log.Warn("janitor", "err", err)
			}
		}
	}
}

// expireGateways expires every gateway past its deadline.
func (n *Node) expireGateways(ctx context.Context) error {
	n.expireMu.Lock()
	defer n.expireMu.Unlock()
	gone, err := n.backend.Subscriptions.Expired(ctx, time.Now())
	if err != nil {
		return err
	}
	for _, gw := range gone {
		if err := n.expireGateway(ctx, gw, nil); err != nil {
			return err
		}
	}
	return nil
}

// expireGateway announces gw's expiry to every partition (a GatewayExpired
// control entry, so each owner drops its subscriptions in log order), then
// forgets its subscriptions and deletes its outbox, and closes its local
// session unless it is except. The caller holds expireMu.
func (n *Node) expireGateway(ctx context.Context, gw string, except *session) error {
	n.log.Info("gateway expired: no heartbeat within ttl", "gateway", gw, "ttl", n.cfg.GatewayTTL)
	entry := &streamerv1.LogEntry{Entry: &streamerv1.LogEntry_GatewayExpired{GatewayExpired: &streamerv1.GatewayExpired{GatewayId: gw}}}
	for p := range n.cfg.Partitions {
		if err := n.appendControl(ctx, p, entry); err != nil {
			return err
		}
	}
	if err := n.backend.Subscriptions.Forget(ctx, gw); err != nil {
		return err
	}
	if err := n.backend.Outboxes.Delete(ctx, gw); err != nil {
		return err
	}
	n.sessions.closeGatewayExcept(gw, except, streamerv1.ErrorCode_ERROR_CODE_UNAVAILABLE,
		"streamer: gateway "+gw+" expired (no heartbeat within "+n.cfg.GatewayTTL.String()+") and its subscriptions were dropped: register again and subscribe again")
	return nil
}
