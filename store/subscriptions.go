package store

import (
	"context"
	"time"
)

// Subscriptions holds, per gateway, a set of encoded subscriptions keyed by
// subscription id, and the gateway's heartbeat deadline (Redis: hash
// stm:{gw:G}:subs with PEXPIRE, and zset stm:gateways scored by deadline).
//
// A gateway is registered by Put or Touch and stays registered until Forget.
// It is live while its deadline (now+ttl at its last Put or Touch) is in the
// future. Once the deadline has passed its subscriptions are gone, as if the
// hash had expired: List returns an empty map, Get and Delete find nothing,
// and a later Put or Touch starts an empty set. The gateway stays listed by
// Expired until Forget, so the janitor can announce the expiry before
// forgetting it.
//
// TTLs shorter than one millisecond are an error wrapping ErrInvalid; an
// empty gateway name is an error wrapping ErrInvalid. Data is opaque: nil and
// empty are stored alike and read back as empty, and reads return copies.
//
// Every method returns ctx.Err() (possibly wrapped) when ctx is done before
// it completes, and an error wrapping ErrClosed after Backend.Close.
type Subscriptions interface {
	// Put upserts subscription sub.ID of gateway with sub.Data, as one of
	// the gateway's subscriptions in event-log partition sub.Partition
	// (where its events are: ListPartition) and one of sub.Tenant's
	// (TenantCount), and sets the gateway's deadline to now+ttl (which also
	// keeps all its other subscriptions). The partition is in [0,
	// partitions).
	Put(ctx context.Context, gateway string, sub StoredSubscription, ttl time.Duration) error

	// TenantCount returns how many subscriptions of tenant the registered
	// gateways hold, pool-wide: those Put and neither deleted nor forgotten
	// (a gateway's expired subscriptions count until Forget). On Redis it is
	// a counter kept next to the subscriptions, not in the same transaction
	// on Cluster: a node that dies between the two may leave it off by the
	// subscriptions of that call.
	TenantCount(ctx context.Context, tenant string) (int, error)

	// Delete removes subscription id of gateway and reports whether it
	// existed. It does not change the deadline.
	Delete(ctx context.Context, gateway, id string) (existed bool, err error)

	// Get returns subscription id of gateway; found is false when the
	// subscription, or the gateway, does not exist or has expired.
	Get(ctx context.Context, gateway, id string) (data []byte, found bool, err error)

	// List returns all subscriptions of gateway by id: an empty, non-nil map
	// for an unknown or expired gateway.
	List(ctx context.Context, gateway string) (map[string][]byte, error)

	// ListPartition returns the subscriptions of gateway last Put in
	// partition p, by id, like List: what a node taking partition p over
	// loads, in time proportional to them rather than to all of the
	// gateway's. Redis reads them in chunks of at most 1,000 (SSCAN, HMGET),
	// so that no command blocks the server for long.
	ListPartition(ctx context.Context, gateway string, p int) (map[string][]byte, error)

	// Count returns how many subscriptions gateway has (0 for an unknown or
	// expired gateway), in O(1) (Redis: HLEN).
	Count(ctx context.Context, gateway string) (int, error)

	// Touch is a heartbeat: it sets the gateway's deadline to now+ttl,
	// registering a gateway that has no subscriptions yet.
	Touch(ctx context.Context, gateway string, ttl time.Duration) error

	// Live returns the registered gateways whose deadline is after now,
	// sorted; empty when none.
	Live(ctx context.Context) ([]string, error)

	// Expired returns the registered gateways whose deadline is at or before
	// now (the caller's clock), sorted; empty when none.
	Expired(ctx context.Context, now time.Time) ([]string, error)

	// Forget deletes all of the gateway's subscriptions, its registration
	// and its session record (Sessions.Current returns "" afterwards; a
	// later Claim still gets a greater epoch). Forgetting an unknown gateway
	// is a no-op.
	Forget(ctx context.Context, gateway string) error
}

// StoredSubscription is one subscription as the store keeps it: its id, the
// tenant and partition it belongs to, and its encoded form (opaque).
type StoredSubscription struct {
	ID        string
	Tenant    string
	Partition int
	Data      []byte
}
