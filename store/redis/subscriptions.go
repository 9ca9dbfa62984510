package redis

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/streamerd/streamer/store"
)

// Subscriptions is store.Subscriptions on a hash per gateway,
// stm:{gw:G}:subs, and the zset stm:gateways scored by deadline (Unix ms).
//
// Put and Touch compute the deadline once, from this process's clock, and
// write it in one MULTI/EXEC both as the zset score and as the hash's
// PEXPIREAT (deadline - 1, because Redis keeps a key alive through its
// expiry millisecond while the contract ends liveness at the deadline). So
// the hash vanishes exactly when the gateway stops being live, as far as the
// clocks of the node and of Redis agree. On Redis Cluster, where the hash
// and the zset live in different slots, the same commands are pipelined
// without MULTI (see core.multi).
type Subscriptions struct{ c *core }

var _ store.Subscriptions = (*Subscriptions)(nil)

// Put is HSET + PEXPIREAT on the hash and ZADD on the registry.
func (s *Subscriptions) Put(ctx context.Context, gateway, id string, data []byte, ttl time.Duration) error {
	return s.heartbeat(ctx, "put", gateway, ttl, func(pipe goredis.Pipeliner) {
		pipe.HSet(ctx, s.c.keys.Subs(gateway), id, data)
	})
}

// Touch is PEXPIREAT on the hash (if it exists) and ZADD on the registry.
func (s *Subscriptions) Touch(ctx context.Context, gateway string, ttl time.Duration) error {
	return s.heartbeat(ctx, "touch", gateway, ttl, nil)
}

// heartbeat sets gateway's deadline to now+ttl after running first.
func (s *Subscriptions) heartbeat(ctx context.Context, op, gateway string, ttl time.Duration, first func(goredis.Pipeliner)) error {
	if err := s.c.begin(ctx); err != nil {
		return err
	}
	if err := required("gateway", gateway); err != nil {
		return err
	}
	if _, err := ttlMs(ttl); err != nil {
		return err
	}
	deadline := s.c.deadlineMs(ttl)
	err := s.c.multi(ctx, func(pipe goredis.Pipeliner) {
		if first != nil {
			first(pipe)
		}
		pipe.PExpireAt(ctx, s.c.keys.Subs(gateway), time.UnixMilli(deadline-1))
		pipe.ZAdd(ctx, s.c.keys.Gateways(), goredis.Z{Score: float64(deadline), Member: gateway})
	})
	if err != nil {
		return s.c.fail(ctx, op, err)
	}
	return nil
}

// Delete is HDEL.
func (s *Subscriptions) Delete(ctx context.Context, gateway, id string) (bool, error) {
	if err := s.c.begin(ctx); err != nil {
		return false, err
	}
	if err := required("gateway", gateway); err != nil {
		return false, err
	}
	n, err := s.c.client.HDel(ctx, s.c.keys.Subs(gateway), id).Result()
	if err != nil {
		return false, s.c.fail(ctx, "delete", err)
	}
	return n > 0, nil
}

// Get is HGET.
func (s *Subscriptions) Get(ctx context.Context, gateway, id string) ([]byte, bool, error) {
	if err := s.c.begin(ctx); err != nil {
		return nil, false, err
	}
	if err := required("gateway", gateway); err != nil {
		return nil, false, err
	}
	data, err := s.c.client.HGet(ctx, s.c.keys.Subs(gateway), id).Bytes()
	if errors.Is(err, goredis.Nil) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, s.c.fail(ctx, "get", err)
	}
	return data, true, nil
}

// List is HGETALL.
func (s *Subscriptions) List(ctx context.Context, gateway string) (map[string][]byte, error) {
	if err := s.c.begin(ctx); err != nil {
		return nil, err
	}
	if err := required("gateway", gateway); err != nil {
		return nil, err
	}
	all, err := s.c.client.HGetAll(ctx, s.c.keys.Subs(gateway)).Result()
	if err != nil {
		return nil, s.c.fail(ctx, "list", err)
	}
	out := make(map[string][]byte, len(all))
	for id, data := range all {
		out[id] = []byte(data)
	}
	return out, nil
}

// Count is HLEN.
func (s *Subscriptions) Count(ctx context.Context, gateway string) (int, error) {
	if err := s.c.begin(ctx); err != nil {
		return 0, err
	}
	if err := required("gateway", gateway); err != nil {
		return 0, err
	}
	n, err := s.c.client.HLen(ctx, s.c.keys.Subs(gateway)).Result()
	if err != nil {
		return 0, s.c.fail(ctx, "count", err)
	}
	return int(n), nil
}

// Live is ZRANGEBYSCORE stm:gateways (now +inf, sorted by name.
func (s *Subscriptions) Live(ctx context.Context) ([]string, error) {
	return s.byDeadline(ctx, "live", "("+strconv.FormatInt(s.c.clock.Now().UnixMilli(), 10), "+inf")
}

// Expired is ZRANGEBYSCORE stm:gateways -inf now, sorted by name.
func (s *Subscriptions) Expired(ctx context.Context, now time.Time) ([]string, error) {
	return s.byDeadline(ctx, "expired", "-inf", strconv.FormatInt(now.UnixMilli(), 10))
}

func (s *Subscriptions) byDeadline(ctx context.Context, op, lo, hi string) ([]string, error) {
	if err := s.c.begin(ctx); err != nil {
		return nil, err
	}
	names, err := s.c.client.ZRangeByScore(ctx, s.c.keys.Gateways(), &goredis.ZRangeBy{Min: lo, Max: hi}).Result()
	if err != nil {
		return nil, s.c.fail(ctx, op, err)
	}
	slices.Sort(names)
	return names, nil
}

// Forget is DEL on the hash and the session record and ZREM on the registry, in one
// MULTI/EXEC.
func (s *Subscriptions) Forget(ctx context.Context, gateway string) error {
	if err := s.c.begin(ctx); err != nil {
		return err
	}
	if err := required("gateway", gateway); err != nil {
		return err
	}
	// The session record goes too, so that a forgotten gateway leaves no key
	// behind: its epochs come from the server's clock, so a later Claim still
	// gets a greater one.
	err := s.c.multi(ctx, func(pipe goredis.Pipeliner) {
		pipe.Del(ctx, s.c.keys.Subs(gateway), s.c.keys.Session(gateway))
		pipe.ZRem(ctx, s.c.keys.Gateways(), gateway)
	})
	if err != nil {
		return s.c.fail(ctx, "forget", err)
	}
	return nil
}
