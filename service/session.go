package service

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/streamerd/streamer/internal/clock"
	"github.com/streamerd/streamer/internal/wire"
	streamerv1 "github.com/streamerd/streamer/proto/streamer/v1"
	"github.com/streamerd/streamer/store"
)

// session is one gateway's Stream. Its owner goroutine (the gRPC handler,
// session.run) is the only one that sends on the stream and the only one that
// touches the session's state; it selects over:
//
//   - in: messages from the receiver goroutine, which only calls Recv
//     (bounded; a full channel blocks Recv, pushing back on the gateway);
//   - out: Deliveries and Resyncs from the delivery pump goroutine (bounded;
//     a full channel blocks the pump, and the outbox absorbs the backlog up to
//     its cap, after which the gateway gets a Resync);
//   - killCh: a request from another goroutine to send an Error and close
//     (superseded, gateway expired, node shutting down); the first wins.
type session struct {
	n      *Node
	stream grpc.BidiStreamingServer[streamerv1.GatewayMessage, streamerv1.StreamerMessage]
	log    *slog.Logger

	in     chan received
	out    chan outgoing
	killCh chan *streamerv1.Error

	// Set once by the owner before the session is registered; read by the
	// registry under its lock afterwards.
	gateway string
	epoch   int64

	// Owner-only state.
	acked    string    // newest acknowledged cursor
	deadline time.Time // no later than the gateway's deadline in the backend
	heard    time.Time // when the gateway last sent a message
}

// outgoing is what the pump hands the owner to send: a message (Resync), or a
// Delivery straight from the outbox, forwarded without re-encoding.
type outgoing struct {
	msg    *streamerv1.StreamerMessage
	cursor string // with batch: the outbox entry's id
	batch  []byte // an encoded OutboxBatch
}

// received is one result of Recv.
type received struct {
	msg *streamerv1.GatewayMessage
	err error
}

// sessionBuffer bounds the session's in and out channels.
const sessionBuffer = 16

// kill asks the owner to send an Error with code and message and close the
// session. It never blocks; only the first request counts.
func (s *session) kill(code streamerv1.ErrorCode, msg string) {
	select {
	case s.killCh <- errorf(code, "%s", msg):
	default:
	}
}

// Stream serves one gateway session; see the Streamer service documentation
// in streamer.proto.
func (svc *streamerService) Stream(stream grpc.BidiStreamingServer[streamerv1.GatewayMessage, streamerv1.StreamerMessage]) error {
	n := svc.n
	s := &session{
		n:      n,
		stream: stream,
		log:    n.log,
		in:     make(chan received, sessionBuffer),
		out:    make(chan outgoing, sessionBuffer),
		killCh: make(chan *streamerv1.Error, 1),
	}
	if n.draining.Load() || !n.sessions.add(s) {
		return s.sendError(errorf(streamerv1.ErrorCode_ERROR_CODE_UNAVAILABLE, "streamer: node is shutting down"))
	}
	defer n.sessions.done(s)

	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	// The receiver cannot be waited for: Recv returns only once the stream
	// ends, which gRPC does right after this handler returns. It then exits
	// at once (ctx is done by then).
	go s.receive(ctx)
	return s.run(ctx)
}

// receive forwards the stream's messages to the owner until Recv fails.
func (s *session) receive(ctx context.Context) {
	for {
		m, err := s.stream.Recv()
		select {
		case s.in <- received{m, err}:
		case <-ctx.Done():
			return
		}
		if err != nil {
			return
		}
	}
}

