package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/streamerd/streamer/client"
	"github.com/streamerd/streamer/internal/clock"
	"github.com/streamerd/streamer/match"
)

// Upstream is the gateway's one session with the streamer nodes, shared by
// all its users. *client.Conn implements it; see its documentation for the
// semantics of each method.
type Upstream interface {
	Subscribe(ctx context.Context, s client.Subscription) error
	Unsubscribe(ctx context.Context, id string) error
	Deliveries() <-chan client.Delivery
	Err() error
	Ready() error
}

var _ Upstream = (*client.Conn)(nil)

// Defaults of Config, applied by New to zero fields.
const (
	DefaultSendQueue         = 16384
	DefaultSendQueueBytes    = 4 << 20
	DefaultMaxSubscriptions  = 100
	DefaultResumeBufferBytes = 16 << 20
	DefaultSSEResumeWindow   = 30 * time.Second
	DefaultWriteTimeout      = 10 * time.Second
	DefaultKeepAlive         = 25 * time.Second
	DefaultSubscribeTimeout  = 10 * time.Second
	DefaultMaxMessageBytes   = 64 << 10
)

// Config configures a Gateway. Upstream and Auth are required; New fills the
// other zero fields with the defaults documented on each.
type Config struct {
	// Upstream is the session with the streamer nodes, usually a
	// *client.Conn from client.Dial. The gateway reads its Deliveries (in
	// Run) and subscribes on it; the caller closes it after Run returns.
	Upstream Upstream
	// MetricsToken, when set, is the bearer token /metrics requires.
	MetricsToken string
	// Profiling serves Go's runtime profiles at /debug/pprof/ on the admin
	// handler, behind MetricsToken.
	Profiling bool
	// Auth authenticates every connection and decides its tenant: a
	// NewJWTAuth, or NoAuth for development.
	Auth Authenticator
	// Logger receives the gateway's logs (default slog.Default()).
	Logger *slog.Logger
	// SendQueueBytes bounds the bytes of messages queued unread for one
	// connection (default DefaultSendQueueBytes); SendQueue bounds their
	// number (default DefaultSendQueue). A connection over either is
	// closed as a slow consumer, so they must hold the largest burst a
	// healthy client has to absorb: bytes tell a client genuinely behind
	// from a burst of small messages. Queue memory is allocated as used.
	SendQueueBytes int
	SendQueue      int
	// MaxSubscriptions bounds the subscriptions of one WebSocket connection
	// (default DefaultMaxSubscriptions).
	MaxSubscriptions int
	// ResumeBufferBytes bounds the memory of the resume buffer (default
	// DefaultResumeBufferBytes).
	ResumeBufferBytes int
	// SSEResumeWindow is how long the upstream subscriptions of an ended
	// SSE stream or a lost WebSocket connection are kept so that a
	// reconnect with Last-Event-ID or "after" misses nothing (default
	// DefaultSSEResumeWindow; negative: not kept).
	SSEResumeWindow time.Duration
	// WriteTimeout bounds each write to a client (default
	// DefaultWriteTimeout); a client that does not take a message in time is
	// disconnected.
	WriteTimeout time.Duration
	// KeepAlive is the interval of WebSocket pings and SSE comments that
	// keep idle connections open through proxies (default DefaultKeepAlive).
	// A WebSocket client that does not answer a ping within KeepAlive is
	// disconnected.
	KeepAlive time.Duration
	// Clock drives the identity expiry of connections, the keep-alives and
	// the SSE resume window (nil: the system clock; tests pass a
	// clock.Fake). Write deadlines stay on real time.
	Clock clock.Clock
	// SubscribeTimeout bounds the wait for the node's answer to an upstream
	// Subscribe or Unsubscribe (default DefaultSubscribeTimeout).
	SubscribeTimeout time.Duration
	// MaxMessageBytes bounds a WebSocket message from a client (default
	// DefaultMaxMessageBytes).
	MaxMessageBytes int64
	// SyntrixHeartbeat is how often connections of Syntrix's protocol get
	// a heartbeat message (WebSocket) or comment (SSE) (default
	// DefaultSyntrixHeartbeat).
	SyntrixHeartbeat time.Duration
	// OriginPatterns lists the origins (host patterns, see
	// websocket.AcceptOptions) allowed to open WebSockets besides the
	// gateway's own host.
	OriginPatterns []string
	// Compression offers WebSocket clients permessage-deflate (RFC 7692,
	// without context takeover: each message compressed on its own, no
	// window kept per connection). Off by default: on loopback and fast
	// links it costs more CPU than it saves (docs/PERFORMANCE.md).
	Compression bool
	// Match limits criteria checked by the gateway before subscribing
	// upstream (the node checks them again with its own limits). Zero
	// values take the match package's defaults.
	Match match.Config
}

