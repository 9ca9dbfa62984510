package memory

import (
	"context"
	"fmt"
	"sync"

	"github.com/streamerd/streamer/store"
)

// Checkpoints is the memory store.Checkpoints. Obtain it from New.
type Checkpoints struct {
	life *lifecycle

	mu     sync.Mutex
	values map[string][]byte
}

var _ store.Checkpoints = (*Checkpoints)(nil)

func newCheckpoints(life *lifecycle) *Checkpoints {
	return &Checkpoints{life: life, values: map[string][]byte{}}
}

// Save implements store.Checkpoints.
func (c *Checkpoints) Save(ctx context.Context, name string, value []byte) error {
	if err := c.args(ctx, name); err != nil {
		return err
	}
	value = clone(value)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.values[name] = value
	return nil
}

// Load implements store.Checkpoints.
func (c *Checkpoints) Load(ctx context.Context, name string) ([]byte, bool, error) {
	if err := c.args(ctx, name); err != nil {
		return nil, false, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.values[name]
	if !ok {
		return nil, false, nil
	}
	return clone(v), true, nil
}

// args runs the checks every method starts with.
func (c *Checkpoints) args(ctx context.Context, name string) error {
	if err := c.life.check(ctx); err != nil {
		return err
	}
	if err := needName("checkpoint name", name); err != nil {
		return fmt.Errorf("memory: checkpoints: %w", err)
	}
	return nil
}
