package client

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"google.golang.org/grpc"
	grpcbackoff "google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/streamerd/streamer/internal/clock"
)

// Defaults of the options.
const (
	// DefaultDedupSize is how many recent event ids a Conn remembers to drop
	// duplicates.
	DefaultDedupSize = 10_000
	// DefaultDeliveryBuffer is the capacity of the Deliveries channel, in
	// Delivery values (each a batch of matches).
	DefaultDeliveryBuffer = 1024
	// DefaultBackoffMin and DefaultBackoffMax bound the reconnect delay.
	DefaultBackoffMin = 100 * time.Millisecond
	DefaultBackoffMax = 10 * time.Second
	// DefaultHeartbeatInterval is used when the node's Registered message
	// carries no TTL; otherwise the default is TTL/5.
	DefaultHeartbeatInterval = 10 * time.Second
	// MaxRecvMsgSize is the largest message a Conn or Publisher accepts from
	// a node (a Delivery batch can carry many documents).
	MaxRecvMsgSize = 64 << 20
)

// registerTimeout bounds the wait for Registered after sending Register.
const registerTimeout = 15 * time.Second

// Option configures Dial or NewPublisher. Options return an error for a bad
// value, which Dial and NewPublisher return unchanged (wrapped).
type Option func(*config) error

type config struct {
	token     string
	gatewayID string
	creds     credentials.TransportCredentials
	dialer    func(context.Context, string) (net.Conn, error)
	backoff   backoff
	heartbeat time.Duration // 0: ttl/5 from Registered
	dedupSize int
	buffer    int
	logger    *slog.Logger
	clock     clock.Clock // heartbeats, the silence watchdog, reconnect backoff
}

func newConfig(opts []Option) (*config, error) {
	cfg := &config{
		gatewayID: randomID("gw-"),
		backoff:   backoff{min: DefaultBackoffMin, max: DefaultBackoffMax},
		dedupSize: DefaultDedupSize,
		buffer:    DefaultDeliveryBuffer,
		logger:    slog.Default(),
		clock:     clock.Real,
	}
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o(cfg); err != nil {
			return nil, err
		}
	}
	return cfg, nil
}

// WithToken sends token as gRPC metadata `authorization: Bearer <token>` on
// every call. It is sent even over plaintext connections (loopback and
// in-process by default): use TLS credentials anywhere else. Empty is an
// error; leave the option out for a node without authentication.
func WithToken(token string) Option {
	return func(c *config) error {
		if token == "" {
			return errors.New("client: WithToken: empty token")
		}
		if strings.ContainsAny(token, "\r\n") {
			return errors.New("client: WithToken: token contains a line break")
		}
		c.token = token
		return nil
	}
}

// WithGatewayID sets the gateway id the Conn registers with (default: a
// random "gw-…" id, new for every Dial). A gateway id has at most one live
// session: when a second Conn registers with the same id, the first one ends
// with ErrSuperseded (it does not fight back). A
// gateway that restarts with the same id gets its subscriptions back only
// if it re-subscribes them; it does not resume its outbox (the cursor lived
// in the old process).
func WithGatewayID(id string) Option {
	return func(c *config) error {
		if id == "" {
			return errors.New("client: WithGatewayID: empty id")
		}
		c.gatewayID = id
		return nil
	}
}

// WithTransportCredentials sets the connection security (TLS, mTLS, or
// insecure.NewCredentials()). Default: plaintext for loopback addresses
// (localhost, 127.0.0.0/8, ::1, a bare ":port") and for custom dialers,
// TLS with the system roots for every other address.
func WithTransportCredentials(creds credentials.TransportCredentials) Option {
	return func(c *config) error {
		if creds == nil {
			return errors.New("client: WithTransportCredentials: nil credentials")
		}
		c.creds = creds
		return nil
	}
}

// WithDialer makes the connection with dial instead of TCP; dial receives
// the address given to Dial unchanged. The default credentials are then
// plaintext. InProcess.Option uses it.
func WithDialer(dial func(ctx context.Context, addr string) (net.Conn, error)) Option {
	return func(c *config) error {
		if dial == nil {
			return errors.New("client: WithDialer: nil dialer")
		}
		c.dialer = dial
		return nil
	}
}

