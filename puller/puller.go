package puller

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/streamerd/streamer/internal/clock"
	"github.com/streamerd/streamer/store"
)

// Defaults that New applies to zero (or negative) Config fields.
const (
	DefaultName     = "default"
	DefaultBatch    = 500
	DefaultMaxDelay = 100 * time.Millisecond
	DefaultMaxAwait = time.Second
	DefaultLeaseTTL = 10 * time.Second
	DefaultRetryMin = 100 * time.Millisecond
	DefaultRetryMax = 10 * time.Second
)

// Config tunes a Puller. New fills zero values with the defaults documented
// on each field.
type Config struct {
	// Name identifies the puller's stream in the backend: its checkpoint is
	// CheckpointName(Name) and its leader lease LockName(Name). Pullers of
	// one name are replicas of each other (one leads, the others stand by);
	// pullers of different names are independent. Default "default".
	Name string
	// Owner names this process in the leader lease and logs. Default: the
	// host name followed by a random suffix, unique per process.
	Owner string
	// Watcher opens the change streams (NewMongoWatcher). Required.
	Watcher Watcher
	// Mapping says where tenant, collection and document id come from.
	Mapping Mapping
	// PreImages asks MongoDB for pre-images (fullDocumentBeforeChange:
	// whenAvailable), published as ChangeEvent.before.
	PreImages bool
	// StartFromNow allows starting from the current time when the saved
	// resume token cannot be used (ChangeStreamHistoryLost and friends, see
	// HistoryLostError); the changes in between are then never published,
	// which is logged at error level. Without it such a start fails with a
	// *HistoryLostError. A puller without any saved token always starts from
	// the current time.
	StartFromNow bool
	// Batch is the most events appended in one go (default 500): the events
	// read are appended, one Append per partition, when Batch of them are
	// waiting, when the server batch they came in is used up, or when the
	// oldest has waited MaxDelay; the checkpoint is saved right after.
	Batch int
	// MaxDelay bounds how long a read event waits to be appended (default
	// 100ms).
	MaxDelay time.Duration
	// MaxAwait is how long the server holds an empty getMore open (default
	// 1s): the idle polling interval of the change stream.
	MaxAwait time.Duration
	// LeaseTTL is the lifetime of the leader lease (default 10s). The leader
	// renews it every LeaseTTL/3 and stops reading as soon as a renewal
	// fails; a standby tries to acquire it every LeaseTTL/3, so a crashed
	// leader is replaced within about LeaseTTL.
	LeaseTTL time.Duration
	// Clock drives the lease renewals, the standby's acquisition attempts,
	// the retry backoff and the MaxDelay batching window (nil: the system
	// clock). Tests pass a clock.Fake.
	Clock clock.Clock
	// RetryMin and RetryMax bound the exponential backoff (with full jitter)
	// between retries of a failed change stream, append or store call
	// (defaults 100ms and 10s).
	RetryMin, RetryMax time.Duration
	// Logger receives the puller's structured logs. Default: slog.Default().
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.Name == "" {
		c.Name = DefaultName
	}
	if c.Owner == "" {
		c.Owner = defaultOwner()
	}
	if c.Batch <= 0 {
		c.Batch = DefaultBatch
	}
	if c.MaxDelay <= 0 {
		c.MaxDelay = DefaultMaxDelay
	}
	if c.MaxAwait <= 0 {
		c.MaxAwait = DefaultMaxAwait
	}
	if c.LeaseTTL <= 0 {
		c.LeaseTTL = DefaultLeaseTTL
	}
	c.Clock = clock.Or(c.Clock)
	if c.RetryMin <= 0 {
		c.RetryMin = DefaultRetryMin
	}
	if c.RetryMax <= 0 {
		c.RetryMax = DefaultRetryMax
	}
	c.RetryMax = max(c.RetryMax, c.RetryMin)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

func defaultOwner() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "puller"
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	return host + "-" + hex.EncodeToString(b[:])
}

// CheckpointName is the store.Checkpoints name under which the puller called
// name saves its resume token (the raw BSON token document).
func CheckpointName(name string) string { return "puller:" + name + ":token" }

// LockName is the store.Locks name of the leader lease of the puller called
// name.
func LockName(name string) string { return "puller:" + name }

// errLostLease is the cause that ends a leadership term whose lease renewal
// failed.
var errLostLease = errors.New("puller: lost the leader lease")

// Puller tails a change stream into an event log. Create it with New and
// start it with Run.
type Puller struct {
	cfg     Config
	backend *store.Backend
	mapper  *Mapper
	log     *slog.Logger
	metrics *metrics
	started atomic.Bool

	mu     sync.Mutex
	role   string // "idle", "standby", "leader" or "stopped"
	health error  // why the leader is not making progress, or nil
}

// New returns a Puller that appends to backend.Log and keeps its checkpoint
// in backend.Checkpoints and its lease in backend.Locks. The backend stays
// the caller's: Run never closes it.
func New(cfg Config, backend *store.Backend) (*Puller, error) {
	if cfg.Watcher == nil {
		return nil, errors.New("puller: Config.Watcher is required")
	}
	if backend == nil || backend.Log == nil || backend.Checkpoints == nil || backend.Locks == nil {
		return nil, errors.New("puller: the backend needs Log, Checkpoints and Locks")
	}
	cfg = cfg.withDefaults()
	p := &Puller{
		cfg:     cfg,
		backend: backend,
		mapper:  NewMapper(cfg.Mapping),
		log:     cfg.Logger.With("component", "puller", "puller", cfg.Name, "owner", cfg.Owner),
		role:    "idle",
	}
	p.metrics = newMetrics(p)
	return p, nil
}

