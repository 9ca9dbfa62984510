package store

import (
	"context"
	"time"
)

// Nodes is the registry of live streamer nodes (Redis: zset stm:nodes scored
// by heartbeat deadline). Nodes use it to compute their fair share of
// partitions.
//
// An empty node name or a ttl shorter than one millisecond is an error
// wrapping ErrInvalid. Every method returns ctx.Err() (possibly wrapped) when
// ctx is done before it completes, and an error wrapping ErrClosed after
// Backend.Close.
type Nodes interface {
	// Heartbeat registers node, or refreshes it, with deadline now+ttl (which
	// may be earlier than its previous deadline).
	Heartbeat(ctx context.Context, node string, ttl time.Duration) error

	// Live returns the nodes whose deadline is after now, sorted; empty when
	// none. Implementations may drop expired nodes as a side effect.
	Live(ctx context.Context) ([]string, error)

	// Remove unregisters node at once (clean shutdown). Removing an unknown
	// node is a no-op.
	Remove(ctx context.Context, node string) error
}
