package service

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	streamerv1 "github.com/streamerd/streamer/proto/streamer/v1"
	"github.com/streamerd/streamer/store"
	"github.com/streamerd/streamer/store/memory"
)

// publishOneBatch publishes one event and waits until it has its own entry
// in gw's outbox (so that each event is one outbox entry), returning the
// entry's id.
func (h *harness) publishOneBatch(gw string, ev *streamerv1.ChangeEvent) string {
	h.t.Helper()
	before, err := h.backend.Outboxes.Last(context.Background(), gw)
	if err != nil {
		h.t.Fatal(err)
	}
	h.publish(ev)
	var last string
	waitFor(h.t, "event "+ev.GetEventId()+" in the outbox", func() bool {
		last, err = h.backend.Outboxes.Last(context.Background(), gw)
		return err == nil && store.CompareIDs(last, before) > 0
	})
	return last
}

func TestResumeWithValidCursorGetsExactlyTheRest(t *testing.T) {
	h := startNode(t, Config{}, memory.Config{Partitions: 2})
	g, reg := h.connect("gw-1", "")
	if reg.GetCursor() != "" {
		t.Fatalf("fresh gateway: Registered.cursor = %q, want empty", reg.GetCursor())
	}
	g.watchAll()

	var cursors []string
	for i := range 3 {
		id := fmt.Sprintf("e%d", i)
		cursors = append(cursors, h.publishOneBatch("gw-1", event(id, "t", "c", id, opCreate, `{}`, "")))
		d := g.delivery()
		if d.GetCursor() != cursors[i] || d.GetMatches()[0].GetEvent().GetEventId() != id {
			t.Fatalf("delivery %d = %v, want cursor %s", i, d, cursors[i])
		}
	}
	// Acknowledge the first delivery; the outbox is trimmed up to it.
	g.send(&streamerv1.GatewayMessage{Msg: &streamerv1.GatewayMessage_Heartbeat{Heartbeat: &streamerv1.Heartbeat{AckCursor: cursors[0]}}})
	ack := g.take("HeartbeatAck", func(m *streamerv1.StreamerMessage) bool { return m.GetHeartbeatAck() != nil }).GetHeartbeatAck()
	if ack.GetCursor() != cursors[0] {
		t.Fatalf("HeartbeatAck.cursor = %q, want %q", ack.GetCursor(), cursors[0])
	}
	if n, _ := h.backend.Outboxes.Len(context.Background(), "gw-1"); n != 2 {
		t.Fatalf("outbox length after ack = %d, want 2", n)
	}
	// An older ack is ignored.
	g.send(&streamerv1.GatewayMessage{Msg: &streamerv1.GatewayMessage_Heartbeat{Heartbeat: &streamerv1.Heartbeat{AckCursor: "1-0"}}})
	ack = g.take("HeartbeatAck", func(m *streamerv1.StreamerMessage) bool { return m.GetHeartbeatAck() != nil }).GetHeartbeatAck()
	if ack.GetCursor() != cursors[0] {
		t.Fatalf("HeartbeatAck.cursor after an older ack = %q, want %q", ack.GetCursor(), cursors[0])
	}
	g.close()

	// While disconnected, two more events.
	for i := 3; i < 5; i++ {
		id := fmt.Sprintf("e%d", i)
		cursors = append(cursors, h.publishOneBatch("gw-1", event(id, "t", "c", id, opCreate, `{}`, "")))
	}

	g, reg = h.connect("gw-1", cursors[0])
	if !reg.GetResumed() || reg.GetCursor() != cursors[0] {
		t.Fatalf("Registered = %v, want resumed at %s", reg, cursors[0])
	}
	var got []string
	for range 4 {
		d := g.delivery()
		got = append(got, d.GetCursor()+"="+d.GetMatches()[0].GetEvent().GetEventId())
	}
	want := []string{cursors[1] + "=e1", cursors[2] + "=e2", cursors[3] + "=e3", cursors[4] + "=e4"}
	if !slices.Equal(got, want) {
		t.Fatalf("after resume got %q, want %q", got, want)
	}
	h.publish(event("sentinel", "t", "c", "x", opCreate, `{}`, ""))
	if got := summary(g.matchesUntil("sentinel")); !slices.Equal(got, []string{"sentinel:CREATE:s"}) {
		t.Fatalf("after the resumed entries got %q", got)
	}
	for _, m := range g.queue {
		if m.GetResync() != nil {
			t.Fatalf("unexpected Resync %v", m)
		}
	}
}

