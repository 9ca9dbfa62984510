package redis

import (
	"context"
	"errors"

	goredis "github.com/redis/go-redis/v9"

	"github.com/streamerd/streamer/store"
)

// Checkpoints is store.Checkpoints on one string per name,
// stm:checkpoint:{NAME}.
type Checkpoints struct{ c *core }

var _ store.Checkpoints = (*Checkpoints)(nil)

// Save is SET (and WAIT with Config.WaitReplicas).
func (cp *Checkpoints) Save(ctx context.Context, name string, value []byte) error {
	if err := cp.begin(ctx, name); err != nil {
		return err
	}
	key := cp.c.keys.Checkpoint(name)
	if err := cp.c.waitWrite(ctx, key, func(pipe goredis.Pipeliner) { pipe.Set(ctx, key, value, 0) }); err != nil {
		return cp.c.fail(ctx, "checkpoint save", err)
	}
	return nil
}

// Load is GET.
func (cp *Checkpoints) Load(ctx context.Context, name string) ([]byte, bool, error) {
	if err := cp.begin(ctx, name); err != nil {
		return nil, false, err
	}
	v, err := cp.c.client.Get(ctx, cp.c.keys.Checkpoint(name)).Bytes()
	if errors.Is(err, goredis.Nil) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, cp.c.fail(ctx, "checkpoint load", err)
	}
	if v == nil {
		v = []byte{}
	}
	return v, true, nil
}

func (cp *Checkpoints) begin(ctx context.Context, name string) error {
	if err := cp.c.begin(ctx); err != nil {
		return err
	}
	return required("checkpoint name", name)
}
