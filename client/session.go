package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/streamerd/streamer/internal/clock"
	streamerv1 "github.com/streamerd/streamer/proto/streamer/v1"
)

const (
	// recvQueue bounds the messages read from the stream but not yet handled
	// by the run goroutine; when full, the receiver stops reading.
	recvQueue = 16
	// stableSession is how long a session must stay registered for the
	// reconnect backoff to start over.
	stableSession = time.Second
	// maxInflight bounds the Subscribe/Unsubscribe requests sent and not yet
	// answered. The rest wait in the session's queues: sending thousands of
	// re-subscribes without reading their answers would fill both
	// directions' flow-control windows and stall the client and the node on
	// each other.
	maxInflight = 512
	// minHeld is the least number of deliveries held back while
	// re-subscribing (WithDeliveryBuffer when larger).
	minHeld = 64
	// beginningCursor is the outbox position before every entry (cursors
	// are stream ids "<ms>-<seq>"). A Conn resumes from it when it was
	// registered on an empty outbox and has received nothing yet, because an
	// empty resume cursor would mean "start from now" and skip what was
	// appended while it was disconnected.
	beginningCursor = "0-0"
)

// run is the Conn's owner goroutine: it runs sessions one after another,
// backing off between them, until Close or a permanent failure.
func (c *Conn) run() {
	defer close(c.done)
	first := true
	attempt := 0
	for {
		registeredAt, err := c.session(first)
		c.connected.Store(false)
		if c.ctx.Err() != nil {
			c.finish(ErrClosed)
			return
		}
		if permanent(err) {
			c.log.Error("client: giving up", "err", err)
			c.finish(err)
			return
		}
		c.setLastErr(err)
		if errors.Is(err, ErrNoHeartbeat) {
			// The connection under the stream is silent too (a stalled
			// link): a new stream would reuse it, so replace it.
			c.replaceTransport()
		}
		if !registeredAt.IsZero() {
			first = false
			if clock.Since(c.cfg.clock, registeredAt) >= stableSession {
				attempt = 0
			}
		}
		wait := c.cfg.backoff.delay(attempt, rand.Int64N)
		attempt++
		c.log.Warn("client: session ended, reconnecting", "err", err, "in", wait)
		if !clock.Sleep(c.ctx, c.cfg.clock, wait) {
			c.finish(ErrClosed)
			return
		}
	}
}

// replaceTransport swaps the gRPC connection for a new one. Run only by run,
// which owns c.cc and c.api until it returns.
func (c *Conn) replaceTransport() {
	cc, err := c.cfg.grpcConn(c.addr)
	if err != nil { // cannot happen: the same settings worked in Dial
		c.log.Error("client: replacing the connection", "err", err)
		return
	}
	_ = c.cc.Close()
	c.cc, c.api = cc, streamerv1.NewStreamerClient(cc)
}

// session is one Streamer.Stream call: Register, re-subscribe, then
// deliveries until the stream fails. The run goroutine owns it; a second
// goroutine only receives from the stream into in.
type session struct {
	c      *Conn
	ctx    context.Context
	stream grpc.BidiStreamingClient[streamerv1.GatewayMessage, streamerv1.StreamerMessage]
	in     chan *streamerv1.StreamerMessage
	tick   <-chan time.Time   // heartbeat ticker; nil before Registered
	limit  chan time.Duration // the silence limit, sent once Registered is read

	recvErr error // why receiving stopped; valid once in is closed
	broken  bool  // Send saw the stream end: send nothing more, let in report why
	fatal   error // a send failed otherwise: end the session once idle

	inflight []pending                  // sent Subscribe/Unsubscribe awaiting SubscribeResult, in order
	resubQ   []*streamerv1.Subscription // live subscriptions still to re-subscribe, in order
	reqQ     []*request                 // caller requests still to send, after resubQ
	resubs   int                        // re-subscribe results still awaited
	holding  bool                       // hold deliveries in held until the re-subscribes are answered
	held     []held
	maxHeld  int
	lastAck  string // cursor sent in the last heartbeat
	sinceAck int    // deliveries handed out since the last heartbeat
}