// run is the owner loop: handshake, then messages, deliveries and kill
// requests until the session ends.
func (s *session) run(ctx context.Context) error {
	first, err := s.next(ctx)
	if err != nil || first == nil {
		return err
	}
	reg := first.GetRegister()
	if reg == nil {
		return s.sendError(errorf(streamerv1.ErrorCode_ERROR_CODE_NOT_REGISTERED, "streamer: the first message of a stream must be Register"))
	}
	start, fatal := s.register(ctx, reg)
	if fatal != nil {
		return s.sendError(fatal)
	}
	defer s.unregister(ctx)

	pumpCtx, stopPump := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { s.pump(pumpCtx, start) })
	defer wg.Wait()
	defer stopPump()

	s.heard = s.n.cfg.Clock.Now()
	check := s.n.cfg.Clock.NewTimer(s.n.cfg.GatewayTTL / 3)
	defer check.Stop()
	for {
		select {
		case r := <-s.in:
			if r.err != nil {
				return recvError(r.err)
			}
			s.heard = s.n.cfg.Clock.Now()
			if fatal, err := s.handle(ctx, r.msg); fatal != nil || err != nil {
				if fatal != nil {
					return s.sendError(fatal)
				}
				return err
			}
		case m := <-s.out:
			if err := s.sendOut(m); err != nil {
				return err
			}
		case e := <-s.killCh:
			return s.sendError(e)
		case <-check.C():
			if fatal := s.check(ctx); fatal != nil {
				return s.sendError(fatal)
			}
			check.Reset(s.n.cfg.GatewayTTL / 3)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// check is the session's periodic self-check, for sessions whose gateway
// stopped talking (a half-open connection, a stream the gateway abandoned
// after reconnecting elsewhere): when the gateway sent nothing for
// GatewayTTL it has expired, so check expires it (unless a janitor did)
// and ends the session; when a newer session of the gateway, on any node,
// has superseded it, it ends the session. A backend error is not fatal
// here: heartbeats report those.
func (s *session) check(ctx context.Context) *streamerv1.Error {
	n := s.n
	cctx, cancel := context.WithTimeout(ctx, n.cfg.GatewayTTL/3)
	defer cancel()
	if clock.Since(n.cfg.Clock, s.heard) > n.cfg.GatewayTTL {
		if err := n.expireIfExpired(cctx, s.gateway); err != nil {
			s.log.Warn("expiring silent gateway (a janitor will)", "err", err)
		}
		return s.expiredError()
	}
	node, epoch, err := n.backend.Sessions.Current(cctx, s.gateway)
	if err != nil {
		return nil
	}
	return s.notCurrent(node, epoch)
}

// next waits for the first message; nil with a nil error means the session
// ended quietly (the gateway closed, or a kill was answered).
func (s *session) next(ctx context.Context) (*streamerv1.GatewayMessage, error) {
	select {
	case r := <-s.in:
		if r.err != nil {
			return nil, recvError(r.err)
		}
		return r.msg, nil
	case e := <-s.killCh:
		return nil, s.sendError(e)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// recvError maps a Recv error to the handler's result: a gateway closing
// its side ends the session without error.
func recvError(err error) error {
	if errors.Is(err, io.EOF) {
		return nil
	}
	return err
}

// handle answers one message after Register. fatal is a session-level error
// to send before closing; err is a failure of the stream itself.
func (s *session) handle(ctx context.Context, m *streamerv1.GatewayMessage) (fatal *streamerv1.Error, err error) {
	switch x := m.GetMsg().(type) {
	case *streamerv1.GatewayMessage_Register:
		return errorf(streamerv1.ErrorCode_ERROR_CODE_NOT_REGISTERED, "streamer: Register was sent twice on one stream"), nil
	case *streamerv1.GatewayMessage_Subscribe:
		res, fatal := s.subscribe(ctx, x.Subscribe)
		if fatal != nil {
			return fatal, nil
		}
		return nil, s.send(&streamerv1.StreamerMessage{Msg: &streamerv1.StreamerMessage_SubscribeResult{SubscribeResult: res}})
	case *streamerv1.GatewayMessage_Unsubscribe:
		res := s.unsubscribe(ctx, x.Unsubscribe)
		return nil, s.send(&streamerv1.StreamerMessage{Msg: &streamerv1.StreamerMessage_SubscribeResult{SubscribeResult: res}})
	case *streamerv1.GatewayMessage_Heartbeat:
		ack, fatal := s.heartbeat(ctx, x.Heartbeat)
		if fatal != nil {
			return fatal, nil
		}
		return nil, s.send(&streamerv1.StreamerMessage{Msg: &streamerv1.StreamerMessage_HeartbeatAck{HeartbeatAck: ack}})
	default:
		return errorf(streamerv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "streamer: gateway message has no content"), nil
	}
}

// send sends one message; only the owner calls it.
func (s *session) send(m *streamerv1.StreamerMessage) error {
	return s.stream.Send(m)
}

// sendError sends a session-level Error; the caller then ends the session.
// A failure to send is not reported: the session is ending anyway.
func (s *session) sendError(e *streamerv1.Error) error {
	if s.gateway != "" {
		s.log.Info("closing gateway session", "gateway", s.gateway, "code", e.GetCode().String(), "reason", e.GetMessage())
	}
	_ = s.send(&streamerv1.StreamerMessage{Msg: &streamerv1.StreamerMessage_Error{Error: e}})
	return nil
}

// sendOut sends what the pump handed over, recording delivery metrics.
func (s *session) sendOut(o outgoing) error {
	mt := s.n.metrics
	if o.batch == nil {
		if err := s.send(o.msg); err != nil {
			return err
		}
		if o.msg.GetResync() != nil {
			mt.resyncs.Inc()
		}
		return nil
	}
	if err := s.stream.SendMsg(deliveryFrame(o.cursor, o.batch)); err != nil {
		return err
	}
	now := time.Now()
	mt.deliveries.Inc()
	if ms, _, err := store.ParseID(o.cursor); err == nil {
		mt.outboxLag.Observe(max(now.Sub(time.UnixMilli(int64(ms))), 0).Seconds())
	}
	matches, _, _ := wire.ScanBatch(o.batch, func(ts int64) { // validated by the pump
		if ts > 0 {
			mt.latency.Observe(max(now.Sub(time.UnixMilli(ts)), 0).Seconds())
		}
	})
	mt.deliveredEvents.Add(float64(matches))
	return nil
}
