package client

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	streamerv1 "github.com/streamerd/streamer/proto/streamer/v1"
)

// Conn is one gateway session with the streamer nodes behind an address. It
// survives reconnects: after any stream failure it registers again (to any
// node) with the cursor of the newest delivery it handed to the caller, so
// nothing still in the gateway's outbox is lost, and re-subscribes every live
// subscription. All methods are safe for concurrent use.
type Conn struct {
	cfg  *config
	addr string
	cc   *grpc.ClientConn // owned by run (replaced after a silent link), closed by Close
	api  streamerv1.StreamerClient
	log  *slog.Logger

	ctx        context.Context // cancelled by Close
	cancel     context.CancelFunc
	done       chan struct{} // closed when run has returned, after deliveries
	ready      chan struct{} // closed when the first session is registered
	connected  atomic.Bool   // a session is registered (Ready)
	deliveries chan Delivery // bounded by WithDeliveryBuffer
	reqs       chan *request // Subscribe/Unsubscribe to the run goroutine

	closeOnce sync.Once
	closeErr  error

	mu      sync.Mutex
	err     error // why the Conn ended; set before deliveries is closed
	lastErr error // the latest session error, for Dial's message and Ready

	stats struct {
		deliveries, events, duplicates, resyncs, reconnects, heartbeats, received atomic.Uint64
	}

	// Owned by the run goroutine.
	subs   map[string]liveSub // live subscriptions by id
	subSeq uint64             // last liveSub.seq given
	cursor string             // newest outbox position handed to the caller
	dedup  *dedup
	queue  []*request // accepted Subscribe/Unsubscribe requests not yet answered, in order
}

// request is one Subscribe (sub set) or Unsubscribe (sub nil) of a caller.
type request struct {
	id     string
	sub    *streamerv1.Subscription
	wire   []byte     // sub marshalled without its snapshot request, kept once the node accepts it (what re-subscribes send)
	result chan error // capacity 1: the run goroutine never blocks on it
	sent   bool       // sent on some session
	resent bool       // sent on an earlier session, so possibly applied already
}

// Dial opens a gateway session with the node(s) at addr and returns once the
// first session is registered. Until then it retries failed attempts with
// backoff until ctx is done; ctx bounds only this wait, not the Conn's life.
// A permanent failure (ErrUnauthenticated, ErrPermissionDenied,
// ErrUnsupported) is returned at once. addr is a gRPC target ("host:port",
// "dns:///name:port", "unix:///path"), or any string a WithDialer dialer
// understands.
func Dial(ctx context.Context, addr string, opts ...Option) (*Conn, error) {
	cfg, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	cc, err := cfg.grpcConn(addr)
	if err != nil {
		return nil, err
	}
	c := &Conn{
		cfg:        cfg,
		addr:       addr,
		cc:         cc,
		api:        streamerv1.NewStreamerClient(cc),
		log:        cfg.logger.With("gateway", cfg.gatewayID, "addr", addr),
		done:       make(chan struct{}),
		ready:      make(chan struct{}),
		deliveries: make(chan Delivery, cfg.buffer),
		reqs:       make(chan *request),
		dedup:      newDedup(cfg.dedupSize),
		subs:       map[string]liveSub{},
	}
	// The Conn owns this context: Close cancels it and waits for run.
	c.ctx, c.cancel = context.WithCancel(context.Background())
	go c.run()
	select {
	case <-c.ready:
		return c, nil
	case <-c.done:
		err := c.Err()
		_ = c.Close()
		return nil, fmt.Errorf("client: dial %s: %w", addr, err)
	case <-ctx.Done():
		c.mu.Lock()
		last := c.lastErr
		c.mu.Unlock()
		_ = c.Close()
		if last != nil {
			return nil, fmt.Errorf("client: dial %s: %w (last error: %v)", addr, ctx.Err(), last)
		}
		return nil, fmt.Errorf("client: dial %s: %w", addr, ctx.Err())
	}
}

// Ready returns nil while the Conn has a registered session with a node,
// and otherwise why not: the permanent failure or ErrClosed once it ended,
// else ErrNotConnected with the last session's error while it reconnects.
// A gateway reports it as its readiness.
func (c *Conn) Ready() error {
	if err := c.Err(); err != nil {
		return err
	}
	if c.connected.Load() {
		return nil
	}
	c.mu.Lock()
	last := c.lastErr
	c.mu.Unlock()
	if last != nil {
		return fmt.Errorf("%w: %v", ErrNotConnected, last)
	}
	return ErrNotConnected
}

// GatewayID returns the gateway id the Conn registers with.
func (c *Conn) GatewayID() string { return c.cfg.gatewayID }

// Deliveries returns the channel of matched events, Resync notices and
// dropped subscriptions, in the order the node sent them (outbox order; for
// one tenant/collection that is the source's commit order). The same channel
// is returned on every call.
//
//   - Events already delivered (same event id among the WithDedupSize most
//     recent) are not delivered again, including after reconnects.
//   - A Delivery with Resync set means events may have been lost: the caller
//     must refetch the state of everything it serves. Subscriptions stay
//     active. Without a Resync, no event still in the node's outbox is
//     skipped across reconnects.
//   - After a reconnect, every live subscription is re-subscribed before
//     deliveries of the new session are handed out (holding back at most
//     max(WithDeliveryBuffer, 64) of them; beyond that they flow before the
//     re-subscribe finishes).
//   - The channel holds WithDeliveryBuffer items. When it is full the Conn
//     stops reading the stream (past a few messages and what gRPC's
//     flow-control window holds), which pushes back to the node's delivery
//     pump and then the gateway's outbox; heartbeats continue, so the
//     subscriptions stay alive. An outbox that overflows meanwhile yields a
//     Resync once the caller reads again. A Delivery counts as handed to the
//     caller (and is acknowledged to the node) once it is in the channel.
//   - Subscribe and Unsubscribe wait for the node's answer, which follows
//     earlier deliveries on the stream: do not call them from the only
//     goroutine that reads this channel while it may be full.
//   - The channel is closed only when the Conn is closed or fails
//     permanently; Err then says which. Items still buffered can be read
//     after it is closed.
func (c *Conn) Deliveries() <-chan Delivery { return c.deliveries }