func TestResumeCursorOlderThanOutboxGetsResync(t *testing.T) {
	const outboxCap = 3
	h := startNode(t, Config{OutboxMaxLen: outboxCap}, memory.Config{Partitions: 2, OutboxMaxLen: outboxCap})
	g := h.watching("gw-1")
	first := h.publishOneBatch("gw-1", event("e0", "t", "c", "d", opCreate, `{}`, ""))
	if d := g.delivery(); d.GetCursor() != first {
		t.Fatalf("delivery cursor %q, want %q", d.GetCursor(), first)
	}
	g.close()

	var last string
	for i := 1; i <= outboxCap+2; i++ { // overflow the outbox while disconnected
		id := fmt.Sprintf("e%d", i)
		last = h.publishOneBatch("gw-1", event(id, "t", "c", "d", opUpdate, `{}`, ""))
	}

	g, reg := h.connect("gw-1", first)
	if reg.GetResumed() || reg.GetCursor() != last {
		t.Fatalf("Registered = %v, want resumed=false cursor=%s", reg, last)
	}
	rs := g.next().GetResync()
	if rs == nil || rs.GetCursor() != last || !strings.Contains(rs.GetReason(), "dropped") {
		t.Fatalf("message after Registered = %v, want Resync continuing after %s", rs, last)
	}
	// Deliveries continue after the Resync cursor.
	h.publish(event("after", "t", "c", "d", opUpdate, `{}`, ""))
	d := g.delivery()
	if id := d.GetMatches()[0].GetEvent().GetEventId(); id != "after" || store.CompareIDs(d.GetCursor(), last) <= 0 {
		t.Fatalf("delivery after Resync = %v", d)
	}
}

func TestRegisterWithoutCursorStartsAfterNewest(t *testing.T) {
	const outboxCap = 2
	h := startNode(t, Config{OutboxMaxLen: outboxCap}, memory.Config{Partitions: 1, OutboxMaxLen: outboxCap})
	g := h.watching("gw-1")
	g.close()
	for i := range outboxCap + 3 {
		id := fmt.Sprintf("e%d", i)
		h.publishOneBatch("gw-1", event(id, "t", "c", "d", opCreate, `{}`, ""))
	}
	// Registering without a cursor starts after the newest entry: nothing
	// lost, no Resync.
	g, reg := h.connect("gw-1", "")
	if reg.GetResumed() || reg.GetCursor() == "" {
		t.Fatalf("Registered = %v", reg)
	}
	h.publish(event("new", "t", "c", "d", opCreate, `{}`, ""))
	if got := summary(g.matchesUntil("new")); !slices.Equal(got, []string{"new:CREATE:s"}) {
		t.Fatalf("got %q", got)
	}
}

