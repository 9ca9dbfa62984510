package service

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/streamerd/streamer/internal/clock"
	"github.com/streamerd/streamer/match"
	"github.com/streamerd/streamer/store"
)

// Default settings, applied by New to zero (or negative) Config fields.
const (
	DefaultMaxDocumentBytes = match.DefaultMaxDocumentBytes
	DefaultGatewayTTL       = 30 * time.Second
	DefaultSoftDeleteField  = "deleted"
	DefaultReadBatch        = 256
	DefaultLeaseTTL         = 10 * time.Second
	DefaultShutdownTimeout  = 5 * time.Second
	DefaultDedupSize        = 1024
	DefaultProbeInterval    = time.Second

	// Limits that keep one gateway or tenant from hurting the others.
	DefaultMaxSubscriptionsPerGateway = 100_000
	DefaultMaxSubscriptionsPerTenant  = 1_000_000
	DefaultMaxNameBytes               = 256
	DefaultMaxDocumentDepth           = 64
	DefaultMaxFilters                 = 32
	DefaultSnapshotMaxDocuments       = 10_000
	DefaultSnapshotPageBytes          = 256 << 10
)

// Config tunes a Node. New fills zero values with the defaults documented on
// each field.
type Config struct {
	// NodeID names this node in leases, sessions and logs. Default: the host
	// name followed by a random suffix, unique per process.
	NodeID string
	// Partitions is the number of event-log partitions. Zero takes the
	// backend's count; a non-zero value that differs from the backend's is an
	// error (partitioning must agree across the deployment).
	Partitions int
	// AuthToken is the bearer token every gRPC call must carry (metadata
	// "authorization: Bearer <token>"). Empty disables authentication, which
	// is for development only and logged as a warning when Run starts.
	AuthToken string
	// MaxDocumentBytes is the largest document, and the largest pre-image,
	// Publish accepts, in bytes (default 1 MiB). Larger ones are rejected
	// with ERROR_CODE_TOO_LARGE.
	MaxDocumentBytes int
	// GatewayTTL is how long a gateway's subscriptions live without a
	// heartbeat (default 30s). Gateways heartbeat every GatewayTTL/5.
	GatewayTTL time.Duration
	// OutboxMaxLen is the per-gateway outbox cap the backend was built with
	// (default store.DefaultOutboxMaxLen). The node only reports it; the
	// backend enforces it.
	OutboxMaxLen int
	// OutboxMaxBytes is the per-gateway outbox byte cap the backend was
	// built with (default store.DefaultOutboxMaxBytes; -1: none), reported
	// like OutboxMaxLen.
	OutboxMaxBytes int64
	// MetricsToken, when set, is the bearer token /metrics requires (the
	// metrics name tenants, collections and gateways).
	MetricsToken string
	// Profiling serves Go's runtime profiles at /debug/pprof/ on the admin
	// handler, behind MetricsToken.
	Profiling bool
	// MaxSubscriptionsPerGateway bounds one gateway's subscriptions, pool
	// wide (default 100,000): a Subscribe beyond it is refused with
	// ERROR_CODE_TOO_MANY_SUBSCRIPTIONS. A gateway has one session at a
	// time, so this is also the per-session bound.
	MaxSubscriptionsPerGateway int
	// MaxSubscriptionsPerTenant bounds one tenant's subscriptions over all
	// gateways, pool-wide (default 1,000,000), likewise.
	MaxSubscriptionsPerTenant int
	// MaxNameBytes bounds tenant, collection, document, event, subscription
	// and gateway ids, in bytes (default 256).
	MaxNameBytes int
	// MaxDocumentDepth bounds the nesting of a published document's arrays
	// and objects (default 64).
	MaxDocumentDepth int
	// MaxFilters bounds the field filters of one subscription (default 32).
	MaxFilters int
	// SoftDeleteField is the top-level document field whose value true marks
	// a document as deleted (default "deleted"); see match.SoftDelete.
	SoftDeleteField string
	// ReadBatch is how many log entries a partition consumer reads at once
	// (default 256).
	ReadBatch int
	// Match configures the match engine (CEL limits and cache). Zero values
	// take the match package's defaults.
	Match match.Config
	// Logger receives the node's structured logs. Default: slog.Default().
	Logger *slog.Logger

	// LeaseTTL is the lifetime of partition leases; they are renewed every
	// LeaseTTL/3 (default 10s).
	LeaseTTL time.Duration
	// JanitorInterval is how often expired gateways are looked for (default
	// GatewayTTL/4, clamped to [50ms, 5s]).
	JanitorInterval time.Duration
	// ShutdownTimeout bounds each step of the graceful shutdown in Run:
	// closing sessions, and finishing in-flight partition batches (default
	// 5s).
	ShutdownTimeout time.Duration

	// DedupSize is how many recent event ids each partition consumer
	// remembers to drop producer replays: an event whose id was routed in
	// the last DedupSize events of its partition (on this node, since it
	// acquired the partition) is dropped and counted. Zero takes
	// DefaultDedupSize; a negative value turns deduplication off. It is a
	// best effort that saves work and duplicates downstream: the client
	// library deduplicates again.
	DedupSize int
	// ProbeInterval is how often the node probes the backend (which /readyz
	// reports) and refreshes its pool metrics (default 1s; pending entries,
	// consumer lag and outbox lengths are refreshed every 5 probes).
	ProbeInterval time.Duration
	// Collectors are extra Prometheus collectors, such as the backend
	// client's, registered in the node's registry next to its own metrics.
	// Their names must not clash with the node's (New fails otherwise).
	Collectors []prometheus.Collector
	// Documents is the node's snapshot source (Subscription.snapshot); nil:
	// snapshots are refused with ERROR_CODE_SNAPSHOT_UNAVAILABLE. When it
	// also implements store.DocumentWriter the partition consumers keep it
	// up to date with every event they apply (store/memory.Documents, the
	// embedded mode's).
	Documents store.Documents
	// SnapshotMaxDocuments caps one snapshot's documents (default 10,000);
	// SnapshotRequest.limit may ask for fewer.
	SnapshotMaxDocuments int
	// SnapshotPageBytes bounds one snapshot page's documents, in bytes
	// (default 256 KiB); a single larger document makes a page of its own.
	SnapshotPageBytes int
	// Syntrix, when set, serves Syntrix's streamer gRPC service
	// (syntrix.streamer.v1.StreamerService, syntrix.go) so that Syntrix's
	// gateways use the node unchanged. Nil: not served.
	Syntrix *SyntrixConfig
	// Clock drives everything time-driven in the node: lease renewal and
	// fences, gateway TTLs, session checks and the janitor, backend probes
	// and retry delays. Nil is the system clock; tests pass a clock.Fake
	// (with a backend on the same clock). Network deadlines and the
	// takeover grace stay on real time: they bound what Redis does.
	Clock clock.Clock
}

