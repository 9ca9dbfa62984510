// Package redis implements the store contracts on Redis (>= 7.0) with
// go-redis, for a pool of streamer nodes that coordinate only through Redis.
// It works with a single server, Sentinel and Cluster alike: every key that a
// script or transaction touches together shares one hash tag (see Keys).
//
// Blocking reads (EventLog.Read, Outboxes.Read) block in Redis in short
// slices, so that a canceled context or Backend.Close ends them within one
// slice (blockSlice) even on a client the backend does not own; Close of a
// backend that created its own client ends them at once by closing it.
//
// It is not a cache or a general Redis wrapper: it stores and returns the
// bytes the contracts describe, nothing more.
package redis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	goredis "github.com/redis/go-redis/v9"

	"github.com/streamerd/streamer/internal/clock"
	"github.com/streamerd/streamer/store"
)

// DefaultPrefix starts every key unless Config.Prefix says otherwise.
const DefaultPrefix = "stm"

// blockSlice is the longest a single blocking command waits in Redis; a
// longer block is made of several. It bounds how long a canceled context or
// Close takes to end a blocked read. Blocking reads pipelined with writes
// (Router.RouteRead, Outboxes.Fetch) are bounded by the client's
// read_timeout (3 s by default) rather than by the block, so a read_timeout
// must stay well above blockSlice.
const blockSlice = 100 * time.Millisecond

// ErrPartitionMismatch is returned (wrapped) by New when Redis already
// records a partition count different from Config.Partitions.
var ErrPartitionMismatch = errors.New("redis: partition count differs from the one recorded in Redis")

// Config configures New. Zero values take the defaults noted.
type Config struct {
	// URL locates Redis when Client is nil:
	//   - redis://[user:pass@]host:port[/db][?opts] or rediss:// (TLS): one server;
	//   - unix:///path/to/redis.sock: one server on a unix socket;
	//   - the same with one or more addr=host:port parameters, or with
	//     cluster=true: Redis Cluster (the host and every addr are seeds);
	//   - the same with master_name=NAME: Sentinel, the host and every addr
	//     being sentinels.
	// Other query parameters are go-redis options (dial_timeout=3s,
	// max_retries=1, pool_size=64, …); context_timeout_enabled defaults to
	// true so that context deadlines bound every call. Size pool_size for the
	// blocking reads the node keeps open at once (each holds a connection
	// for up to 100 ms at a time) plus its other concurrent calls.
	URL string
	// Client is used instead of URL when set; the backend does not close it.
	Client goredis.UniversalClient
	// Prefix starts every key (DefaultPrefix). It must not contain '{' or
	// '}', which would break the hash tags.
	Prefix string
	// Partitions is the number of event log partitions
	// (store.DefaultPartitions). All nodes of a deployment must agree: New
	// records it in Redis and refuses to start with a different one.
	Partitions int
	// MaxLen is the approximate retention of each partition and of its
	// dead-letter stream, in entries (store.DefaultMaxLen).
	MaxLen int64
	// OutboxMaxLen is the exact cap of each gateway outbox, in entries
	// (store.DefaultOutboxMaxLen).
	OutboxMaxLen int64
	// OutboxMaxBytes caps the payload bytes each gateway outbox holds
	// (store.DefaultOutboxMaxBytes; negative: no byte cap): appending beyond
	// it deletes the oldest entries but the newest, like OutboxMaxLen.
	OutboxMaxBytes int64
	// Logger receives rare operational messages such as a recreated
	// consumer group (slog.Default()).
	Logger *slog.Logger
	// Clock computes the deadlines of the node and gateway registries and of
	// the subscription hashes (PEXPIREAT), which are this process's time, not
	// Redis's (nil: the system clock). Leases and locks expire on Redis's
	// clock (SET PX). Tests that pass a clock.Fake start it at the real time,
	// so that a hash's PEXPIREAT lands in the future.
	Clock clock.Clock
	// WaitReplicas, when positive, makes every write that acknowledges data
	// (event appends, outbox appends, checkpoints, subscriptions) wait with
	// WAIT until that many replicas of its master have it, so that a single
	// failover cannot lose it: a write that WaitTimeout does not see
	// replicated fails with ErrNotReplicated (and is retried by the node).
	// 0: no wait, the fastest; a failover can then lose the writes its
	// master had not yet replicated (see docs/ARCHITECTURE.md).
	WaitReplicas int
	// WaitTimeout bounds each WAIT (DefaultWaitTimeout). It must stay below
	// the client's read_timeout (3 s by default).
	WaitTimeout time.Duration
}