func TestGatewayExpiry(t *testing.T) {
	const ttl = 30 * time.Second
	ft := newFakeTime(t)
	h := startNode(t, Config{GatewayTTL: ttl, LeaseTTL: time.Hour, Clock: ft}, memory.Config{Partitions: 4, Clock: ft})
	ctx := context.Background()
	g, reg := h.connect("gw-quiet", "")
	if reg.GetTtl().AsDuration() != ttl {
		t.Fatalf("Registered.ttl = %v", reg.GetTtl().AsDuration())
	}
	g.mustSubscribe(&streamerv1.Subscription{SubscriptionId: "s1", Tenant: "t", Collection: "c"})
	g.mustSubscribe(filterSub("s2", "t", "other", "k", "==", 1.0))
	cursor := h.publishOneBatch("gw-quiet", event("e1", "t", "c", "d", opCreate, `{}`, ""))
	g.delivery()
	waitFor(t, "two indexed subscriptions", func() bool { return h.node.indexedSubscriptions() == 2 })

	// No heartbeat: the gateway expires, its session is closed, its
	// subscriptions leave the store and the indexes, its outbox is retired.
	ft.step(ttl - time.Second)
	if h.node.indexedSubscriptions() != 2 {
		t.Fatal("the gateway expired before its TTL")
	}
	ft.step(ttl / 3)
	e := g.endError()
	if e.GetCode() != streamerv1.ErrorCode_ERROR_CODE_UNAVAILABLE || !strings.Contains(e.GetMessage(), "expired") {
		t.Fatalf("session error = %v", e)
	}
	waitFor(t, "subscriptions gone from the indexes", func() bool { return h.node.indexedSubscriptions() == 0 })
	subs, err := h.backend.Subscriptions.List(ctx, "gw-quiet")
	if err != nil || len(subs) != 0 {
		t.Fatalf("stored subscriptions = %v, %v", subs, err)
	}
	if expired, _ := h.backend.Subscriptions.Expired(ctx, ft.Now()); slices.Contains(expired, "gw-quiet") {
		t.Fatalf("gateway still registered after expiry")
	}
	if retired, _ := h.backend.Outboxes.Retired(ctx, "gw-quiet"); store.CompareIDs(retired, cursor) <= 0 {
		t.Fatalf("outbox retired at %q, want after the last cursor %q", retired, cursor)
	}
	h.wantOutboxLen("gw-quiet", 0)

	// Events no longer reach it: a live gateway gets the event, the expired
	// one's outbox stays empty.
	live := h.watching("gw-live")
	h.publish(event("e2", "t", "c", "d", opCreate, `{}`, ""))
	live.matchesUntil("e2")
	h.wantOutboxLen("gw-quiet", 0)
	live.close()

	// Coming back with its old cursor, it is told to resync and resubscribe.
	g, reg = h.connect("gw-quiet", cursor)
	if reg.GetResumed() {
		t.Fatalf("Registered = %v, want resumed=false", reg)
	}
	if rs := g.next().GetResync(); rs == nil || !strings.Contains(rs.GetReason(), "subscribe again") {
		t.Fatalf("want Resync after Registered, got %v", rs)
	}
}

// wantOutboxLen fails unless gw's outbox holds n entries.
func (h *harness) wantOutboxLen(gw string, n int64) {
	h.t.Helper()
	if got, err := h.backend.Outboxes.Len(context.Background(), gw); err != nil || got != n {
		h.t.Fatalf("outbox of %s holds %d entries (%v), want %d", gw, got, err, n)
	}
}

// expireQuietly registers gw with a subscription, delivers one event to it
// and lets it expire without heartbeats; it returns the cursor and the log
// position of that delivery.
func expireQuietly(h *harness, ft *fakeTime, gw string, ttl time.Duration) (cursor string, match *streamerv1.EventMatch) {
	h.t.Helper()
	g := h.watching(gw)
	h.publish(event("before-expiry", "t", "c", "d", opCreate, `{}`, ""))
	d := g.delivery()
	ft.stepUntil("the gateway expired", ttl/3, func() (bool, any) {
		retired, err := h.backend.Outboxes.Retired(context.Background(), gw)
		return err == nil && retired != "", retired
	})
	if e := g.endError(); !strings.Contains(e.GetMessage(), "expired") {
		h.t.Fatalf("session error = %v, want the expiry", e)
	}
	return d.GetCursor(), d.GetMatches()[0]
}

