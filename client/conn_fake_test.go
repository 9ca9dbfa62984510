package client

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/streamerd/streamer/internal/clock"
	"github.com/streamerd/streamer/internal/testwait"
	streamerv1 "github.com/streamerd/streamer/proto/streamer/v1"
)

// These tests drive the Conn against a scripted node, to check the session
// logic message by message; conn_test.go runs it against a real node.

func TestConnSubscribeAnswers(t *testing.T) {
	f, p := startFake(t)
	c, s := dialFake(t, f, p, "")

	t.Run("accepted", func(t *testing.T) {
		done := subscribeAsync(c, Subscription{ID: "a", Collection: "c"})
		if m := s.expect(t).GetSubscribe(); m.GetSubscription().GetSubscriptionId() != "a" {
			t.Fatalf("got %v, want Subscribe a", m)
		}
		s.send(t, subResult("a", false, 0))
		if err := waitErr(t, done); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("refused with the node's code, conn still usable", func(t *testing.T) {
		done := subscribeAsync(c, Subscription{ID: "bad", Collection: "c", CEL: "doc."})
		s.expect(t)
		s.send(t, subResult("bad", false, streamerv1.ErrorCode_ERROR_CODE_INVALID_CEL))
		var se *SubscribeError
		if err := waitErr(t, done); !errors.As(err, &se) || se.Code != streamerv1.ErrorCode_ERROR_CODE_INVALID_CEL ||
			se.SubscriptionID != "bad" || se.Message != "fake refusal" {
			t.Fatalf("err = %v, want *SubscribeError INVALID_CEL", err)
		}
		s.send(t, delivery("1-0", "e1"))
		if got := eventIDs(nextDelivery(t, c)); !slices.Equal(got, []string{"e1"}) {
			t.Fatalf("got %v", got)
		}
	})
	t.Run("unsubscribe of an unknown id", func(t *testing.T) {
		done := make(chan error, 1)
		go func() { done <- c.Unsubscribe(context.Background(), "nope") }()
		if m := s.expect(t).GetUnsubscribe(); m.GetSubscriptionId() != "nope" {
			t.Fatalf("got %v", m)
		}
		s.send(t, subResult("nope", true, streamerv1.ErrorCode_ERROR_CODE_UNKNOWN_SUBSCRIPTION))
		var se *SubscribeError
		if err := waitErr(t, done); !errors.As(err, &se) || se.Code != streamerv1.ErrorCode_ERROR_CODE_UNKNOWN_SUBSCRIPTION {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("invalid input is refused without a round trip", func(t *testing.T) {
		var se *SubscribeError
		if err := c.Subscribe(context.Background(), Subscription{ID: "x", DocumentID: "d", CEL: "true"}); !errors.As(err, &se) {
			t.Fatalf("err = %v", err)
		}
		if err := c.Unsubscribe(context.Background(), ""); !errors.As(err, &se) {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestConnReconnectResumesResubscribesAndDedups(t *testing.T) {
	f, p := startFake(t)
	c, s := dialFake(t, f, p, "")
	for _, id := range []string{"b", "a", "c"} {
		done := subscribeAsync(c, Subscription{ID: id, Collection: "c"})
		s.expect(t)
		s.send(t, subResult(id, false, 0))
		if err := waitErr(t, done); err != nil {
			t.Fatal(err)
		}
	}
	s.send(t, delivery("5-0", "e1", "e2"))
	if got := eventIDs(nextDelivery(t, c)); !slices.Equal(got, []string{"e1", "e2"}) {
		t.Fatalf("got %v", got)
	}

	s.end <- status.Error(codes.Unavailable, "node going away")
	s = f.next(t)
	if reg := s.expect(t).GetRegister(); reg.GetResumeCursor() != "5-0" || reg.GetGatewayId() != c.GatewayID() {
		t.Fatalf("Register %v, want resume from 5-0 as %s", reg, c.GatewayID())
	}
	s.send(t, registered("5-0", true))
	if hb := s.expectAny(t).GetHeartbeat(); hb == nil || hb.GetAckCursor() != "5-0" {
		t.Fatalf("want an immediate heartbeat acking 5-0, got %v", hb)
	}
	var order []string
	for range 3 {
		order = append(order, s.expect(t).GetSubscribe().GetSubscription().GetSubscriptionId())
	}
	if !slices.Equal(order, []string{"b", "a", "c"}) {
		t.Fatalf("re-subscribed %v, want subscription order [b a c]", order)
	}
	// A delivery sent before the re-subscribes are answered is held back.
	s.send(t, delivery("6-0", "e2", "e3")) // e2 is a replay
	s.send(t, subResult("b", false, 0))
	s.send(t, subResult("a", false, 0))
	select {
	case d := <-c.Deliveries():
		t.Fatalf("delivery %v surfaced before the re-subscribes were answered", eventIDs(d))
	case <-time.After(100 * time.Millisecond): // absence check, not synchronisation
	}
	s.send(t, subResult("c", false, 0))
	if got := eventIDs(nextDelivery(t, c)); !slices.Equal(got, []string{"e3"}) {
		t.Fatalf("got %v, want only e3 (e2 is a duplicate)", got)
	}
	if st := c.Stats(); st.Duplicates != 1 || st.Reconnects != 1 || st.Events != 3 {
		t.Errorf("stats %+v", st)
	}
}

func TestConnResubscribeRefusedIsSurfaced(t *testing.T) {
	f, p := startFake(t)
	c, s := dialFake(t, f, p, "1-0")
	done := subscribeAsync(c, Subscription{ID: "a", Collection: "c", CEL: "doc.x == 1"})
	s.expect(t)
	s.send(t, subResult("a", false, 0))
	if err := waitErr(t, done); err != nil {
		t.Fatal(err)
	}
	s.end <- status.Error(codes.Unavailable, "bye")
	s = f.next(t)
	if reg := s.expect(t).GetRegister(); reg.GetResumeCursor() != "1-0" {
		t.Fatalf("Register %v", reg)
	}
	s.send(t, registered("1-0", true))
	s.expect(t)
	s.send(t, subResult("a", false, streamerv1.ErrorCode_ERROR_CODE_TOO_LARGE))
	d := nextDelivery(t, c)
	if d.Dropped == nil || d.Dropped.SubscriptionID != "a" || d.Dropped.Code != streamerv1.ErrorCode_ERROR_CODE_TOO_LARGE {
		t.Fatalf("got %+v, want Dropped a", d)
	}
}

func TestConnUnsubscribeRetriedAfterLostAnswer(t *testing.T) {
	f, p := startFake(t)
	c, s := dialFake(t, f, p, "1-0")
	done := subscribeAsync(c, Subscription{ID: "a", Collection: "c"})
	s.expect(t)
	s.send(t, subResult("a", false, 0))
	if err := waitErr(t, done); err != nil {
		t.Fatal(err)
	}
	unsub := make(chan error, 1)
	go func() { unsub <- c.Unsubscribe(context.Background(), "a") }()
	s.expect(t)
	s.end <- status.Error(codes.Unavailable, "answer lost") // the node applied it, the answer is lost

	s = f.next(t)
	s.expect(t)
	s.send(t, registered("1-0", true))
	if m := s.expect(t).GetSubscribe(); m.GetSubscription().GetSubscriptionId() != "a" {
		t.Fatalf("want the live subscription re-sent first, got %v", m)
	}
	if m := s.expect(t).GetUnsubscribe(); m.GetSubscriptionId() != "a" {
		t.Fatalf("want the pending unsubscribe re-sent, got %v", m)
	}
	s.send(t, subResult("a", false, 0))
	s.send(t, subResult("a", true, 0))
	if err := waitErr(t, unsub); err != nil {
		t.Fatal(err)
	}
}

func TestConnResyncIsSurfaced(t *testing.T) {
	f, p := startFake(t)
	c, s := dialFake(t, f, p, "1-0")
	s.send(t, &streamerv1.StreamerMessage{Msg: &streamerv1.StreamerMessage_Resync{
		Resync: &streamerv1.Resync{Reason: "outbox overflow", Cursor: "9-0"}}})
	d := nextDelivery(t, c)
	if d.Resync == nil || d.Resync.Reason != "outbox overflow" || d.Cursor != "9-0" || len(d.Matches) != 0 {
		t.Fatalf("got %+v", d)
	}
	// The next session resumes after the Resync's cursor.
	s.end <- status.Error(codes.Unavailable, "bye")
	s = f.next(t)
	if reg := s.expect(t).GetRegister(); reg.GetResumeCursor() != "9-0" {
		t.Fatalf("Register %v, want resume from 9-0", reg)
	}
	if st := c.Stats(); st.Resyncs != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestConnResumesFromTheBeginningOfAnEmptyOutbox(t *testing.T) {
	f, p := startFake(t)
	_, s := dialFake(t, f, p, "") // registered on an empty outbox, nothing received
	s.end <- status.Error(codes.Unavailable, "bye")
	s = f.next(t)
	if reg := s.expect(t).GetRegister(); reg.GetResumeCursor() != beginningCursor {
		t.Fatalf("Register %v, want resume from %s, not from now", reg, beginningCursor)
	}
}

func TestConnHeartbeatsContinueUnderBackpressure(t *testing.T) {
	f, p := startFake(t)
	const interval = 10 * time.Second
	fc := clock.NewFake(time.Now())
	c, s := dialFake(t, f, p, "1-0", WithDeliveryBuffer(1), WithHeartbeatInterval(interval), withClock(fc))
	// The caller never reads: the Conn fills its channel, and its session
	// waits to hand out the next delivery, but keeps heartbeating,
	// acknowledging only what it handed out. The node answers each
	// heartbeat; the test steps the clock only once the Conn has received
	// the answer, so that its silence watchdog (two intervals without a
	// message) never sees a node that talks as silent.
	for i := range 2 {
		s.send(t, delivery(fmt.Sprintf("2-%d", i), fmt.Sprintf("e%d", i)))
	}
	testwait.For(t, "the Conn's buffer full", func() bool { return len(c.Deliveries()) == 1 })
	ack := &streamerv1.StreamerMessage{Msg: &streamerv1.StreamerMessage_HeartbeatAck{HeartbeatAck: &streamerv1.HeartbeatAck{}}}
	answer := func() {
		t.Helper()
		hb := s.expectAny(t).GetHeartbeat()
		if hb == nil {
			t.Fatal("the Conn sent something else than a heartbeat")
		}
		if hb.GetAckCursor() == "2-1" {
			t.Fatalf("heartbeat acknowledged %q, a delivery the caller never took", hb.GetAckCursor())
		}
		want := c.Stats().Received + 1
		s.send(t, ack)
		testwait.For(t, "the answer received", func() bool { return c.Stats().Received >= want })
	}
	answer() // the heartbeat sent at once after Registered
	for range 5 {
		fc.Advance(interval)
		answer()
	}
	if got := len(c.Deliveries()); got != 1 {
		t.Errorf("%d deliveries buffered, want 1", got)
	}
}

// TestConnSilentNodeIsLeftWhileTheCallerDoesNotRead: a session waiting for
// the caller to take a delivery still ends when the node goes silent, and
// the next one resumes from the last delivery handed out, so the one not
// taken is delivered again.
func TestConnSilentNodeIsLeftWhileTheCallerDoesNotRead(t *testing.T) {
	f, p := startFake(t)
	const interval = 10 * time.Second
	fc := clock.NewFake(time.Now())
	c, s := dialFake(t, f, p, "1-0", WithDeliveryBuffer(1), WithHeartbeatInterval(interval), withClock(fc))
	s.send(t, delivery("2-0", "e0")) // handed out: the channel holds it
	s.send(t, delivery("2-1", "e1")) // waits for the caller
	testwait.For(t, "the Conn's buffer full", func() bool { return len(c.Deliveries()) == 1 })
	testwait.For(t, "both deliveries received", func() bool { return c.Stats().Received >= 3 })
	var s2 *fakeSession
	testwait.For(t, "a new session after two intervals of silence", func() bool {
		select {
		case s2 = <-f.sessions:
			return true
		default:
			fc.Advance(interval / 2) // heartbeats, the watchdog, then the reconnect backoff
			return false
		}
	})
	if reg := s2.expect(t).GetRegister(); reg.GetResumeCursor() != "2-0" {
		t.Fatalf("Register %v, want resume after 2-0, the last delivery handed out", reg)
	}
	s2.send(t, registered("2-1", true))
	if got := eventIDs(<-c.Deliveries()); !slices.Equal(got, []string{"e0"}) {
		t.Fatalf("first delivery %v, want e0", got)
	}
}

func TestConnSilentNodeIsLeft(t *testing.T) {
	f, p := startFake(t)
	const interval = 10 * time.Second
	fc := clock.NewFake(time.Now())
	c, s := dialFake(t, f, p, "1-0", WithHeartbeatInterval(interval), withClock(fc))
	// The node never answers heartbeats: two intervals of silence end the
	// session, and the Conn dials again.
	var s2 *fakeSession
	testwait.For(t, "a new session after two intervals of silence", func() bool {
		select {
		case s2 = <-f.sessions:
			return true
		default:
			fc.Advance(interval / 2) // heartbeats, the watchdog, then the reconnect backoff
			return false
		}
	})
	_ = s
	if reg := s2.expect(t).GetRegister(); reg.GetGatewayId() != c.GatewayID() {
		t.Fatalf("Register %v", reg)
	}
}

func TestConnUnauthenticated(t *testing.T) {
	deny := func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		return status.Error(codes.Unauthenticated, "bad token")
	}
	t.Run("refused at dial", func(t *testing.T) {
		_, p := startFake(t, grpc.StreamInterceptor(deny))
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()
		_, err := Dial(ctx, InProcessAddr, p.Option(), WithToken("wrong"), WithLogger(testLogger(t)))
		if !errors.Is(err, ErrUnauthenticated) {
			t.Fatalf("err = %v, want ErrUnauthenticated", err)
		}
	})
	t.Run("node error mid-session ends the conn", func(t *testing.T) {
		f, p := startFake(t)
		c, s := dialFake(t, f, p, "1-0")
		s.send(t, &streamerv1.StreamerMessage{Msg: &streamerv1.StreamerMessage_Error{
			Error: &streamerv1.Error{Code: streamerv1.ErrorCode_ERROR_CODE_UNAUTHENTICATED, Message: "token rotated"}}})
		for range c.Deliveries() {
		}
		if !errors.Is(c.Err(), ErrUnauthenticated) {
			t.Fatalf("Err() = %v, want ErrUnauthenticated", c.Err())
		}
		if err := c.Subscribe(context.Background(), Subscription{ID: "a", Collection: "c"}); !errors.Is(err, ErrUnauthenticated) {
			t.Fatalf("Subscribe after failure: %v", err)
		}
	})
}

func TestConnDialGivesUpWithContext(t *testing.T) {
	_, p := startFake(t, grpc.StreamInterceptor(func(any, grpc.ServerStream, *grpc.StreamServerInfo, grpc.StreamHandler) error {
		return status.Error(codes.Unavailable, "not yet")
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := Dial(ctx, InProcessAddr, p.Option(), WithBackoff(time.Millisecond, 5*time.Millisecond), WithLogger(testLogger(t)))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want DeadlineExceeded", err)
	}
}

func TestConnCloseWaitsAndClosesDeliveries(t *testing.T) {
	f, p := startFake(t)
	c, s := dialFake(t, f, p, "1-0", WithDeliveryBuffer(0))
	s.send(t, delivery("2-0", "e1")) // the Conn blocks handing it out
	blocked := subscribeAsync(c, Subscription{ID: "a", Collection: "c"})
	s.expect(t) // sent while blocked; never answered
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ok := <-c.Deliveries(); ok {
		t.Fatal("deliveries not closed")
	}
	if err := waitErr(t, blocked); !errors.Is(err, ErrClosed) {
		t.Fatalf("pending Subscribe: %v, want ErrClosed", err)
	}
	if !errors.Is(c.Err(), ErrClosed) || c.Close() != nil {
		t.Fatalf("Err() = %v", c.Err())
	}
	if err := c.Subscribe(context.Background(), Subscription{ID: "b", Collection: "c"}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Subscribe after Close: %v", err)
	}
}

func TestConnBoundsRequestsInFlight(t *testing.T) {
	const live = maxInflight + 50
	f, p := startFake(t)
	c, s := dialFake(t, f, p, "1-0")
	for i := range live {
		id := fmt.Sprintf("s%d", i)
		done := subscribeAsync(c, Subscription{ID: id, Collection: "c"})
		s.expect(t)
		s.send(t, subResult(id, false, 0))
		if err := waitErr(t, done); err != nil {
			t.Fatal(err)
		}
	}
	s.end <- status.Error(codes.Unavailable, "bye")
	s = f.next(t)
	s.expect(t)
	s.send(t, registered("1-0", true))
	for i := range maxInflight {
		if id := s.expect(t).GetSubscribe().GetSubscription().GetSubscriptionId(); id != fmt.Sprintf("s%d", i) {
			t.Fatalf("re-subscribe %d is %q", i, id)
		}
	}
	select {
	case m := <-s.recv:
		if m.GetHeartbeat() == nil {
			t.Fatalf("more than %d requests in flight: %v", maxInflight, m)
		}
	case <-time.After(100 * time.Millisecond): // absence check, not synchronisation
	}
	// Each answer lets one more request go.
	for i := range live {
		s.send(t, subResult(fmt.Sprintf("s%d", i), false, 0))
		if next := maxInflight + i; next < live {
			if id := s.expect(t).GetSubscribe().GetSubscription().GetSubscriptionId(); id != fmt.Sprintf("s%d", next) {
				t.Fatalf("re-subscribe %d is %q", next, id)
			}
		}
	}
	s.send(t, delivery("2-0", "e1"))
	if got := eventIDs(nextDelivery(t, c)); !slices.Equal(got, []string{"e1"}) {
		t.Fatalf("got %v", got)
	}
}

// TestConnLeavesASilentNodeWellBeforeTheTTL: with the node's TTL (30 s) and
// the default heartbeat, a node that stops answering is left after half the
// TTL at most, so that the Conn registers elsewhere before its
// subscriptions expire (it used to wait exactly one TTL).
func TestConnLeavesASilentNodeWellBeforeTheTTL(t *testing.T) {
	f, p := startFake(t)
	const ttl = 30 * time.Second // registered() sends it
	fc := clock.NewFake(time.Now())
	_, s := dialFake(t, f, p, "1-0", withClock(fc))
	start := fc.Now()
	heartbeats, recv := 0, s.recv
	testwait.For(t, "a new session", func() bool {
		select {
		case <-f.sessions:
			return true
		case m, ok := <-recv:
			if !ok {
				recv = nil // the session ended: wait for the next
			} else if m.GetHeartbeat() != nil {
				heartbeats++
			}
			return false
		default:
			fc.Advance(time.Second)
			return false
		}
	})
	if waited := fc.Now().Sub(start); waited > ttl/2+time.Second {
		t.Errorf("a silent node was left after %v, want at most %v (TTL %v)", waited, ttl/2, ttl)
	}
	if heartbeats < 2 {
		t.Errorf("%d heartbeats sent before leaving, want at least 2 (one at once, one after TTL/5)", heartbeats)
	}
}

// TestConnReadyFollowsTheSession: Ready is nil while a session is
// registered, ErrNotConnected with the reason while the Conn reconnects
// (what a gateway's /readyz reports), and nil again once registered.
func TestConnReadyFollowsTheSession(t *testing.T) {
	f, p := startFake(t)
	fc := clock.NewFake(time.Now())
	c, s := dialFake(t, f, p, "1-0", withClock(fc))
	if err := c.Ready(); err != nil {
		t.Fatalf("Ready after Dial = %v", err)
	}
	s.end <- status.Error(codes.Unavailable, "node going away")
	testwait.For(t, "Ready to report the lost session", func() bool {
		err := c.Ready()
		return errors.Is(err, ErrNotConnected) && strings.Contains(err.Error(), "node going away")
	})
	var s2 *fakeSession
	testwait.For(t, "a new session", func() bool {
		select {
		case s2 = <-f.sessions:
			return true
		default:
			fc.Advance(100 * time.Millisecond) // the reconnect backoff
			return false
		}
	})
	s2.expect(t)
	s2.send(t, registered("1-0", true))
	testwait.For(t, "Ready again", func() bool { return c.Ready() == nil })
	_ = c.Close()
	if err := c.Ready(); !errors.Is(err, ErrClosed) {
		t.Errorf("Ready after Close = %v, want ErrClosed", err)
	}
}

// TestConnAcknowledgesEveryFewDeliveries: a Conn under load acknowledges
// what it handed out every ackEvery deliveries, without waiting for its
// heartbeat tick (the clock never moves here), so the node trims the
// outbox promptly.
func TestConnAcknowledgesEveryFewDeliveries(t *testing.T) {
	f, p := startFake(t)
	fc := clock.NewFake(time.Now())
	c, s := dialFake(t, f, p, "1-0", withClock(fc))
	if hb := s.expectAny(t).GetHeartbeat(); hb == nil { // the one sent at once after Registered
		t.Fatal("no first heartbeat")
	}
	last := ""
	for i := range ackEvery {
		last = fmt.Sprintf("2-%d", i)
		s.send(t, delivery(last, fmt.Sprintf("e%d", i)))
		<-c.Deliveries()
	}
	hb := s.expectAny(t).GetHeartbeat()
	if hb == nil || hb.GetAckCursor() != last {
		t.Fatalf("after %d deliveries: %v, want a heartbeat acknowledging %s", ackEvery, hb, last)
	}
}