// New connects to Redis, checks or records the partition count, creates the
// consumer group of every partition (XGROUP CREATE … MKSTREAM, an existing
// group is kept) and returns a backend. Its Close closes the client if New
// created it from URL.
func New(ctx context.Context, cfg Config) (*store.Backend, error) {
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	if strings.ContainsAny(cfg.Prefix, "{}") {
		return nil, fmt.Errorf("redis: prefix %q must not contain '{' or '}': %w", cfg.Prefix, store.ErrInvalid)
	}
	if cfg.Partitions <= 0 {
		cfg.Partitions = store.DefaultPartitions
	}
	if cfg.MaxLen <= 0 {
		cfg.MaxLen = store.DefaultMaxLen
	}
	if cfg.OutboxMaxLen <= 0 {
		cfg.OutboxMaxLen = store.DefaultOutboxMaxLen
	}
	switch {
	case cfg.OutboxMaxBytes == 0:
		cfg.OutboxMaxBytes = store.DefaultOutboxMaxBytes
	case cfg.OutboxMaxBytes < 0:
		cfg.OutboxMaxBytes = 0 // the scripts' "no byte cap"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.WaitReplicas < 0 {
		return nil, fmt.Errorf("redis: WaitReplicas %d is negative: %w", cfg.WaitReplicas, store.ErrInvalid)
	}
	if cfg.WaitTimeout < 0 {
		return nil, fmt.Errorf("redis: WaitTimeout %v is negative: %w", cfg.WaitTimeout, store.ErrInvalid)
	}
	if cfg.WaitTimeout == 0 {
		cfg.WaitTimeout = DefaultWaitTimeout
	}
	client, owned := cfg.Client, false
	switch {
	case client != nil && cfg.URL != "":
		return nil, fmt.Errorf("redis: set Config.URL or Config.Client, not both: %w", store.ErrInvalid)
	case client == nil:
		var err error
		if client, err = NewClient(cfg.URL); err != nil {
			return nil, err
		}
		owned = true
	}
	c := &core{
		client:         client,
		owned:          owned,
		keys:           Keys{Prefix: cfg.Prefix},
		partitions:     cfg.Partitions,
		maxLen:         cfg.MaxLen,
		outboxMaxLen:   cfg.OutboxMaxLen,
		outboxMaxBytes: cfg.OutboxMaxBytes,
		log:            cfg.Logger,
		clock:          clock.Or(cfg.Clock),
		waitReplicas:   cfg.WaitReplicas,
		waitTimeout:    cfg.WaitTimeout,
	}
	for p := range cfg.Partitions {
		c.events = append(c.events, c.keys.Events(p))
		c.eventArgs = append(c.eventArgs, c.events[p])
	}
	_, c.raw = client.(*goredis.Client)
	if err := c.setup(ctx); err != nil {
		if owned {
			_ = client.Close()
		}
		return nil, err
	}
	log := &EventLog{c}
	outboxes := &Outboxes{c}
	var multi store.MultiRouter
	var multiFetch store.MultiFetcher
	cc, cluster := client.(*goredis.ClusterClient)
	c.oneNode = !cluster
	if cluster {
		cc.AddHook(topologyHook{cc})
	}
	if c.waitReplicas == 0 {
		c.verify = newVerifier(c)
		go c.verify.run()
	}
	if c.oneNode {
		multi, multiFetch = log, outboxes
	}
	return &store.Backend{
		Log:           log,
		Router:        log,
		Multi:         multi,
		MultiFetch:    multiFetch,
		Subscriptions: &Subscriptions{c},
		Outboxes:      outboxes,
		Leases:        &Leases{c},
		Nodes:         &Nodes{c},
		Sessions:      &Sessions{c},
		Checkpoints:   &Checkpoints{c},
		Locks:         &Locks{c},
		Close:         c.close,
	}, nil
}

