package client

import (
	"fmt"

	streamerv1 "github.com/streamerd/streamer/proto/streamer/v1"
)

// This file holds the session's handling of Subscribe and Unsubscribe: the
// requests of the caller and the re-subscribes after a reconnect, sent in
// order with a bounded number awaiting an answer, and matched with the
// node's SubscribeResults (which come in request order).

// pending is one SubscribeResult the session waits for.
type pending struct {
	id          string
	unsubscribe bool
	resub       bool     // a re-subscribe after reconnect (no caller waits)
	req         *request // the caller's request otherwise
}

// result matches a SubscribeResult with the oldest pending request.
func (s *session) result(r *streamerv1.SubscribeResult) error {
	c := s.c
	if len(s.inflight) == 0 {
		return fmt.Errorf("%w: SubscribeResult for %q without a request", ErrProtocol, r.GetSubscriptionId())
	}
	p := s.inflight[0]
	if p.id != r.GetSubscriptionId() || p.unsubscribe != r.GetUnsubscribed() {
		return fmt.Errorf("%w: SubscribeResult for %q (unsubscribed=%v), expected %q (unsubscribed=%v)",
			ErrProtocol, r.GetSubscriptionId(), r.GetUnsubscribed(), p.id, p.unsubscribe)
	}
	s.inflight[0] = pending{}
	s.inflight = s.inflight[1:]
	if err := s.sendQueued(); err != nil {
		return err
	}
	e := r.GetError()

	if p.resub {
		s.resubs--
		if e != nil {
			if transientCode(e.GetCode()) {
				return fmt.Errorf("client: re-subscribe %q: %w", p.id, &NodeError{Code: e.GetCode(), Message: e.GetMessage()})
			}
			c.removeSub(p.id)
			se := &SubscribeError{SubscriptionID: p.id, Code: e.GetCode(), Message: e.GetMessage()}
			c.log.Error("client: subscription refused on re-subscribe, dropped", "err", se)
			if s.holding {
				s.held = append(s.held, held{dropped: se})
			} else if err := s.emit(Delivery{Dropped: se}); err != nil {
				return err
			}
		}
		if s.holding && s.resubs == 0 {
			return s.release()
		}
		return nil
	}

	req := p.req
	if len(c.queue) == 0 || c.queue[0] != req {
		return fmt.Errorf("%w: request queue out of order", ErrProtocol) // a bug in this package
	}
	c.queue[0] = nil
	c.queue = c.queue[1:]
	var err error
	if e != nil {
		err = &SubscribeError{SubscriptionID: p.id, Code: e.GetCode(), Message: e.GetMessage()}
	}
	switch {
	case req.sub != nil && e == nil:
		c.upsertSub(req.id, req.wire)
	case req.sub == nil && e == nil:
		c.removeSub(p.id)
	case req.sub == nil && e.GetCode() == streamerv1.ErrorCode_ERROR_CODE_UNKNOWN_SUBSCRIPTION:
		// Not active on the node: expired, or removed by an earlier attempt
		// of this very request whose answer was lost.
		if c.removeSub(p.id) || req.resent {
			err = nil
		}
	}
	req.result <- err
	return nil
}

// accept takes a caller's request: it stays in the Conn's queue until
// answered, and is sent after the requests before it, when fewer than
// maxInflight are awaiting an answer. If the stream fails first, the next
// session sends it.
func (s *session) accept(r *request) {
	s.c.queue = append(s.c.queue, r)
	s.reqQ = append(s.reqQ, r)
	if s.fatal == nil {
		s.fatal = s.sendQueued()
	}
}

// sendQueued sends queued re-subscribes, then queued caller requests, while
// fewer than maxInflight are awaiting an answer.
func (s *session) sendQueued() error {
	for len(s.inflight) < maxInflight && !s.broken {
		switch {
		case len(s.resubQ) > 0:
			sub := s.resubQ[0]
			s.resubQ = s.resubQ[1:]
			s.inflight = append(s.inflight, pending{id: sub.GetSubscriptionId(), resub: true})
			if err := s.send(subscribeMsg(sub)); err != nil {
				return err
			}
		case len(s.reqQ) > 0:
			r := s.reqQ[0]
			s.reqQ = s.reqQ[1:]
			if err := s.sendRequest(r); err != nil {
				return err
			}
		default:
			return nil
		}
	}
	return nil
}

func (s *session) sendRequest(r *request) error {
	r.sent = true
	s.inflight = append(s.inflight, pending{id: r.id, unsubscribe: r.sub == nil, req: r})
	if r.sub == nil {
		return s.send(&streamerv1.GatewayMessage{Msg: &streamerv1.GatewayMessage_Unsubscribe{
			Unsubscribe: &streamerv1.Unsubscribe{SubscriptionId: r.id},
		}})
	}
	return s.send(subscribeMsg(r.sub))
}

func subscribeMsg(sub *streamerv1.Subscription) *streamerv1.GatewayMessage {
	return &streamerv1.GatewayMessage{Msg: &streamerv1.GatewayMessage_Subscribe{
		Subscribe: &streamerv1.Subscribe{Subscription: sub},
	}}
}
