package memory

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/streamerd/streamer/store"
)

// Leases is the memory store.Leases: one lease per partition. Obtain it from
// New.
type Leases struct {
	life *lifecycle

	mu     sync.Mutex
	leases []lease // indexed by partition
}

var _ store.Leases = (*Leases)(nil)

// lease is held by owner until deadline; owner "" means free.
type lease struct {
	owner    string
	deadline time.Time
}

func newLeases(life *lifecycle, partitions int) *Leases {
	return &Leases{life: life, leases: make([]lease, partitions)}
}

// holder returns the owner of l at now, "" when free or expired.
func (l lease) holder(now time.Time) string {
	if l.deadline.After(now) {
		return l.owner
	}
	return ""
}

// Acquire implements store.Leases.
func (ls *Leases) Acquire(ctx context.Context, p int, node string, ttl time.Duration) (bool, error) {
	if err := ls.args(ctx, "acquire", p, node, &ttl); err != nil {
		return false, err
	}
	ls.mu.Lock()
	defer ls.mu.Unlock()
	now := ls.life.clock.Now()
	if h := ls.leases[p].holder(now); h != "" && h != node {
		return false, nil
	}
	ls.leases[p] = lease{owner: node, deadline: now.Add(ttl)}
	return true, nil
}

// Renew implements store.Leases.
func (ls *Leases) Renew(ctx context.Context, p int, node string, ttl time.Duration) (bool, error) {
	if err := ls.args(ctx, "renew", p, node, &ttl); err != nil {
		return false, err
	}
	ls.mu.Lock()
	defer ls.mu.Unlock()
	now := ls.life.clock.Now()
	if ls.leases[p].holder(now) != node {
		return false, nil
	}
	ls.leases[p].deadline = now.Add(ttl)
	return true, nil
}

// Release implements store.Leases.
func (ls *Leases) Release(ctx context.Context, p int, node string) error {
	if err := ls.args(ctx, "release", p, node, nil); err != nil {
		return err
	}
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.leases[p].holder(ls.life.clock.Now()) == node {
		ls.leases[p] = lease{}
	}
	return nil
}

// Owner implements store.Leases.
func (ls *Leases) Owner(ctx context.Context, p int) (string, error) {
	if err := ls.partition(ctx, "read owner of", p); err != nil {
		return "", err
	}
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return ls.leases[p].holder(ls.life.clock.Now()), nil
}

// partition runs the checks every method starts with.
func (ls *Leases) partition(ctx context.Context, op string, p int) error {
	if err := ls.life.check(ctx); err != nil {
		return err
	}
	if p < 0 || p >= len(ls.leases) {
		return fmt.Errorf("memory: %s lease %d of %d: %w", op, p, len(ls.leases), store.ErrBadPartition)
	}
	return nil
}

// args runs partition's checks and validates node and, unless nil, ttl.
func (ls *Leases) args(ctx context.Context, op string, p int, node string, ttl *time.Duration) error {
	if err := ls.partition(ctx, op, p); err != nil {
		return err
	}
	err := needName("node", node)
	if err == nil && ttl != nil {
		err = checkTTL(*ttl)
	}
	if err != nil {
		return fmt.Errorf("memory: %s lease %d: %w", op, p, err)
	}
	return nil
}