// NewClient returns a go-redis client for a URL of the forms Config.URL
// describes.
func NewClient(rawURL string) (goredis.UniversalClient, error) {
	if rawURL == "" {
		return nil, fmt.Errorf("redis: Config.URL or Config.Client is required: %w", store.ErrInvalid)
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("redis: bad URL: %w", err)
	}
	q := u.Query()
	cluster := q.Has("addr")
	if v := q.Get("cluster"); v != "" {
		if cluster, err = strconv.ParseBool(v); err != nil {
			return nil, fmt.Errorf("redis: bad URL: cluster=%q: %w", v, err)
		}
		q.Del("cluster")
		u.RawQuery = q.Encode()
	}
	// Context deadlines bound every call (socket deadlines), unless the URL
	// says otherwise with context_timeout_enabled=false.
	ctxTimeouts := !q.Has("context_timeout_enabled")
	switch {
	case q.Has("master_name"):
		opt, err := goredis.ParseFailoverURL(u.String())
		if err != nil {
			return nil, fmt.Errorf("redis: bad Sentinel URL: %w", err)
		}
		opt.ContextTimeoutEnabled = opt.ContextTimeoutEnabled || ctxTimeouts
		if err := checkReadTimeout(opt.ReadTimeout); err != nil {
			return nil, err
		}
		return goredis.NewFailoverClient(opt), nil
	case cluster:
		opt, err := goredis.ParseClusterURL(u.String())
		if err != nil {
			return nil, fmt.Errorf("redis: bad Cluster URL: %w", err)
		}
		opt.ContextTimeoutEnabled = opt.ContextTimeoutEnabled || ctxTimeouts
		if err := checkReadTimeout(opt.ReadTimeout); err != nil {
			return nil, err
		}
		return goredis.NewClusterClient(opt), nil
	default:
		opt, err := goredis.ParseURL(u.String())
		if err != nil {
			return nil, fmt.Errorf("redis: bad URL: %w", err)
		}
		opt.ContextTimeoutEnabled = opt.ContextTimeoutEnabled || ctxTimeouts
		if err := checkReadTimeout(opt.ReadTimeout); err != nil {
			return nil, err
		}
		return goredis.NewClient(opt), nil
	}
}

// checkReadTimeout refuses a read_timeout that a pipelined blocking read
// (blockSlice) could exceed: go-redis would then fail, and may retry, a
// pipeline whose writes Redis already executed. 0 (the 3 s default) and
// negative values (no timeout) are fine.
func checkReadTimeout(d time.Duration) error {
	if d > 0 && d < 2*blockSlice {
		return fmt.Errorf("redis: read_timeout=%v is too short: blocking reads wait up to %v, use at least %v: %w", d, blockSlice, 2*blockSlice, store.ErrInvalid)
	}
	return nil
}

// core is shared by the pieces of one backend.
type core struct {
	client         goredis.UniversalClient
	owned          bool // created by New: Close closes it
	keys           Keys
	partitions     int
	maxLen         int64
	outboxMaxLen   int64
	outboxMaxBytes int64 // 0: none
	log            *slog.Logger
	clock          clock.Clock // the registries' and hashes' deadlines
	events         []string    // Keys.Events of every partition, built once
	eventArgs      []any       // the same, boxed once for command arguments

	// raw: the hot reads take raw replies (resp.go); false on Cluster.
	raw bool
	// oneNode: every key lives on one server (not Cluster), so one script
	// may touch many partitions.
	oneNode bool

	// waitReplicas and waitTimeout: Config.WaitReplicas and WaitTimeout.
	waitReplicas int
	waitTimeout  time.Duration
	// verify finds writes a failover lost, without waitReplicas (nil with).
	verify *verifier

	outboxKeysMu sync.Mutex
	outboxKeys   map[string]outboxKeys // gateway → outbox, outdel; see outbox

	closed    atomic.Bool
	closeOnce sync.Once
}