// Owner returns the name this puller uses in the leader lease.
func (p *Puller) Owner() string { return p.cfg.Owner }

// Run competes for the leader lease and, while it holds it, reads the change
// stream into the event log; while another puller leads it stands by. It
// blocks until ctx is done, then stops reading (the events read but not yet
// appended are dropped: the next leader reads them again from the
// checkpoint), releases the lease and returns nil.
//
// Run returns an error, after releasing the lease, when reading cannot go
// on: an *EndError (invalidate, drop, dropDatabase, rename), a
// *HistoryLostError, or a change stream error retrying cannot fix
// (authentication, not a replica set). Other failures are retried with
// backoff: change stream errors reopen the stream from the checkpoint, a
// failed Append is retried (for the partitions that failed only) and never
// advances the checkpoint, a failed checkpoint save is retried at the next
// batch. A leader whose lease renewal fails stops reading at once and
// becomes a standby. Run may be called only once.
func (p *Puller) Run(ctx context.Context) error {
	if !p.started.CompareAndSwap(false, true) {
		return errors.New("puller: Run called twice")
	}
	defer p.setRole("stopped")
	for {
		p.setRole("standby")
		if err := p.acquire(ctx); err != nil {
			return nil // ctx done
		}
		err := p.lead(ctx)
		p.release(ctx)
		switch {
		case ctx.Err() != nil:
			p.log.Info("stopped")
			return nil
		case errors.Is(err, errLostLease):
			p.log.Warn("standing by after losing the leader lease", "err", err)
			continue
		}
		return err
	}
}

func (p *Puller) setRole(role string) {
	p.mu.Lock()
	p.role = role
	p.health = nil
	p.mu.Unlock()
	if role == "leader" {
		p.metrics.leader.Set(1)
	} else {
		p.metrics.leader.Set(0)
	}
}

// setHealth records why the leader is not making progress (nil: it is).
func (p *Puller) setHealth(err error) {
	p.mu.Lock()
	p.health = err
	p.mu.Unlock()
}

// Status returns the puller's role ("idle" before Run, "standby", "leader",
// "stopped" after Run) and, for a leader, why it is not making progress
// (nil when it is).
func (p *Puller) Status() (role string, problem error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.role, p.health
}

// acquire waits until this puller holds the leader lease; it returns
// ctx.Err() when ctx is done first.
func (p *Puller) acquire(ctx context.Context) error {
	name, ttl := LockName(p.cfg.Name), p.cfg.LeaseTTL
	lastLeader := "\x00"
	for {
		ok, err := p.backend.Locks.Acquire(ctx, name, p.cfg.Owner, ttl)
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err != nil:
			p.metrics.errors.WithLabelValues("lease").Inc()
			p.log.Warn("cannot reach the leader lease; retrying", "err", err)
		case ok:
			return nil
		default:
			if leader, err := p.backend.Locks.Owner(ctx, name); err == nil && leader != lastLeader {
				p.log.Info("standing by: another puller leads", "leader", leader)
				lastLeader = leader
			}
		}
		if err := p.sleep(ctx, ttl/3); err != nil {
			return err
		}
	}
}

// release frees the lease if this puller still holds it.
func (p *Puller) release(ctx context.Context) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.cfg.LeaseTTL/3)
	defer cancel()
	if err := p.backend.Locks.Release(rctx, LockName(p.cfg.Name), p.cfg.Owner); err != nil {
		p.log.Warn("could not release the leader lease; it expires by itself", "err", err, "ttl", p.cfg.LeaseTTL)
	}
}

// lead runs one leadership term: it reads until ctx is done, reading fails
// for good, or the lease is lost (then it returns an error wrapping
// errLostLease).
func (p *Puller) lead(ctx context.Context) error {
	p.setRole("leader")
	p.log.Info("leading: reading the change stream")
	lctx, cancel := context.WithCancelCause(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { p.keepLease(lctx, cancel) })
	err := p.pull(lctx)
	cancel(nil)
	wg.Wait()
	if ctx.Err() != nil {
		return nil
	}
	if cause := context.Cause(lctx); errors.Is(cause, errLostLease) {
		return cause
	}
	return err
}

// keepLease renews the lease LeaseTTL/3 after the previous renewal ended,
// until ctx is done. When a renewal fails or finds the lease taken it
// cancels ctx with errLostLease, which stops the reader at once.
func (p *Puller) keepLease(ctx context.Context, cancel context.CancelCauseFunc) {
	name, ttl := LockName(p.cfg.Name), p.cfg.LeaseTTL
	t := p.cfg.Clock.NewTimer(ttl / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		}
		rctx, rcancel := context.WithTimeout(ctx, ttl/3)
		ok, err := p.backend.Locks.Renew(rctx, name, p.cfg.Owner, ttl)
		rcancel()
		if ctx.Err() != nil {
			return
		}
		if err == nil && ok {
			t.Reset(ttl / 3)
			continue
		}
		if err == nil {
			err = errors.New("another puller holds it")
		}
		p.metrics.errors.WithLabelValues("lease").Inc()
		p.log.Error("leader lease renewal failed: stopping reading at once", "err", err)
		cancel(fmt.Errorf("%w: %v", errLostLease, err))
		return
	}
}

// sleep waits d on the puller's clock or until ctx is done, and returns
// ctx.Err() in that case.
func (p *Puller) sleep(ctx context.Context, d time.Duration) error {
	if !clock.Sleep(ctx, p.cfg.Clock, d) {
		return ctx.Err()
	}
	return nil
}