// WithBackoff bounds the reconnect delay: attempt n waits a uniformly random
// time in [0, min(max, min·2ⁿ)) (exponential backoff, full jitter); the
// attempt count restarts after a session that stayed registered for a
// second. Defaults: DefaultBackoffMin, DefaultBackoffMax. It requires
// 0 < min <= max.
func WithBackoff(min, max time.Duration) Option {
	return func(c *config) error {
		if min <= 0 || max < min {
			return fmt.Errorf("client: WithBackoff(%v, %v): want 0 < min <= max", min, max)
		}
		c.backoff = backoff{min: min, max: max}
		return nil
	}
}

// WithHeartbeatInterval sets how often the Conn heartbeats (default: the
// node's TTL/5 from Registered, or DefaultHeartbeatInterval when the node
// sends no TTL). A node silent for two intervals, or half its TTL if that
// is shorter, is considered gone and the Conn reconnects, well before the
// gateway's subscriptions would expire. It must be positive.
func WithHeartbeatInterval(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("client: WithHeartbeatInterval(%v): must be positive", d)
		}
		c.heartbeat = d
		return nil
	}
}

// WithDedupSize sets how many recent event ids are remembered to drop
// duplicates (default DefaultDedupSize). An event replayed after more than n
// newer events is delivered again. It must be at least 1.
func WithDedupSize(n int) Option {
	return func(c *config) error {
		if n < 1 {
			return fmt.Errorf("client: WithDedupSize(%d): must be at least 1", n)
		}
		c.dedupSize = n
		return nil
	}
}

// WithDeliveryBuffer sets the capacity of the Deliveries channel (default
// DefaultDeliveryBuffer; 0 = unbuffered). It must not be negative.
func WithDeliveryBuffer(n int) Option {
	return func(c *config) error {
		if n < 0 {
			return fmt.Errorf("client: WithDeliveryBuffer(%d): must not be negative", n)
		}
		c.buffer = n
		return nil
	}
}

// WithLogger sets the logger for connection events (registered,
// reconnecting, resync). Default: slog.Default().
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error {
		if l == nil {
			return errors.New("client: WithLogger: nil logger")
		}
		c.logger = l
		return nil
	}
}

// grpcConn creates the (lazily connecting) gRPC client connection for addr.
func (c *config) grpcConn(addr string) (*grpc.ClientConn, error) {
	if addr == "" {
		return nil, errors.New("client: empty address")
	}
	creds := c.creds
	target := addr
	var opts []grpc.DialOption
	if c.dialer != nil {
		opts = append(opts, grpc.WithContextDialer(c.dialer))
		if !strings.Contains(addr, "://") {
			target = "passthrough:///" + addr // hand addr to the dialer as is
		}
	}
	if creds == nil {
		if c.dialer != nil || isLocal(addr) {
			creds = insecure.NewCredentials()
		} else {
			creds = credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS12})
		}
	}
	opts = append(opts,
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxRecvMsgSize)),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: grpcbackoff.Config{
				BaseDelay: c.backoff.min, Multiplier: 1.6, Jitter: 0.2, MaxDelay: c.backoff.max,
			},
			MinConnectTimeout: 5 * time.Second,
		}),
	)
	if c.token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(bearer(c.token)))
	}
	cc, err := grpc.NewClient(target, opts...)
	if err != nil {
		return nil, fmt.Errorf("client: %s: %w", addr, err)
	}
	return cc, nil
}

// isLocal reports whether addr names this machine: a loopback host, a bare
// ":port", or a unix socket.
func isLocal(addr string) bool {
	if strings.HasPrefix(addr, "unix:") {
		return true
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "" || strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// bearer is the per-call credential `authorization: Bearer <token>`.
type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

// RequireTransportSecurity is false so that tokens work over loopback and
// in-process plaintext connections; WithToken documents the risk.
func (bearer) RequireTransportSecurity() bool { return false }

// randomID returns prefix followed by 16 random hex digits.
func randomID(prefix string) string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return prefix + hex.EncodeToString(b[:])
}

// withClock runs the Conn's heartbeats, silence watchdog and reconnect
// backoff on c (tests pass a clock.Fake; see export_test.go).
func withClock(c clock.Clock) Option {
	return func(cfg *config) error {
		cfg.clock = clock.Or(c)
		return nil
	}
}