// Err returns nil while the Conn is open, ErrClosed after Close, or the
// permanent failure that ended it (errors.Is(err, ErrUnauthenticated), …)
// once Deliveries is closed for that reason.
func (c *Conn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Stats returns the Conn's counters.
func (c *Conn) Stats() Stats {
	return Stats{
		Deliveries: c.stats.deliveries.Load(),
		Events:     c.stats.events.Load(),
		Duplicates: c.stats.duplicates.Load(),
		Resyncs:    c.stats.resyncs.Load(),
		Reconnects: c.stats.reconnects.Load(),
		Heartbeats: c.stats.heartbeats.Load(),
		Received:   c.stats.received.Load(),
	}
}

// Subscribe adds s, or replaces the active subscription with the same id,
// and waits until the node has acknowledged it: every event appended after
// Subscribe returns nil is matched against s. A refusal is a
// *SubscribeError (errors.As) carrying the node's code and message; the Conn
// stays usable. The subscription is kept across reconnects until
// Unsubscribe. While the Conn is disconnected the request waits for the
// next session. If ctx ends after the request was sent, Subscribe returns
// ctx's error but the subscription may still become active (it then counts
// as live); Unsubscribe to be sure. After Close it returns ErrClosed.
func (c *Conn) Subscribe(ctx context.Context, s Subscription) error {
	p, err := s.proto()
	if err != nil {
		return err
	}
	wire, err := proto.Marshal(p)
	if err != nil {
		return fmt.Errorf("client: subscription %q: %w", s.ID, err)
	}
	live := wire
	if snap := p.Snapshot; snap != nil {
		// Re-subscribes after a reconnect ask for no snapshot: the caller
		// asked for one, once.
		p.Snapshot = nil
		live, err = proto.Marshal(p)
		p.Snapshot = snap
		if err != nil {
			return fmt.Errorf("client: subscription %q: %w", s.ID, err)
		}
	}
	return c.do(ctx, &request{id: s.ID, sub: p, wire: live, result: make(chan error, 1)})
}

// Unsubscribe removes the subscription id and waits until the node has
// acknowledged it: no event appended after it returns nil is matched against
// it. An id the node does not know is a *SubscribeError with
// ERROR_CODE_UNKNOWN_SUBSCRIPTION, unless the Conn had it live (then it had
// expired on the node, and nil is returned).
func (c *Conn) Unsubscribe(ctx context.Context, id string) error {
	if id == "" {
		return &SubscribeError{Code: streamerv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, Message: "subscription id is required"}
	}
	return c.do(ctx, &request{id: id, result: make(chan error, 1)})
}

func (c *Conn) do(ctx context.Context, r *request) error {
	select {
	case c.reqs <- r:
	case <-ctx.Done():
		return ctx.Err()
	case <-c.done:
		return c.Err()
	}
	select {
	case err := <-r.result:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-c.done:
		select {
		case err := <-r.result:
			return err
		default:
			return c.Err()
		}
	}
}

// Close ends the session: it cancels the stream, waits for every goroutine
// of the Conn to return, closes Deliveries (if a permanent failure has not
// already) and the underlying connection. Subscriptions are not removed from
// the node; they expire with the gateway's TTL. Close is idempotent.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		c.cancel()
		<-c.done
		if err := c.cc.Close(); err != nil {
			c.closeErr = fmt.Errorf("client: close: %w", err)
		}
	})
	return c.closeErr
}

// finish records why the Conn ended and closes Deliveries. Run only by run.
func (c *Conn) finish(err error) {
	c.mu.Lock()
	if c.err == nil {
		c.err = err
	}
	c.mu.Unlock()
	close(c.deliveries)
}

func (c *Conn) setLastErr(err error) {
	c.mu.Lock()
	c.lastErr = err
	c.mu.Unlock()
}

// liveSub is a subscription the node acknowledged; seq orders them by
// first subscription. It is kept in wire form, needed again only to
// subscribe anew after a reconnect: one block of bytes the garbage
// collector does not scan, instead of a message tree of a few objects per
// subscription (for a gateway holding 10,000 subscriptions, ~40,000 objects
// fewer to mark in every collection).
type liveSub struct {
	seq  uint64
	wire []byte
}

// upsertSub records the subscription id, in wire form, as live, keeping
// the position of an older subscription with the same id.
func (c *Conn) upsertSub(id string, wire []byte) {
	if old, ok := c.subs[id]; ok {
		old.wire = wire
		c.subs[id] = old
		return
	}
	c.subSeq++
	c.subs[id] = liveSub{seq: c.subSeq, wire: wire}
}

// removeSub forgets the live subscription id and reports whether it was live.
func (c *Conn) removeSub(id string) bool {
	_, ok := c.subs[id]
	delete(c.subs, id)
	return ok
}

// liveSubs returns the live subscriptions in subscription order.
func (c *Conn) liveSubs() []*streamerv1.Subscription {
	live := slices.SortedFunc(maps.Values(c.subs), func(a, b liveSub) int { return cmp.Compare(a.seq, b.seq) })
	out := make([]*streamerv1.Subscription, len(live))
	for i, l := range live {
		out[i] = new(streamerv1.Subscription)
		// proto.Marshal's output of a message of this type: it parses.
		_ = proto.Unmarshal(l.wire, out[i])
	}
	return out
}
