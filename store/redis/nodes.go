package redis

import (
	"context"
	"slices"
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/streamerd/streamer/store"
)

// Nodes is store.Nodes on the zset stm:nodes scored by heartbeat deadline
// (Unix ms, from the calling node's clock).
type Nodes struct{ c *core }

var _ store.Nodes = (*Nodes)(nil)

// Heartbeat is ZADD stm:nodes now+ttl node.
func (n *Nodes) Heartbeat(ctx context.Context, node string, ttl time.Duration) error {
	if err := n.c.begin(ctx); err != nil {
		return err
	}
	if err := required("node", node); err != nil {
		return err
	}
	if _, err := ttlMs(ttl); err != nil {
		return err
	}
	z := goredis.Z{Score: float64(n.c.deadlineMs(ttl)), Member: node}
	if err := n.c.client.ZAdd(ctx, n.c.keys.Nodes(), z).Err(); err != nil {
		return n.c.fail(ctx, "heartbeat", err)
	}
	return nil
}

// Live drops the expired nodes (ZREMRANGEBYSCORE -inf now) and returns the
// others (ZRANGEBYSCORE (now +inf), sorted by name.
func (n *Nodes) Live(ctx context.Context) ([]string, error) {
	if err := n.c.begin(ctx); err != nil {
		return nil, err
	}
	now := strconv.FormatInt(n.c.clock.Now().UnixMilli(), 10)
	var live *goredis.StringSliceCmd
	err := n.c.multi(ctx, func(pipe goredis.Pipeliner) {
		pipe.ZRemRangeByScore(ctx, n.c.keys.Nodes(), "-inf", now)
		live = pipe.ZRangeByScore(ctx, n.c.keys.Nodes(), &goredis.ZRangeBy{Min: "(" + now, Max: "+inf"})
	})
	if err != nil {
		return nil, n.c.fail(ctx, "live nodes", err)
	}
	names := live.Val()
	slices.Sort(names)
	return names, nil
}

// Remove is ZREM.
func (n *Nodes) Remove(ctx context.Context, node string) error {
	if err := n.c.begin(ctx); err != nil {
		return err
	}
	if err := required("node", node); err != nil {
		return err
	}
	if err := n.c.client.ZRem(ctx, n.c.keys.Nodes(), node).Err(); err != nil {
		return n.c.fail(ctx, "remove node", err)
	}
	return nil
}