// held is a Delivery or Resync (msg) or a dropped subscription, held back
// while re-subscribing.
type held struct {
	msg     *streamerv1.StreamerMessage
	dropped *SubscribeError
}

// session runs one stream until it fails or the Conn is closed, and returns
// when it was registered (zero if never) and why it ended.
func (c *Conn) session(first bool) (registeredAt time.Time, err error) {
	ctx, cancel := context.WithCancelCause(c.ctx)
	defer cancel(nil)
	stream, err := c.api.Stream(ctx)
	if err != nil {
		return time.Time{}, fromStatus(err)
	}
	s := &session{c: c, ctx: ctx, stream: stream, in: make(chan *streamerv1.StreamerMessage, recvQueue),
		limit: make(chan time.Duration, 1), maxHeld: max(c.cfg.buffer, minHeld)}

	// The watchdog ends the session when the node stays silent while the
	// receiver waits for it (not while the receiver waits for us).
	watchdog := c.cfg.clock.AfterFunc(registerTimeout, func() { cancel(ErrNoHeartbeat) })
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(s.in)
		s.recvErr = s.receive(watchdog)
	})
	defer func() {
		watchdog.Stop()
		cancel(nil)
		wg.Wait()
	}()

	resumeFrom := c.cursor
	if err := s.send(&streamerv1.GatewayMessage{Msg: &streamerv1.GatewayMessage_Register{
		Register: &streamerv1.Register{GatewayId: c.cfg.gatewayID, ResumeCursor: resumeFrom},
	}}); err != nil {
		return time.Time{}, err
	}
	var m *streamerv1.StreamerMessage
	select {
	case m = <-s.in:
		if m == nil {
			return time.Time{}, s.endErr()
		}
	case <-c.ctx.Done():
		return time.Time{}, ErrClosed
	}
	reg := m.GetRegistered()
	if reg == nil {
		if e := m.GetError(); e != nil {
			return time.Time{}, fromNodeError(e)
		}
		return time.Time{}, fmt.Errorf("%w: first message is not Registered", ErrProtocol)
	}
	registeredAt = c.cfg.clock.Now()
	c.connected.Store(true)
	if first {
		close(c.ready) // Dial returns; no request can be queued before this
	}
	if resumeFrom == "" {
		c.cursor = reg.GetCursor()
		if c.cursor == "" {
			c.cursor = beginningCursor
		}
	}
	interval, limit := heartbeatTiming(c.cfg.heartbeat, reg.GetTtl().AsDuration())
	s.limit <- limit
	if !first {
		c.stats.reconnects.Add(1)
	}
	c.log.Info("client: registered", "node", reg.GetNodeId(), "resumed", reg.GetResumed(),
		"heartbeat", interval, "subscriptions", len(c.subs))

	// Heartbeat at once: its answer re-arms the watchdog with the new
	// silence limit, and it acknowledges what was handed out before.
	if err := s.heartbeat(); err != nil {
		return registeredAt, err
	}
	s.resubQ = c.liveSubs()
	s.resubs = len(s.resubQ)
	s.holding = s.resubs > 0
	for _, r := range c.queue {
		r.resent = r.sent
	}
	s.reqQ = slices.Clone(c.queue)
	if err := s.sendQueued(); err != nil {
		return registeredAt, err
	}
	ticker := c.cfg.clock.NewTicker(interval)
	defer ticker.Stop()
	s.tick = ticker.C()
	return registeredAt, s.loop()
}

// ackEvery is how many deliveries handed out make the session heartbeat
// at once, acknowledging them, rather than at its next tick.
const ackEvery = 256

