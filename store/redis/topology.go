package redis

import (
	"context"
	"errors"
	"net"

	goredis "github.com/redis/go-redis/v9"
)

// topologyHook makes a cluster client reload the slot map when a command
// fails in a way a failover causes: the connection to a node failed (the
// master died: go-redis retries it, but only a MOVED would make it reload
// its map, and a dead node answers none) or the cluster said it is down or
// moving (CLUSTERDOWN, TRYAGAIN). Without it a node went on dialing the
// dead master long after its replica was promoted. Reloads are lazy and
// coalesced by go-redis: one at a time.
type topologyHook struct{ c *goredis.ClusterClient }

func (h topologyHook) DialHook(next goredis.DialHook) goredis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := next(ctx, network, addr)
		if err != nil && ctx.Err() == nil {
			h.c.ReloadState(ctx)
		}
		return conn, err
	}
}

func (h topologyHook) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		err := next(ctx, cmd)
		h.check(ctx, err)
		return err
	}
}

func (h topologyHook) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		err := next(ctx, cmds)
		for _, c := range cmds {
			if h.check(ctx, c.Err()) {
				break
			}
		}
		return err
	}
}

// check reloads the slot map after a failover-shaped error; it reports
// whether it did.
func (h topologyHook) check(ctx context.Context, err error) bool {
	if err == nil || errors.Is(err, goredis.Nil) || ctx.Err() != nil {
		return false
	}
	var reply goredis.Error
	if errors.As(err, &reply) && !goredis.HasErrorPrefix(err, "CLUSTERDOWN") && !goredis.HasErrorPrefix(err, "TRYAGAIN") {
		return false // an answer: the node is there
	}
	h.c.ReloadState(ctx)
	return true
}
