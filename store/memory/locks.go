package memory

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/streamerd/streamer/store"
)

// Locks is the memory store.Locks. Obtain it from New.
type Locks struct {
	life *lifecycle

	mu    sync.Mutex
	locks map[string]lease
}

var _ store.Locks = (*Locks)(nil)

func newLocks(life *lifecycle) *Locks {
	return &Locks{life: life, locks: map[string]lease{}}
}

// Acquire implements store.Locks.
func (l *Locks) Acquire(ctx context.Context, name, owner string, ttl time.Duration) (bool, error) {
	if err := l.args(ctx, "acquire", name, owner, &ttl); err != nil {
		return false, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.life.clock.Now()
	if h := l.locks[name].holder(now); h != "" && h != owner {
		return false, nil
	}
	l.locks[name] = lease{owner: owner, deadline: now.Add(ttl)}
	return true, nil
}

// Renew implements store.Locks.
func (l *Locks) Renew(ctx context.Context, name, owner string, ttl time.Duration) (bool, error) {
	if err := l.args(ctx, "renew", name, owner, &ttl); err != nil {
		return false, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.life.clock.Now()
	cur := l.locks[name]
	if cur.holder(now) != owner {
		return false, nil
	}
	cur.deadline = now.Add(ttl)
	l.locks[name] = cur
	return true, nil
}

// Release implements store.Locks.
func (l *Locks) Release(ctx context.Context, name, owner string) error {
	if err := l.args(ctx, "release", name, owner, nil); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.locks[name].holder(l.life.clock.Now()) == owner {
		delete(l.locks, name)
	}
	return nil
}

// Owner implements store.Locks.
func (l *Locks) Owner(ctx context.Context, name string) (string, error) {
	if err := l.life.check(ctx); err != nil {
		return "", err
	}
	if err := needName("lock name", name); err != nil {
		return "", fmt.Errorf("memory: read owner of lock: %w", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.locks[name].holder(l.life.clock.Now()), nil
}

func (l *Locks) args(ctx context.Context, op, name, owner string, ttl *time.Duration) error {
	if err := l.life.check(ctx); err != nil {
		return err
	}
	err := needName("lock name", name)
	if err == nil {
		err = needName("owner", owner)
	}
	if err == nil && ttl != nil {
		err = checkTTL(*ttl)
	}
	if err != nil {
		return fmt.Errorf("memory: %s lock %q: %w", op, name, err)
	}
	return nil
}