// heartbeatTiming returns how often a session heartbeats (configured, or
// the node's TTL/5, or DefaultHeartbeatInterval) and how long a node may
// stay silent before the session ends: two intervals, at most half the TTL.
// A node answers every heartbeat, so two intervals without a message mean
// it is gone, and the half of the TTL left is for reconnecting to another
// node before the gateway's subscriptions expire.
func heartbeatTiming(configured, ttl time.Duration) (interval, limit time.Duration) {
	interval = configured
	if interval == 0 {
		interval = DefaultHeartbeatInterval
		if ttl > 0 {
			interval = ttl / 5
		}
	}
	limit = 2 * interval
	if ttl > 0 {
		limit = min(limit, ttl/2)
	}
	return interval, limit
}

// receive reads the stream into s.in until it fails. The watchdog runs only
// while Recv waits for the node: first with registerTimeout, then, once the
// owner has read Registered, with the limit it sends on s.limit.
func (s *session) receive(watchdog clock.Timer) error {
	limit := time.Duration(0)
	for {
		m, err := s.stream.Recv()
		if err != nil {
			return err
		}
		watchdog.Stop()
		s.c.stats.received.Add(1)
		select {
		case s.in <- m:
		case <-s.ctx.Done():
			return context.Cause(s.ctx)
		}
		if limit == 0 { // m was the first message: Registered, or the session ends
			select {
			case limit = <-s.limit:
			case <-s.ctx.Done():
				return context.Cause(s.ctx)
			}
		}
		watchdog.Reset(limit)
	}
}

// endErr is why the stream ended, once s.in is closed.
func (s *session) endErr() error {
	if cause := context.Cause(s.ctx); cause != nil {
		if errors.Is(cause, context.Canceled) && s.c.ctx.Err() != nil {
			return ErrClosed
		}
		return cause
	}
	if errors.Is(s.recvErr, io.EOF) {
		return errors.New("client: the node closed the stream")
	}
	return fromStatus(s.recvErr)
}

// loop handles the registered session until it ends.
func (s *session) loop() error {
	for {
		if s.fatal != nil {
			return s.fatal
		}
		select {
		case m := <-s.in:
			if m == nil {
				return s.endErr()
			}
			if err := s.handle(m); err != nil {
				return err
			}
		case r := <-s.c.reqs:
			s.accept(r)
		case <-s.tick:
			s.fatal = s.heartbeat()
		case <-s.c.ctx.Done():
			return ErrClosed
		}
	}
}

// handle processes one message from the node.
func (s *session) handle(m *streamerv1.StreamerMessage) error {
	switch x := m.GetMsg().(type) {
	case *streamerv1.StreamerMessage_Delivery, *streamerv1.StreamerMessage_Resync:
		if s.holding {
			s.held = append(s.held, held{msg: m})
			if len(s.held) >= s.maxHeld {
				return s.release()
			}
			return nil
		}
		return s.process(m)
	case *streamerv1.StreamerMessage_SubscribeResult:
		return s.result(x.SubscribeResult)
	case *streamerv1.StreamerMessage_HeartbeatAck:
		return nil
	case *streamerv1.StreamerMessage_Error:
		return fromNodeError(x.Error)
	case *streamerv1.StreamerMessage_Registered:
		return fmt.Errorf("%w: Registered received twice", ErrProtocol)
	}
	return nil // a message kind newer than this client: ignore it
}