// SyntrixConfig configures the Syntrix streamer service.
type SyntrixConfig struct {
	// Tenants are the databases (tenants) its gateways may subscribe to;
	// "*" allows every one. Empty allows none.
	Tenants []string
	// StreamTTL is how long a stream may stay silent (Syntrix's gateways
	// heartbeat every 30 s) before the node ends it (default
	// DefaultSyntrixStreamTTL: three heartbeats).
	StreamTTL time.Duration
	// OwnListener: the service is served by NewSyntrixGRPCServer on a
	// listener of its own, not by NewGRPCServer.
	OwnListener bool
}

// DefaultSyntrixStreamTTL is SyntrixConfig.StreamTTL's default.
const DefaultSyntrixStreamTTL = 90 * time.Second

// withDefaults returns c with zero fields set; backendPartitions is the
// backend's partition count.
func (c Config) withDefaults(backendPartitions int) Config {
	if c.NodeID == "" {
		c.NodeID = defaultNodeID()
	}
	if c.Partitions <= 0 {
		c.Partitions = backendPartitions
	}
	if c.MaxDocumentBytes <= 0 {
		c.MaxDocumentBytes = DefaultMaxDocumentBytes
	}
	if c.GatewayTTL <= 0 {
		c.GatewayTTL = DefaultGatewayTTL
	}
	if c.OutboxMaxLen <= 0 {
		c.OutboxMaxLen = store.DefaultOutboxMaxLen
	}
	if c.OutboxMaxBytes == 0 {
		c.OutboxMaxBytes = store.DefaultOutboxMaxBytes
	}
	if c.SoftDeleteField == "" {
		c.SoftDeleteField = DefaultSoftDeleteField
	}
	if c.MaxSubscriptionsPerGateway <= 0 {
		c.MaxSubscriptionsPerGateway = DefaultMaxSubscriptionsPerGateway
	}
	if c.MaxSubscriptionsPerTenant <= 0 {
		c.MaxSubscriptionsPerTenant = DefaultMaxSubscriptionsPerTenant
	}
	if c.MaxNameBytes <= 0 {
		c.MaxNameBytes = DefaultMaxNameBytes
	}
	if c.MaxDocumentDepth <= 0 {
		c.MaxDocumentDepth = DefaultMaxDocumentDepth
	}
	if c.MaxFilters <= 0 {
		c.MaxFilters = DefaultMaxFilters
	}
	if c.Syntrix != nil && c.Syntrix.StreamTTL <= 0 {
		sc := *c.Syntrix
		sc.StreamTTL = DefaultSyntrixStreamTTL
		c.Syntrix = &sc
	}
	if c.SnapshotMaxDocuments <= 0 {
		c.SnapshotMaxDocuments = DefaultSnapshotMaxDocuments
	}
	if c.SnapshotPageBytes <= 0 {
		c.SnapshotPageBytes = DefaultSnapshotPageBytes
	}
	if c.ReadBatch <= 0 {
		c.ReadBatch = DefaultReadBatch
	}
	if c.Match.MaxDocumentBytes <= 0 {
		c.Match.MaxDocumentBytes = c.MaxDocumentBytes // the worst case of CEL costs
	}
	if c.Match.MaxCELBytes <= 0 {
		c.Match.MaxCELBytes = match.DefaultMaxCELBytes
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.LeaseTTL <= 0 {
		c.LeaseTTL = DefaultLeaseTTL
	}
	if c.JanitorInterval <= 0 {
		c.JanitorInterval = min(max(c.GatewayTTL/4, 50*time.Millisecond), 5*time.Second)
	}
	if c.ShutdownTimeout <= 0 {
		c.ShutdownTimeout = DefaultShutdownTimeout
	}
	if c.DedupSize == 0 {
		c.DedupSize = DefaultDedupSize
	}
	if c.ProbeInterval <= 0 {
		c.ProbeInterval = DefaultProbeInterval
	}
	c.Clock = clock.Or(c.Clock)
	return c
}

// defaultNodeID returns "<hostname>-<8 hex digits>".
func defaultNodeID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "node"
	}
	var b [4]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return host + "-" + hex.EncodeToString(b[:])
}

// outboxCaps describes the outbox caps for Resync reasons.
func (n *Node) outboxCaps() string {
	if n.cfg.OutboxMaxBytes < 0 {
		return fmt.Sprintf("outbox cap %d entries", n.cfg.OutboxMaxLen)
	}
	return fmt.Sprintf("outbox cap %d entries or %d bytes", n.cfg.OutboxMaxLen, n.cfg.OutboxMaxBytes)
}
