package store

import (
	"context"
	"time"
)

// Locks are named leases for singletons that live outside the partitioned log, such
// as the Puller's leader (Redis: string stm:lock:{NAME} holding the owner, SET NX PX
// to acquire, renewal and release by a compare-and-set script).
//
// A lock is held by one owner until it expires (ttl after its last Acquire or Renew)
// or is released. An empty name or owner, or a ttl shorter than one millisecond, is an
// error wrapping ErrInvalid.
//
// Every method returns ctx.Err() (possibly wrapped) when ctx is done before it
// completes, and an error wrapping ErrClosed after Backend.Close.
type Locks interface {
	// Acquire makes owner the holder of lock name for ttl if it is free or expired,
	// and reports true; if owner already holds it, it refreshes the ttl and reports
	// true; if another owner holds it, it changes nothing and reports false.
	Acquire(ctx context.Context, name, owner string, ttl time.Duration) (bool, error)

	// Renew sets the lock's expiry to now+ttl if owner still holds it and reports
	// true; otherwise it changes nothing and reports false.
	Renew(ctx context.Context, name, owner string, ttl time.Duration) (bool, error)

	// Release frees the lock if owner holds it; otherwise it is a no-op.
	Release(ctx context.Context, name, owner string) error

	// Owner returns the holder of lock name, or "" if it is free or expired.
	Owner(ctx context.Context, name string) (string, error)
}
