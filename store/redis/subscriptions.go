package redis

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
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

// Put runs scriptSubsPut (HSET, the partition sets, the index marker, the
// subscription's tenant) with PEXPIREAT on the hash and ZADD on the
// registry, then moves the tenant counts if the subscription is new or
// changed tenant. With Config.WaitReplicas it returns once the put is on
// that many replicas.
func (s *Subscriptions) Put(ctx context.Context, gateway string, sub store.StoredSubscription, ttl time.Duration) error {
	if p := sub.Partition; p < 0 || p >= s.c.partitions {
		return fmt.Errorf("%w: subscriptions put: partition %d of %d", store.ErrInvalid, p, s.c.partitions)
	}
	keys := make([]string, 0, 3+s.c.partitions)
	keys = append(keys, s.c.keys.Subs(gateway), s.c.keys.SubsIndexed(gateway), s.c.keys.SubsTenants(gateway))
	for q := range s.c.partitions {
		keys = append(keys, s.c.keys.SubsIn(gateway, q))
	}
	var put *goredis.Cmd
	err := s.heartbeat(ctx, "put", gateway, ttl, func(pipe goredis.Pipeliner) {
		// Not EvalSha: a script cache flushed since New cannot be retried inside MULTI.
		put = scriptSubsPut.Eval(ctx, pipe, keys, sub.ID, sub.Data, sub.Partition+4, sub.Tenant)
	})
	if err != nil {
		return err
	}
	if s.c.waitReplicas > 0 {
		// WAIT for a write after the put on the hash's master: its
		// replicas have the put once they have that write.
		hash := s.c.keys.Subs(gateway)
		err := s.c.waitWrite(ctx, hash, func(pipe goredis.Pipeliner) {
			pipe.PExpireAt(ctx, hash, time.UnixMilli(s.c.deadlineMs(ttl)-1))
		})
		if err != nil {
			return s.c.fail(ctx, "put", err)
		}
	}
	prev, had, err := previousTenant(put)
	if err != nil {
		return s.c.fail(ctx, "put", err)
	}
	switch {
	case !had:
		return s.countTenants(ctx, "put", tenantDelta{sub.Tenant, 1})
	case prev != sub.Tenant:
		return s.countTenants(ctx, "put", tenantDelta{sub.Tenant, 1}, tenantDelta{prev, -1})
	}
	return nil
}

// previousTenant reads a script's answer: "t:<tenant>" of the subscription
// it replaced or removed, or nil when there was none.
func previousTenant(cmd *goredis.Cmd) (tenant string, had bool, err error) {
	v, err := cmd.Text()
	if errors.Is(err, goredis.Nil) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	return strings.TrimPrefix(v, "t:"), true, nil
}

// tenantDelta is a change of a tenant's subscription count.
type tenantDelta struct {
	tenant string
	delta  int64
}

// countTenants applies deltas to the tenants' subscription counts.
func (s *Subscriptions) countTenants(ctx context.Context, op string, deltas ...tenantDelta) error {
	_, err := s.c.client.Pipelined(ctx, func(pipe goredis.Pipeliner) error {
		for _, d := range deltas {
			pipe.HIncrBy(ctx, s.c.keys.TenantSubs(), "t:"+d.tenant, d.delta)
		}
		return nil
	})
	if err != nil {
		return s.c.fail(ctx, op+" (tenant counts)", err)
	}
	return nil
}

// TenantCount is HGET on the counts hash.
func (s *Subscriptions) TenantCount(ctx context.Context, tenant string) (int, error) {
	if err := s.c.begin(ctx); err != nil {
		return 0, err
	}
	n, err := s.c.client.HGet(ctx, s.c.keys.TenantSubs(), "t:"+tenant).Int()
	if err = ignoreNil(err); err != nil {
		return 0, s.c.fail(ctx, "tenant count", err)
	}
	return max(n, 0), nil
}

// listChunk bounds each command of ListPartition.
const listChunk = 1000

