package redis

import (
	"context"
	"errors"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/streamerd/streamer/store"
)

// Leases is store.Leases on one string per partition, stm:{p:N}:lease,
// holding the owner's node id with a PX ttl; acquisition, renewal and
// release are compare-and-set scripts.
type Leases struct{ c *core }

var _ store.Leases = (*Leases)(nil)

// Acquire runs scriptLeaseAcquire.
func (l *Leases) Acquire(ctx context.Context, p int, node string, ttl time.Duration) (bool, error) {
	if err := l.c.beginPartition(ctx, p); err != nil {
		return false, err
	}
	return l.c.casHold(ctx, "lease acquire", scriptLeaseAcquire, l.c.keys.Lease(p), "node", node, ttl)
}

// Renew runs scriptLeaseRenew.
func (l *Leases) Renew(ctx context.Context, p int, node string, ttl time.Duration) (bool, error) {
	if err := l.c.beginPartition(ctx, p); err != nil {
		return false, err
	}
	return l.c.casHold(ctx, "lease renew", scriptLeaseRenew, l.c.keys.Lease(p), "node", node, ttl)
}

// Release runs scriptLeaseRelease.
func (l *Leases) Release(ctx context.Context, p int, node string) error {
	if err := l.c.beginPartition(ctx, p); err != nil {
		return err
	}
	return l.c.casRelease(ctx, "lease release", l.c.keys.Lease(p), "node", node)
}

// Owner is GET.
func (l *Leases) Owner(ctx context.Context, p int) (string, error) {
	if err := l.c.beginPartition(ctx, p); err != nil {
		return "", err
	}
	return l.c.holder(ctx, "lease owner", l.c.keys.Lease(p))
}

// casHold runs an acquire or renew script on key for holder (named what in
// errors) with ttl, and reports whether holder holds key afterwards.
func (c *core) casHold(ctx context.Context, op string, script *goredis.Script, key, what, holder string, ttl time.Duration) (bool, error) {
	if err := required(what, holder); err != nil {
		return false, err
	}
	ms, err := ttlMs(ttl)
	if err != nil {
		return false, err
	}
	n, err := script.Run(ctx, c.client, []string{key}, holder, ms).Int64()
	if err != nil {
		return false, c.fail(ctx, op, err)
	}
	return n == 1, nil
}

// casRelease deletes key if holder holds it.
func (c *core) casRelease(ctx context.Context, op, key, what, holder string) error {
	if err := required(what, holder); err != nil {
		return err
	}
	if err := scriptLeaseRelease.Run(ctx, c.client, []string{key}, holder).Err(); err != nil {
		return c.fail(ctx, op, err)
	}
	return nil
}

// holder returns the value of key, "" when it does not exist (expired).
func (c *core) holder(ctx context.Context, op, key string) (string, error) {
	v, err := c.client.Get(ctx, key).Result()
	if errors.Is(err, goredis.Nil) {
		return "", nil
	}
	if err != nil {
		return "", c.fail(ctx, op, err)
	}
	return v, nil
}