// TestExpiredGatewayOutboxIsNotResumedAfterALateAppend: an owner still
// behind in its log when a gateway expired routes an event of before the
// expiry to it. The append is fenced off, and whatever is in the outbox, the
// gateway coming back with its old cursor gets a Resync: the expiry
// dropped its subscriptions. (The outbox used to be deleted: the late
// append recreated it, and the old cursor resumed without a Resync.)
func TestExpiredGatewayOutboxIsNotResumedAfterALateAppend(t *testing.T) {
	const ttl = 30 * time.Second
	ft := newFakeTime(t)
	h := startNode(t, Config{GatewayTTL: ttl, LeaseTTL: time.Hour, Clock: ft}, memory.Config{Partitions: 2, Clock: ft})
	ctx := context.Background()
	cursor, m := expireQuietly(h, ft, "gw", ttl)

	late := store.OutboxItem{Gateway: "gw", Payload: []byte("late"), Partition: int(m.GetEvent().GetPartition()), Position: m.GetEvent().GetPosition()}
	ids, err := h.backend.Outboxes.Append(ctx, []store.OutboxItem{late})
	if err != nil || ids[0] != "" {
		t.Fatalf("late append of an event of before the expiry = %q, %v; want it dropped", ids, err)
	}
	h.wantOutboxLen("gw", 0)
	// Even an entry that got in (the fence is not what decides) does not
	// make the old cursor resumable.
	late.Position = ""
	if _, err := h.backend.Outboxes.Append(ctx, []store.OutboxItem{late}); err != nil {
		t.Fatal(err)
	}
	g, reg := h.connect("gw", cursor)
	if reg.GetResumed() {
		t.Fatalf("Registered = %v, want resumed=false", reg)
	}
	if rs := g.next().GetResync(); rs == nil || !strings.Contains(rs.GetReason(), "expired") {
		t.Fatalf("message after Registered = %v, want a Resync saying the gateway expired", rs)
	}
}

// TestExpiredGatewayComesBackAndResumesItsNewIncarnation: after the Resync
// of its expiry, a gateway subscribes again; its new cursors resume without
// a Resync.
func TestExpiredGatewayComesBackAndResumesItsNewIncarnation(t *testing.T) {
	const ttl = 30 * time.Second
	ft := newFakeTime(t)
	h := startNode(t, Config{GatewayTTL: ttl, LeaseTTL: time.Hour, Clock: ft}, memory.Config{Partitions: 2, Clock: ft})
	cursor, _ := expireQuietly(h, ft, "gw", ttl)
	g, reg := h.connect("gw", cursor)
	if rs := g.next().GetResync(); rs == nil || rs.GetCursor() != reg.GetCursor() {
		t.Fatalf("after Registered %v: %v, want a Resync at its cursor", reg, rs)
	}
	g.watchAll()
	h.publish(event("after-expiry", "t", "c", "d", opCreate, `{}`, ""))
	next := g.delivery().GetCursor()
	g.close()
	h.publish(event("while-away", "t", "c", "d", opUpdate, `{}`, ""))
	g, reg = h.connect("gw", next)
	if !reg.GetResumed() {
		t.Fatalf("Registered = %v, want resumed", reg)
	}
	if got := summary(g.matchesUntil("while-away")); !slices.Equal(got, []string{"while-away:UPDATE:s"}) {
		t.Fatalf("got %q", got)
	}
}

// TestSessionOfAnExpiredGatewayIsToldItExpired: when another node's janitor
// expired the gateway (its session record is gone), the session's next
// heartbeat closes it as expired, which the client answers by registering
// again; SUPERSEDED, which is final, is only for a newer session.
func TestSessionOfAnExpiredGatewayIsToldItExpired(t *testing.T) {
	h := startNode(t, Config{}, memory.Config{Partitions: 2})
	g := h.watching("gw")
	if err := h.backend.Subscriptions.Forget(context.Background(), "gw"); err != nil { // as a janitor elsewhere does
		t.Fatal(err)
	}
	g.send(&streamerv1.GatewayMessage{Msg: &streamerv1.GatewayMessage_Heartbeat{Heartbeat: &streamerv1.Heartbeat{}}})
	e := g.endError()
	if e.GetCode() != streamerv1.ErrorCode_ERROR_CODE_UNAVAILABLE || !strings.Contains(e.GetMessage(), "expired") {
		t.Fatalf("session error = %v, want UNAVAILABLE saying the gateway expired", e)
	}
}