// maxCachedGateways bounds core.outboxKeys: past it the cache starts over.
const maxCachedGateways = 4096

// outbox returns gateway's outbox keys (outboxKeys), built
// once per gateway (every round of the read multiplexer and every Fetch
// needs them) from a bounded cache.
func (c *core) outbox(gateway string) outboxKeys {
	c.outboxKeysMu.Lock()
	defer c.outboxKeysMu.Unlock()
	if k, ok := c.outboxKeys[gateway]; ok {
		return k
	}
	if c.outboxKeys == nil || len(c.outboxKeys) >= maxCachedGateways {
		c.outboxKeys = make(map[string]outboxKeys)
	}
	k := outboxKeys{c.keys.Outbox(gateway), c.keys.OutboxDeleted(gateway), c.keys.OutboxMeta(gateway), c.keys.OutboxSizes(gateway)}
	c.outboxKeys[gateway] = k
	return k
}

// outboxKeys are one gateway's outbox keys, in the order the scripts take
// them (luaCapOutbox).
type outboxKeys [4]string

func (k outboxKeys) out() string    { return k[0] }
func (k outboxKeys) outdel() string { return k[1] }
func (k outboxKeys) meta() string   { return k[2] }

// setup checks the recorded partition count, creates the consumer groups and
// loads the scripts.
func (c *core) setup(ctx context.Context) error {
	meta := c.keys.Meta()
	if err := c.client.HSetNX(ctx, meta, "partitions", c.partitions).Err(); err != nil {
		return fmt.Errorf("redis: recording the partition count in %s: %w", meta, err)
	}
	recorded, err := c.client.HGet(ctx, meta, "partitions").Int()
	if err != nil {
		return fmt.Errorf("redis: reading the partition count from %s: %w", meta, err)
	}
	if recorded != c.partitions {
		return fmt.Errorf("%w: %s records %d partitions but this node is configured with %d; every node of a deployment must use %d (or start on an empty Redis)",
			ErrPartitionMismatch, meta, recorded, c.partitions, recorded)
	}

	pipe := c.client.Pipeline()
	groups := make([]*goredis.StatusCmd, c.partitions)
	for p := range groups {
		groups[p] = pipe.XGroupCreateMkStream(ctx, c.keys.Events(p), store.Group, "0")
	}
	_, _ = pipe.Exec(ctx) // errors are per command, below
	for p, cmd := range groups {
		if err := cmd.Err(); err != nil && !isBusyGroup(err) {
			return fmt.Errorf("redis: creating consumer group %s of %s: %w", store.Group, c.keys.Events(p), err)
		}
	}

	for _, s := range allScripts {
		if err := s.Load(ctx, c.client).Err(); err != nil {
			return fmt.Errorf("redis: loading scripts: %w", err)
		}
	}
	return nil
}

// close is Backend.Close.
func (c *core) close() error {
	var err error
	c.closeOnce.Do(func() {
		c.closed.Store(true)
		if c.verify != nil {
			c.verify.close()
		}
		if c.owned {
			err = c.client.Close()
		}
	})
	return err
}

// begin returns the error a call must fail with before doing anything:
// ErrClosed after Close, else the context's error, else nil.
func (c *core) begin(ctx context.Context) error {
	if c.closed.Load() {
		return store.ErrClosed
	}
	return ctx.Err()
}

// beginPartition is begin plus the partition range check.
func (c *core) beginPartition(ctx context.Context, p int) error {
	if err := c.begin(ctx); err != nil {
		return err
	}
	if p < 0 || p >= c.partitions {
		return fmt.Errorf("%w: %d not in [0, %d)", store.ErrBadPartition, p, c.partitions)
	}
	return nil
}

// fail wraps the error of a Redis call made by op: it becomes ErrClosed
// after Close and the context's error once ctx is done, since either is
// the real reason the call failed.
func (c *core) fail(ctx context.Context, op string, err error) error {
	switch {
	case c.closed.Load():
		return fmt.Errorf("redis: %s: %w", op, store.ErrClosed)
	case ctx.Err() != nil:
		return fmt.Errorf("redis: %s: %w", op, ctx.Err())
	default:
		return fmt.Errorf("redis: %s: %w", op, err)
	}
}

