package store

import (
	"context"
	"time"
)

// Leases records which node owns each event log partition (Redis: string
// stm:{p:N}:lease holding the node id, SET NX PX ttl to acquire, renewal and
// release by a compare-and-set script).
//
// A lease is held by one node until it expires (ttl after its last Acquire
// or Renew) or is released. Partitions outside [0, EventLog.Partitions())
// are an error wrapping ErrBadPartition; an empty node or a ttl shorter than
// one millisecond is an error wrapping ErrInvalid.
//
// Every method returns ctx.Err() (possibly wrapped) when ctx is done before
// it completes, and an error wrapping ErrClosed after Backend.Close.
type Leases interface {
	// Acquire makes node the owner of partition p for ttl if the lease is
	// free or expired, and reports true; if node already owns it, it
	// refreshes the ttl and reports true; if another node owns it, it
	// changes nothing and reports false.
	Acquire(ctx context.Context, p int, node string, ttl time.Duration) (bool, error)

	// Renew sets the lease's expiry to now+ttl if node still owns it and
	// reports true; otherwise (expired, released, or owned by another node)
	// it changes nothing and reports false.
	Renew(ctx context.Context, p int, node string, ttl time.Duration) (bool, error)

	// Release frees the lease if node owns it; otherwise it is a no-op.
	Release(ctx context.Context, p int, node string) error

	// Owner returns the node owning partition p, or "" if the lease is free
	// or expired.
	Owner(ctx context.Context, p int) (string, error)
}