// process hands one Delivery or Resync to the caller and advances the
// cursor.
func (s *session) process(m *streamerv1.StreamerMessage) error {
	c := s.c
	if d := m.GetDelivery(); d != nil {
		kept, dups := c.dedup.filter(d.GetMatches())
		c.stats.duplicates.Add(uint64(dups))
		if len(kept) > 0 {
			if err := s.emit(Delivery{Cursor: d.GetCursor(), Matches: toMatches(kept)}); err != nil {
				return err
			}
		}
		if p := d.GetSnapshot(); p != nil {
			if err := s.emit(Delivery{Cursor: d.GetCursor(), Snapshot: p}); err != nil {
				return err
			}
		}
		for _, e := range d.GetEnded() {
			// The node ended the subscription (its CEL cost): it is not
			// re-subscribed on reconnect.
			c.removeSub(e.GetSubscriptionId())
			se := &SubscribeError{SubscriptionID: e.GetSubscriptionId(), Code: e.GetError().GetCode(), Message: e.GetError().GetMessage()}
			c.log.Warn("client: the node ended a subscription", "err", se)
			if err := s.emit(Delivery{Cursor: d.GetCursor(), Dropped: se}); err != nil {
				return err
			}
		}
		if d.GetCursor() != "" {
			c.cursor = d.GetCursor()
		}
		// Acknowledge early under load: the node trims the outbox up to
		// the acknowledged cursor, and need not hold what was handed out
		// until the next heartbeat tick.
		if s.sinceAck++; s.sinceAck >= ackEvery {
			return s.heartbeat()
		}
		return nil
	}
	r := m.GetResync()
	c.log.Warn("client: resync: events may have been lost", "reason", r.GetReason(), "cursor", r.GetCursor())
	if err := s.emit(Delivery{Cursor: r.GetCursor(), Resync: &Resync{Reason: r.GetReason()}}); err != nil {
		return err
	}
	// An empty cursor means "the beginning of the outbox"; keeping the old
	// one is safe: resuming from it yields another Resync, never a gap.
	if r.GetCursor() != "" {
		c.cursor = r.GetCursor()
	}
	return nil
}

// emit puts d on the Deliveries channel, serving requests and heartbeats
// while the caller does not read. Close, or the end of the session (its
// silence watchdog fired), interrupts it. The counters
// are updated before the hand-over, so a caller that has received d sees
// them include it.
func (s *session) emit(d Delivery) error {
	st := &s.c.stats
	count := func(sign uint64) { // sign is 1 or ^uint64(0) (-1)
		st.deliveries.Add(sign)
		st.events.Add(sign * uint64(len(d.Matches)))
		if d.Resync != nil {
			st.resyncs.Add(sign)
		}
	}
	count(1)
	for {
		select {
		case s.c.deliveries <- d:
			return nil
		case r := <-s.c.reqs:
			s.accept(r)
		case <-s.tick:
			if s.fatal == nil {
				s.fatal = s.heartbeat()
			}
		case <-s.ctx.Done():
			// Closed, or the session ended (the node went silent): d was not
			// handed out, and the cursor still precedes it, so the next
			// session delivers it again.
			count(^uint64(0))
			if s.c.ctx.Err() != nil {
				return ErrClosed
			}
			return context.Cause(s.ctx)
		}
	}
}

// release stops holding deliveries and hands out the held ones.
func (s *session) release() error {
	s.holding = false
	held := s.held
	s.held = nil
	for _, h := range held {
		var err error
		if h.dropped != nil {
			err = s.emit(Delivery{Dropped: h.dropped})
		} else {
			err = s.process(h.msg)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// heartbeat sends a Heartbeat acknowledging the newest cursor handed to the
// caller, if it changed since the last one.
func (s *session) heartbeat() error {
	ack := ""
	if s.c.cursor != s.lastAck && s.c.cursor != beginningCursor {
		ack = s.c.cursor
	}
	if err := s.send(&streamerv1.GatewayMessage{Msg: &streamerv1.GatewayMessage_Heartbeat{
		Heartbeat: &streamerv1.Heartbeat{AckCursor: ack},
	}}); err != nil {
		return err
	}
	s.lastAck, s.sinceAck = s.c.cursor, 0
	s.c.stats.heartbeats.Add(1)
	return nil
}

// send writes m to the stream. io.EOF means the stream ended: the receive
// side reports why, so send only notes it.
func (s *session) send(m *streamerv1.GatewayMessage) error {
	if s.broken {
		return nil
	}
	if err := s.stream.Send(m); err != nil {
		if errors.Is(err, io.EOF) {
			s.broken = true
			return nil
		}
		return fromStatus(err)
	}
	return nil
}
