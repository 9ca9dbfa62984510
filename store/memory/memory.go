// Package memory implements the store contracts in process memory, for the
// embedded single-process mode and for tests of code built on store.
//
// It mimics the Redis backend's observable behaviour: the same "<ms>-<seq>"
// ids, trimming of the oldest entries at the configured lengths, consumer
// group pending lists. TTLs (leases, locks, nodes, gateways) are measured on
// Config.Clock; entry ids and pending idle times on the system clock, as
// Redis measures them on its own. Nothing
// is persisted: closing the backend or ending the process loses everything.
// Every piece is safe for concurrent use; blocking reads wake on append, on
// context cancellation and on Close, never by polling.
package memory

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/streamerd/streamer/internal/clock"
	"github.com/streamerd/streamer/store"
)

// Config sizes a memory backend. Zero or negative fields take the defaults
// from the store package.
type Config struct {
	// Partitions is the number of event log partitions (store.DefaultPartitions).
	Partitions int
	// MaxLen is the number of entries each partition, and each partition's
	// dead-letter stream, keeps; older ones are deleted (store.DefaultMaxLen).
	// Trimming is exact here, a valid case of the contract's approximation.
	MaxLen int64
	// OutboxMaxLen is the number of entries each gateway outbox keeps; older
	// ones are deleted and reported by Lost (store.DefaultOutboxMaxLen).
	OutboxMaxLen int64
	// OutboxMaxBytes caps the payload bytes each gateway outbox holds; the
	// oldest entries but the newest are deleted beyond it and reported by
	// Lost (store.DefaultOutboxMaxBytes; negative: no byte cap).
	OutboxMaxBytes int64
	// Clock measures TTLs: leases, locks, node and gateway deadlines. Nil is
	// the system clock; tests pass a clock.Fake shared with the node.
	Clock clock.Clock
}

func (c Config) withDefaults() Config {
	if c.Partitions <= 0 {
		c.Partitions = store.DefaultPartitions
	}
	if c.MaxLen <= 0 {
		c.MaxLen = store.DefaultMaxLen
	}
	if c.OutboxMaxLen <= 0 {
		c.OutboxMaxLen = store.DefaultOutboxMaxLen
	}
	switch {
	case c.OutboxMaxBytes == 0:
		c.OutboxMaxBytes = store.DefaultOutboxMaxBytes
	case c.OutboxMaxBytes < 0:
		c.OutboxMaxBytes = 0 // no byte cap
	}
	return c
}

// New returns a backend whose pieces all live in this process. Its Close
// wakes blocked reads with store.ErrClosed and makes every later call fail
// with it.
func New(cfg Config) *store.Backend {
	cfg = cfg.withDefaults()
	life := &lifecycle{done: make(chan struct{}), clock: clock.Or(cfg.Clock)}
	outboxes := newOutboxes(life, cfg.OutboxMaxLen, cfg.OutboxMaxBytes)
	log := newEventLog(life, cfg.Partitions, cfg.MaxLen)
	log.outboxes = outboxes
	sessions := newSessions(life)
	return &store.Backend{
		Log:           log,
		Router:        log,
		Subscriptions: newSubscriptions(life, sessions, cfg.Partitions),
		Outboxes:      outboxes,
		Leases:        newLeases(life, cfg.Partitions),
		Nodes:         newNodes(life),
		Sessions:      sessions,
		Checkpoints:   newCheckpoints(life),
		Locks:         newLocks(life),
		Close:         life.close,
	}
}

// lifecycle is shared by the pieces of one backend: done is closed by Close;
// clock measures TTLs.
type lifecycle struct {
	once    sync.Once
	done    chan struct{}
	clock   clock.Clock
	blocked atomic.Int64 // reads registered as waiting, in wait
}

// BlockedReads returns how many reads of b, a memory backend, are blocked
// waiting for entries now (0 for another backend). Tests use it to act
// once a read blocks.
func BlockedReads(b *store.Backend) int {
	if l, ok := b.Log.(*EventLog); ok {
		return int(l.life.blocked.Load())
	}
	return 0
}

func (l *lifecycle) close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

// check returns the error a call must fail with before doing anything:
// ErrClosed after Close, else the context's error, else nil.
func (l *lifecycle) check(ctx context.Context) error {
	select {
	case <-l.done:
		return store.ErrClosed
	default:
		return ctx.Err()
	}
}

// wait blocks until wake is closed (woken true), or until timeout passes,
// ctx is done or the backend closes (woken false, with the error to return;
// nil on timeout).
func (l *lifecycle) wait(ctx context.Context, wake <-chan struct{}, timeout *time.Timer) (woken bool, err error) {
	l.blocked.Add(1)
	defer l.blocked.Add(-1)
	select {
	case <-wake:
		return true, nil
	case <-timeout.C:
		return false, nil
	case <-ctx.Done():
		return false, ctx.Err()
	case <-l.done:
		return false, store.ErrClosed
	}
}

// checkTTL returns an ErrInvalid error for a TTL under one millisecond, the
// Redis resolution.
func checkTTL(ttl time.Duration) error {
	if ttl < time.Millisecond {
		return fmt.Errorf("memory: ttl %v is shorter than 1ms: %w", ttl, store.ErrInvalid)
	}
	return nil
}

// needName returns an ErrInvalid error naming what when name is empty.
func needName(what, name string) error {
	if name == "" {
		return fmt.Errorf("memory: empty %s: %w", what, store.ErrInvalid)
	}
	return nil
}

// clone copies b; nil and empty both become a non-nil empty slice, as
// payloads read back from Redis.
func clone(b []byte) []byte {
	return append([]byte{}, b...)
}
