package redis

import (
	"context"
	"time"

	"github.com/streamerd/streamer/store"
)

// Locks is store.Locks on one string per lock, stm:{lock:NAME}, with the
// same compare-and-set scripts as Leases.
type Locks struct{ c *core }

var _ store.Locks = (*Locks)(nil)

// Acquire runs scriptLeaseAcquire.
func (l *Locks) Acquire(ctx context.Context, name, owner string, ttl time.Duration) (bool, error) {
	if err := l.begin(ctx, name); err != nil {
		return false, err
	}
	return l.c.casHold(ctx, "lock acquire", scriptLeaseAcquire, l.c.keys.Lock(name), "owner", owner, ttl)
}

// Renew runs scriptLeaseRenew.
func (l *Locks) Renew(ctx context.Context, name, owner string, ttl time.Duration) (bool, error) {
	if err := l.begin(ctx, name); err != nil {
		return false, err
	}
	return l.c.casHold(ctx, "lock renew", scriptLeaseRenew, l.c.keys.Lock(name), "owner", owner, ttl)
}

// Release runs scriptLeaseRelease.
func (l *Locks) Release(ctx context.Context, name, owner string) error {
	if err := l.begin(ctx, name); err != nil {
		return err
	}
	return l.c.casRelease(ctx, "lock release", l.c.keys.Lock(name), "owner", owner)
}

// Owner is GET.
func (l *Locks) Owner(ctx context.Context, name string) (string, error) {
	if err := l.begin(ctx, name); err != nil {
		return "", err
	}
	return l.c.holder(ctx, "lock owner", l.c.keys.Lock(name))
}

func (l *Locks) begin(ctx context.Context, name string) error {
	if err := l.c.begin(ctx); err != nil {
		return err
	}
	return required("lock name", name)
}