func (c Config) withDefaults() Config {
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.SendQueue <= 0 {
		c.SendQueue = DefaultSendQueue
	}
	if c.SendQueueBytes <= 0 {
		c.SendQueueBytes = DefaultSendQueueBytes
	}
	if c.MaxSubscriptions <= 0 {
		c.MaxSubscriptions = DefaultMaxSubscriptions
	}
	if c.ResumeBufferBytes <= 0 {
		c.ResumeBufferBytes = DefaultResumeBufferBytes
	}
	if c.SSEResumeWindow == 0 {
		c.SSEResumeWindow = DefaultSSEResumeWindow
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.KeepAlive <= 0 {
		c.KeepAlive = DefaultKeepAlive
	}
	c.Clock = clock.Or(c.Clock)
	if c.SubscribeTimeout <= 0 {
		c.SubscribeTimeout = DefaultSubscribeTimeout
	}
	if c.SyntrixHeartbeat <= 0 {
		c.SyntrixHeartbeat = DefaultSyntrixHeartbeat
	}
	if c.MaxMessageBytes <= 0 {
		c.MaxMessageBytes = DefaultMaxMessageBytes
	}
	return c
}

// Gateway serves end users' WebSocket and SSE connections from one
// upstream session. Create it with New, serve Handler (and AdminHandler),
// and call Run, which delivers events until its context ends and then
// closes every connection.
type Gateway struct {
	cfg     Config
	log     *slog.Logger
	engine  *match.Engine
	hub     *hub
	metrics *metrics

	// ctx bounds upstream calls and SSE holds; Run cancels it when the
	// shutdown begins.
	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.Mutex
	closing bool           // refuse new connections
	conns   sync.WaitGroup // connection handlers, including SSE holds

	running atomic.Bool

	connections  [2]atomic.Int64  // open, by transport (ws, sse)
	sent, slow   [2]atomic.Uint64 // by transport
	authFailures atomic.Uint64
}

// New returns a Gateway; it does not start anything.
func New(cfg Config) (*Gateway, error) {
	if cfg.Upstream == nil {
		return nil, errors.New("gateway: Config.Upstream is required")
	}
	if cfg.Auth == nil {
		return nil, errors.New("gateway: Config.Auth is required (NoAuth for development)")
	}
	cfg = cfg.withDefaults()
	engine, err := match.NewEngine(cfg.Match)
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	g := &Gateway{cfg: cfg, log: cfg.Logger, engine: engine}
	// The gateway owns this context: Run cancels it when it shuts down.
	g.ctx, g.cancel = context.WithCancel(context.Background())
	g.hub = newHub(g.ctx, cfg.Upstream, cfg.SubscribeTimeout, cfg.ResumeBufferBytes, g.log)
	g.metrics = newMetrics(g)
	return g, nil
}

// Run delivers the upstream's events to the connections until ctx ends or
// the upstream fails for good, then closes every connection (WebSocket
// close 1001 "gateway shutting down", or 1011 when the upstream failed),
// waits for their handlers and returns. It returns nil when ctx ended, the
// upstream's error otherwise. Run may be called once.
func (g *Gateway) Run(ctx context.Context) error {
	if !g.running.CompareAndSwap(false, true) {
		return errors.New("gateway: Run called twice")
	}
	deliveries := g.cfg.Upstream.Deliveries()
	var err error
loop:
	for {
		select {
		case d, ok := <-deliveries:
			if !ok {
				err = fmt.Errorf("gateway: upstream session ended: %w", g.cfg.Upstream.Err())
				break loop
			}
			g.hub.deliver(d)
		case <-ctx.Done():
			break loop
		}
	}
	reason, detail := endShutdown, "gateway shutting down"
	if err != nil {
		reason, detail = endUpstream, "gateway lost its upstream"
		g.log.Error("upstream session ended; closing every connection", "err", err)
	}
	g.mu.Lock()
	g.closing = true
	g.mu.Unlock()
	g.hub.endAll(reason, detail)
	g.cancel() // interrupts upstream calls in flight and SSE holds
	g.conns.Wait()
	g.hub.async.Wait() // resnapshots end with the gateway's context
	return err
}

// start makes a new connection's session and registers it (begin), or
// answers 503 and returns nil when the gateway is shutting down; syntrix
// marks a session of Syntrix's protocol. A session returned is paired with
// finish.
func (g *Gateway) start(w http.ResponseWriter, r *http.Request, transport string, id Identity, syntrix bool) *session {
	s := newSession(transport, id, g.cfg.SendQueue, g.cfg.SendQueueBytes, &g.slow[transportIndex(transport)])
	s.syntrix = syntrix
	if !g.begin(s) {
		writeHTTPError(w, http.StatusServiceUnavailable, errorf("", CodeUnavailable, "the gateway is shutting down"))
		return nil
	}
	g.opened(s, r)
	return s
}

// begin registers a new connection's session, or reports false when the
// gateway is shutting down. Every begin is paired with finish.
func (g *Gateway) begin(s *session) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closing {
		return false
	}
	g.conns.Add(1)
	g.hub.addSession(s)
	g.connections[transportIndex(s.transport)].Add(1)
	return true
}