func TestHeartbeatKeepsGatewayAlive(t *testing.T) {
	const ttl = 30 * time.Second
	ft := newFakeTime(t)
	h := startNode(t, Config{GatewayTTL: ttl, LeaseTTL: time.Hour, Clock: ft}, memory.Config{Partitions: 2, Clock: ft})
	g := h.watching("gw-1")
	// Heartbeat every ttl/3 for 3 TTLs (the janitor and the session's
	// self-check run at each step); the subscription must survive.
	for range 9 {
		g.send(&streamerv1.GatewayMessage{Msg: &streamerv1.GatewayMessage_Heartbeat{Heartbeat: &streamerv1.Heartbeat{}}})
		g.take("HeartbeatAck", func(m *streamerv1.StreamerMessage) bool { return m.GetHeartbeatAck() != nil })
		ft.step(ttl / 3)
	}
	h.publish(event("e1", "t", "c", "d", opCreate, `{}`, ""))
	if got := summary(g.matchesUntil("e1")); !slices.Equal(got, []string{"e1:CREATE:s"}) {
		t.Fatalf("got %q", got)
	}
}

func TestResumeFromBeginningOfEmptyOutbox(t *testing.T) {
	h := startNode(t, Config{}, memory.Config{Partitions: 1})
	g, reg := h.connect("gw-1", "")
	if reg.GetCursor() != "" {
		t.Fatalf("Registered on an empty outbox = %v, want cursor \"\"", reg)
	}
	g.watchAll()
	g.close()
	// Cut before anything was delivered; an event arrives meanwhile.
	h.publishOneBatch("gw-1", event("while-away", "t", "c", "d", opCreate, `{}`, ""))

	g, reg = h.connect("gw-1", beginningCursor)
	if !reg.GetResumed() {
		t.Fatalf("Registered = %v, want resumed from the beginning", reg)
	}
	if got := summary(g.matchesUntil("while-away")); !slices.Equal(got, []string{"while-away:CREATE:s"}) {
		t.Fatalf("got %q", got)
	}
}

func TestResumeFromBeginningWithoutSubscriptionsGetsResync(t *testing.T) {
	h := startNode(t, Config{}, memory.Config{Partitions: 1})
	g, _ := h.connect("gw-1", beginningCursor) // e.g. its gateway expired while away
	if rs := g.next().GetResync(); rs == nil {
		t.Fatal("no Resync for a gateway with neither outbox nor subscriptions")
	}
}

// TestOutboxByteCapGivesResync: an outbox is capped by bytes as well as
// entries. A gateway away while large documents pile up comes back to a
// Resync, well before the entry cap would have dropped anything.
func TestOutboxByteCapGivesResync(t *testing.T) {
	const maxBytes = 64 << 10
	h := startNode(t, Config{OutboxMaxBytes: maxBytes}, memory.Config{Partitions: 2, OutboxMaxBytes: maxBytes})
	g := h.watching("gw")
	first := h.publishOneBatch("gw", event("e0", "t", "c", "d", opCreate, `{}`, ""))
	g.delivery()
	g.close()
	doc := `{"s":"` + strings.Repeat("x", 16<<10) + `"}`
	for i := 1; i <= 8; i++ { // 8 × 16 KiB: twice the byte cap, far below the entry cap
		h.publishOneBatch("gw", event(fmt.Sprintf("e%d", i), "t", "c", "d", opUpdate, doc, ""))
	}
	g, reg := h.connect("gw", first)
	if reg.GetResumed() {
		t.Fatalf("Registered = %v, want resumed=false", reg)
	}
	if rs := g.next().GetResync(); rs == nil || !strings.Contains(rs.GetReason(), fmt.Sprintf("%d bytes", maxBytes)) {
		t.Fatalf("message after Registered = %v, want a Resync naming the byte cap", rs)
	}
}
