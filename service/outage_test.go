package service

import (
	"context"
	"testing"
	"time"

	"github.com/streamerd/streamer/internal/redistest"
	streamerv1 "github.com/streamerd/streamer/proto/streamer/v1"
)

// TestRedisOutageLongerThanTheTTLExpiresNoLiveGateway: while Redis is down
// no heartbeat refreshes a deadline, so after an outage of two TTLs every
// deadline has passed. A gateway that comes back right after the outage
// resumes where it was (it used to be expired on the spot, with a Resync);
// one that does not come back within a TTL of the outage's end is
// expired.
func TestRedisOutageLongerThanTheTTLExpiresNoLiveGateway(t *testing.T) {
	const ttl = 30 * time.Second
	ft := newFakeTime(t)
	srv := redistest.Start(t, redistest.WithAOF())
	h := startNodeOn(t, Config{GatewayTTL: ttl, LeaseTTL: time.Hour, Clock: ft}, redisBackendFor(t, srv, 2, ft))
	ctx := context.Background()
	retired := func(gw string) string {
		t.Helper()
		r, err := h.backend.Outboxes.Retired(ctx, gw)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	heartbeat := func(g *gateway) {
		t.Helper()
		g.send(&streamerv1.GatewayMessage{Msg: &streamerv1.GatewayMessage_Heartbeat{Heartbeat: &streamerv1.Heartbeat{}}})
		g.take("HeartbeatAck", func(m *streamerv1.StreamerMessage) bool { return m.GetHeartbeatAck() != nil })
	}

	alive := h.watching("alive")
	h.publish(event("e1", "t", "c", "d", opCreate, `{}`, ""))
	cursor := alive.delivery().GetCursor()
	gone := h.watching("gone")
	gone.close()
	alive.close() // the outage cuts it too; it will come back

	srv.Stop()
	for range 6 { // two TTLs without Redis
		ft.step(ttl / 3)
	}
	srv.Restart()
	ft.stepUntil("the node's probe sees Redis again", time.Second, func() (bool, any) {
		err := h.node.probe.get()
		return err == nil, err
	})

	alive, reg := h.reconnect(ft, "alive", cursor)
	if !reg.GetResumed() || reg.GetCursor() != cursor {
		t.Fatalf("Registered after the outage = %v, want resumed at %s", reg, cursor)
	}
	// The node's retries after the outage wait on the fake clock: step it.
	h.publish(event("e2", "t", "c", "d", opUpdate, `{}`, ""))
	ft.stepUntil("e2 delivered", time.Second, func() (bool, any) {
		return alive.takeNow(func(m *streamerv1.StreamerMessage) bool {
			ms := m.GetDelivery().GetMatches()
			return len(ms) > 0 && ms[0].GetEvent().GetEventId() == "e2"
		}) != nil, nil
	})

	// A TTL after the outage, the gateway that did not come back expires;
	// the one that heartbeats does not.
	ft.stepUntil("the gateway that did not come back expired", ttl/3, func() (bool, any) {
		heartbeat(alive)
		r := retired("gone")
		return r != "", r
	})
	if r := retired("alive"); r != "" {
		t.Fatalf("the live gateway was expired (outbox retired at %s)", r)
	}
	h.publish(event("e3", "t", "c", "d", opUpdate, `{}`, ""))
	alive.matchesUntil("e3")
}

// TestGatewayWhoseSubscriptionsExpiredIsNotRevived: after an outage longer
// than the TTL a gateway that comes back is revived only if Redis still has
// its subscriptions; where Redis expired them (its own clock ran past the
// deadline: a long outage, a failover), reviving it would deliver it
// nothing, silently. It is expired instead: it resumes with a Resync, which
// makes it subscribe again.
func TestGatewayWhoseSubscriptionsExpiredIsNotRevived(t *testing.T) {
	const ttl = 30 * time.Second
	ft := newFakeTime(t)
	srv := redistest.Start(t, redistest.WithAOF())
	h := startNodeOn(t, Config{GatewayTTL: ttl, LeaseTTL: time.Hour, Clock: ft}, redisBackendFor(t, srv, 2, ft))
	g := h.watching("alive")
	h.publish(event("e1", "t", "c", "d", opCreate, `{}`, ""))
	cursor := g.delivery().GetCursor()
	g.close()

	srv.Stop()
	for range 6 { // two TTLs without Redis
		ft.step(ttl / 3)
	}
	srv.Restart()
	// The fake clock does not move Redis's: expire the hash as Redis would
	// have at the deadline.
	keys, err := srv.Do("EVAL", "local ks = redis.call('KEYS', '*{gw:alive}:subs'); for _, k in ipairs(ks) do redis.call('DEL', k) end; return #ks", "0")
	if err != nil || keys != "1" {
		t.Fatalf("deleting the subscription hash: %q %v", keys, err)
	}
	ft.stepUntil("the node's probe sees Redis again", time.Second, func() (bool, any) {
		err := h.node.probe.get()
		return err == nil, err
	})

	g, reg := h.reconnect(ft, "alive", cursor)
	if reg.GetResumed() {
		t.Fatalf("Registered = %v: resumed without its subscriptions, want a Resync", reg)
	}
	g.take("Resync", func(m *streamerv1.StreamerMessage) bool { return m.GetResync() != nil })
}