// finish is called when a connection's handler is about to return.
func (g *Gateway) finish() { g.conns.Done() }

func transportIndex(t string) int {
	if t == transportSSE {
		return 1
	}
	return 0
}

// Handler returns the public HTTP handler: /v1/ws, /v1/sse, Syntrix's
// /realtime/ws, /realtime/sse and /realtime/v1/databases/{db}/sse
// (syntrix.go), and the demo page at /.
func (g *Gateway) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/ws", g.serveWS)
	mux.HandleFunc("GET /v1/sse", g.serveSSE)
	mux.HandleFunc("GET /realtime/ws", g.serveSyntrixWS)
	mux.HandleFunc("GET /realtime/sse", g.serveSyntrixSSE)
	mux.HandleFunc("GET /realtime/v1/databases/{db}/sse", g.serveSyntrixSSE)
	mux.HandleFunc("GET /{$}", serveDemo)
	return mux
}

// Stats are a snapshot of a Gateway's counters and gauges.
type Stats struct {
	// Connections open now, by transport.
	WSConnections, SSEConnections int
	// ClientSubscriptions attached now; UpstreamSubscriptions they share
	// (including ones being subscribed and ones held for SSE resume).
	ClientSubscriptions, UpstreamSubscriptions int
	// MessagesSent to clients, all transports.
	MessagesSent uint64
	// SlowDisconnects is the number of connections closed because their
	// send queue was full.
	SlowDisconnects uint64
	// Events is the number of matches received from upstream.
	Events uint64
	// Resyncs is the number of upstream resync notices.
	Resyncs uint64
	// AuthFailures is the number of requests refused with 401.
	AuthFailures uint64
}

// Stats returns the gateway's current counters.
func (g *Gateway) Stats() Stats {
	h := g.hub.stats()
	return Stats{
		WSConnections:         int(g.connections[0].Load()),
		SSEConnections:        int(g.connections[1].Load()),
		ClientSubscriptions:   h.clientSubs,
		UpstreamSubscriptions: h.upstreamSubs,
		MessagesSent:          g.sent[0].Load() + g.sent[1].Load(),
		SlowDisconnects:       g.slow[0].Load() + g.slow[1].Load(),
		Events:                g.hub.events.Load(),
		Resyncs:               g.hub.resyncs.Load(),
		AuthFailures:          g.authFailures.Load(),
	}
}