// poll runs a blocking read in slices of at most blockSlice until it returns
// entries or an error, block has passed, ctx is done or the backend closes.
// read gets the BLOCK duration of one call: whole milliseconds, or -1 for
// no BLOCK at all (when block <= 0).
func (c *core) poll(ctx context.Context, block time.Duration, read func(block time.Duration) ([]store.Entry, error)) ([]store.Entry, error) {
	if block <= 0 {
		return read(-1)
	}
	deadline := time.Now().Add(ceilMs(block))
	for {
		slice := min(ceilMs(time.Until(deadline)), blockSlice)
		if slice <= 0 {
			return nil, nil
		}
		entries, err := read(slice)
		if err != nil || len(entries) > 0 {
			return entries, err
		}
		if err := c.begin(ctx); err != nil {
			return nil, err
		}
	}
}

// multi runs the commands fn queues in one round trip: in MULTI/EXEC,
// except on Redis Cluster, where they may span slots and run as a plain
// pipeline (each command atomic on its own).
func (c *core) multi(ctx context.Context, fn func(goredis.Pipeliner)) error {
	queue := func(pipe goredis.Pipeliner) error { fn(pipe); return nil }
	var err error
	if _, cluster := c.client.(*goredis.ClusterClient); cluster {
		_, err = c.client.Pipelined(ctx, queue)
	} else {
		_, err = c.client.TxPipelined(ctx, queue)
	}
	return err
}

// ceilMs rounds d up to whole milliseconds, as Redis does with timeouts.
func ceilMs(d time.Duration) time.Duration {
	return (d + time.Millisecond - 1).Truncate(time.Millisecond)
}

// ttlMs converts a TTL to milliseconds, refusing one under 1 ms.
func ttlMs(ttl time.Duration) (int64, error) {
	if ttl < time.Millisecond {
		return 0, fmt.Errorf("%w: ttl %v is shorter than 1ms", store.ErrInvalid, ttl)
	}
	return ttl.Milliseconds(), nil
}

// deadlineMs is now+ttl on the backend's clock in Unix milliseconds, the
// score of the registries.
func (c *core) deadlineMs(ttl time.Duration) int64 {
	return c.clock.Now().Add(ttl).UnixMilli()
}

// normID validates a stream id and returns it in canonical form.
func normID(id string) (string, error) {
	ms, seq, err := store.ParseID(id)
	if err != nil {
		return "", err
	}
	return store.FormatID(ms, seq), nil
}

// required refuses an empty name.
func required(what, v string) error {
	if v == "" {
		return fmt.Errorf("%w: empty %s", store.ErrInvalid, what)
	}
	return nil
}

// entries converts stream messages, copying their payloads (field "p").
func entries(msgs []goredis.XMessage) []store.Entry {
	if len(msgs) == 0 {
		return nil
	}
	out := make([]store.Entry, 0, len(msgs))
	for _, m := range msgs {
		out = append(out, store.Entry{ID: m.ID, Payload: field(m.Values, "p")})
	}
	return out
}

// field returns a stream entry's field as bytes; empty (not nil) if absent.
// The bytes are the reply string's own, not a copy: strings are immutable
// and store.Entry.Payload must not be modified, so sharing is safe, and it
// saves copying every payload read.
func field(values map[string]any, name string) []byte {
	if s, ok := values[name].(string); ok && s != "" {
		return unsafe.Slice(unsafe.StringData(s), len(s))
	}
	return []byte{}
}

func isBusyGroup(err error) bool { return goredis.HasErrorPrefix(err, "BUSYGROUP") }

func isNoGroup(err error) bool { return goredis.HasErrorPrefix(err, "NOGROUP") }

func isNoScript(err error) bool {
	return errors.Is(err, goredis.ErrNoScript) || goredis.HasErrorPrefix(err, "NOSCRIPT")
}