// ListPartition walks the partition's set with SSCAN and reads each chunk of
// ids with HMGET; ids whose subscription is gone (deleted, expired) are
// skipped. A gateway whose subscriptions were stored before the partition
// sets existed (no index marker) is read whole, with HSCAN: its caller
// keeps the partition's own.
func (s *Subscriptions) ListPartition(ctx context.Context, gateway string, p int) (map[string][]byte, error) {
	if err := s.c.begin(ctx); err != nil {
		return nil, err
	}
	if err := required("gateway", gateway); err != nil {
		return nil, err
	}
	indexed, err := s.c.client.Exists(ctx, s.c.keys.SubsIndexed(gateway)).Result()
	if err != nil {
		return nil, s.c.fail(ctx, "list partition", err)
	}
	if indexed == 0 {
		return s.scanAll(ctx, gateway)
	}
	out := map[string][]byte{}
	set, hash := s.c.keys.SubsIn(gateway, p), s.c.keys.Subs(gateway)
	var cursor uint64
	for {
		ids, next, err := s.c.client.SScan(ctx, set, cursor, "", listChunk).Result()
		if err != nil {
			return nil, s.c.fail(ctx, "list partition", err)
		}
		if len(ids) > 0 {
			vals, err := s.c.client.HMGet(ctx, hash, ids...).Result()
			if err != nil {
				return nil, s.c.fail(ctx, "list partition", err)
			}
			for i, v := range vals {
				if data, ok := v.(string); ok {
					out[ids[i]] = []byte(data)
				}
			}
		}
		if cursor = next; cursor == 0 {
			return out, nil
		}
	}
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
	if err = ignoreNil(err); err != nil { // a nil answer (scriptSubsPut's "new") is not a failure
		return s.c.fail(ctx, op, err)
	}
	return nil
}

// Delete runs scriptSubsDelete (HDEL, SREM from the partitions' sets, the
// subscription's tenant) and decrements its tenant's count.
func (s *Subscriptions) Delete(ctx context.Context, gateway, id string) (bool, error) {
	if err := s.c.begin(ctx); err != nil {
		return false, err
	}
	if err := required("gateway", gateway); err != nil {
		return false, err
	}
	keys := make([]string, 0, 2+s.c.partitions)
	keys = append(keys, s.c.keys.Subs(gateway), s.c.keys.SubsTenants(gateway))
	for p := range s.c.partitions {
		keys = append(keys, s.c.keys.SubsIn(gateway, p))
	}
	res, err := scriptSubsDelete.Run(ctx, s.c.client, keys, id).Slice()
	if err != nil || len(res) != 2 {
		return false, s.c.fail(ctx, "delete", fmt.Errorf("script answered %v: %w", res, err))
	}
	existed, _ := res[0].(int64)
	if prev, ok := res[1].(string); ok {
		if err := s.countTenants(ctx, "delete", tenantDelta{strings.TrimPrefix(prev, "t:"), -1}); err != nil {
			return false, err
		}
	}
	return existed == 1, nil
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

// tenantsOf counts gateway's subscriptions by tenant, from its tenants
// hash.
func (s *Subscriptions) tenantsOf(ctx context.Context, gateway string) (map[string]int64, error) {
	counts := map[string]int64{}
	err := s.hscan(ctx, "forget", s.c.keys.SubsTenants(gateway), func(_, tenant string) { counts[tenant]++ })
	return counts, err
}

// scanAll reads all of gateway's subscriptions from its hash.
func (s *Subscriptions) scanAll(ctx context.Context, gateway string) (map[string][]byte, error) {
	out := map[string][]byte{}
	err := s.hscan(ctx, "list partition", s.c.keys.Subs(gateway), func(id, data string) { out[id] = []byte(data) })
	return out, err
}

// hscan walks the hash key with HSCAN, listChunk fields per command, and
// calls each with every field and value.
func (s *Subscriptions) hscan(ctx context.Context, op, key string, each func(field, value string)) error {
	var cursor uint64
	for {
		kv, next, err := s.c.client.HScan(ctx, key, cursor, "", listChunk).Result()
		if err != nil {
			return s.c.fail(ctx, op, err)
		}
		for i := 0; i+1 < len(kv); i += 2 {
			each(kv[i], kv[i+1])
		}
		if cursor = next; cursor == 0 {
			return nil
		}
	}
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

// Forget is UNLINK on the hash, the partition sets and the session record and ZREM on the registry, in one
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
	// First the tenant counts go down by the gateway's subscriptions, read
	// in chunks; a node dying before the keys go leaves them counted twice
	// down at the next Forget: never below zero (TenantCount).
	counts, err := s.tenantsOf(ctx, gateway)
	if err != nil {
		return err
	}
	deltas := make([]tenantDelta, 0, len(counts))
	for tenant, n := range counts {
		deltas = append(deltas, tenantDelta{tenant, -n})
	}
	if len(deltas) > 0 {
		if err := s.countTenants(ctx, "forget", deltas...); err != nil {
			return err
		}
	}
	keys := []string{s.c.keys.Subs(gateway), s.c.keys.Session(gateway), s.c.keys.SubsIndexed(gateway), s.c.keys.SubsTenants(gateway)}
	for p := range s.c.partitions {
		keys = append(keys, s.c.keys.SubsIn(gateway, p))
	}
	err = s.c.multi(ctx, func(pipe goredis.Pipeliner) {
		pipe.Unlink(ctx, keys...) // UNLINK: a big hash is freed in the background, not while Redis blocks
		pipe.ZRem(ctx, s.c.keys.Gateways(), gateway)
	})
	if err != nil {
		return s.c.fail(ctx, "forget", err)
	}
	return nil
}
