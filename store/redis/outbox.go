package redis

import (
	"context"
	"fmt"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/streamerd/streamer/store"
)

// Outboxes is store.Outboxes on one stream per gateway, stm:{gw:G}:out.
//
// The cap is exact: scriptOutboxAppend deletes the oldest entries beyond
// OutboxMaxLen in the script that appends, and, like Trim, deletes the newest
// of them with XDEL so that XINFO STREAM's max-deleted-entry-id, which Lost
// reads, is exact (XADD MAXLEN and XTRIM alone leave it unchanged).
type Outboxes struct{ c *core }

var _ store.Outboxes = (*Outboxes)(nil)

// outboxBatch is the items of one gateway in one Append.
type outboxBatch struct {
	key   string
	index []int // positions of the items in Append's argument
	args  []any // cap, then payloads
	cmd   *goredis.Cmd
}

// Append runs one script per gateway, all pipelined in one round trip. If
// the call fails, the outboxes of some gateways may have been appended to
// and others not; a retry may duplicate entries (delivery is at least once).
func (o *Outboxes) Append(ctx context.Context, items []store.OutboxItem) ([]string, error) {
	if err := o.c.begin(ctx); err != nil {
		return nil, err
	}
	for i, it := range items {
		if it.Gateway == "" {
			return nil, fmt.Errorf("%w: item %d names no gateway", store.ErrInvalid, i)
		}
	}
	if len(items) == 0 {
		return nil, nil
	}
	var batches []*outboxBatch
	byGateway := map[string]*outboxBatch{}
	for i, it := range items {
		b := byGateway[it.Gateway]
		if b == nil {
			b = &outboxBatch{key: o.c.keys.Outbox(it.Gateway), args: []any{o.c.outboxMaxLen}}
			byGateway[it.Gateway] = b
			batches = append(batches, b)
		}
		b.index = append(b.index, i)
		b.args = append(b.args, it.Payload)
	}

	if len(batches) == 1 {
		b := batches[0]
		b.cmd = scriptOutboxAppend.Run(ctx, o.c.client, []string{b.key}, b.args...)
	} else {
		pipe := o.c.client.Pipeline()
		for _, b := range batches {
			b.cmd = scriptOutboxAppend.EvalSha(ctx, pipe, []string{b.key}, b.args...)
		}
		_, _ = pipe.Exec(ctx) // errors are per command, below
		for _, b := range batches {
			if isNoScript(b.cmd.Err()) { // script cache flushed since New
				b.cmd = scriptOutboxAppend.Run(ctx, o.c.client, []string{b.key}, b.args...)
			}
		}
	}

	ids := make([]string, len(items))
	for _, b := range batches {
		got, err := b.cmd.StringSlice()
		if err == nil && len(got) != len(b.index) {
			err = fmt.Errorf("script returned %d ids for %d payloads", len(got), len(b.index))
		}
		if err != nil {
			return nil, o.c.fail(ctx, "outbox append", err)
		}
		for j, i := range b.index {
			ids[i] = got[j]
		}
	}
	return ids, nil
}

// Read is XREAD COUNT count BLOCK … STREAMS stm:{gw:G}:out after.
func (o *Outboxes) Read(ctx context.Context, gateway, after string, count int, block time.Duration) ([]store.Entry, error) {
	if err := o.c.begin(ctx); err != nil {
		return nil, err
	}
	if err := required("gateway", gateway); err != nil {
		return nil, err
	}
	after, err := cursor(after)
	if err != nil {
		return nil, err
	}
	key := o.c.keys.Outbox(gateway)
	got, err := o.c.poll(ctx, block, func(block time.Duration) ([]store.Entry, error) {
		streams, err := o.c.client.XRead(ctx, &goredis.XReadArgs{
			Streams: []string{key, after},
			Count:   int64(max(count, 0)),
			Block:   block,
		}).Result()
		if err != nil || len(streams) == 0 {
			return nil, ignoreNil(err)
		}
		return entries(streams[0].Messages), nil
	})
	if err != nil {
		return nil, o.c.fail(ctx, "outbox read", err)
	}
	return got, nil
}

// Trim runs scriptOutboxTrim.
func (o *Outboxes) Trim(ctx context.Context, gateway, upTo string) error {
	if err := o.c.begin(ctx); err != nil {
		return err
	}
	if err := required("gateway", gateway); err != nil {
		return err
	}
	if upTo == "" {
		return nil
	}
	upTo, err := normID(upTo)
	if err != nil {
		return err
	}
	if err := scriptOutboxTrim.Run(ctx, o.c.client, []string{o.c.keys.Outbox(gateway)}, upTo).Err(); err != nil {
		return o.c.fail(ctx, "outbox trim", err)
	}
	return nil
}

// Last is XINFO STREAM's last-generated-id.
func (o *Outboxes) Last(ctx context.Context, gateway string) (string, error) {
	last, _, err := o.info(ctx, "outbox last", gateway)
	return last, err
}

// Lost compares XINFO STREAM's max-deleted-entry-id with after.
func (o *Outboxes) Lost(ctx context.Context, gateway, after string) (bool, error) {
	if err := o.c.begin(ctx); err != nil {
		return false, err
	}
	after, err := cursor(after)
	if err != nil {
		return false, err
	}
	_, deleted, err := o.info(ctx, "outbox lost", gateway)
	if err != nil || deleted == "" {
		return false, err
	}
	return store.CompareIDs(deleted, after) > 0, nil
}

// info returns the outbox's last-generated-id and max-deleted-entry-id,
// each "" when there is none (no stream, or "0-0").
func (o *Outboxes) info(ctx context.Context, op, gateway string) (last, deleted string, err error) {
	if err := o.c.begin(ctx); err != nil {
		return "", "", err
	}
	if err := required("gateway", gateway); err != nil {
		return "", "", err
	}
	got, err := scriptOutboxInfo.Run(ctx, o.c.client, []string{o.c.keys.Outbox(gateway)}).StringSlice()
	if err != nil {
		return "", "", o.c.fail(ctx, op, err)
	}
	if len(got) != 2 {
		return "", "", nil
	}
	unset := func(id string) string {
		if id == "0-0" {
			return ""
		}
		return id
	}
	return unset(got[0]), unset(got[1]), nil
}

// Len is XLEN.
func (o *Outboxes) Len(ctx context.Context, gateway string) (int64, error) {
	if err := o.c.begin(ctx); err != nil {
		return 0, err
	}
	if err := required("gateway", gateway); err != nil {
		return 0, err
	}
	n, err := o.c.client.XLen(ctx, o.c.keys.Outbox(gateway)).Result()
	if err != nil {
		return 0, o.c.fail(ctx, "outbox len", err)
	}
	return n, nil
}

// Delete is DEL, which also forgets the stream's last and max deleted ids.
func (o *Outboxes) Delete(ctx context.Context, gateway string) error {
	if err := o.c.begin(ctx); err != nil {
		return err
	}
	if err := required("gateway", gateway); err != nil {
		return err
	}
	if err := o.c.client.Del(ctx, o.c.keys.Outbox(gateway)).Err(); err != nil {
		return o.c.fail(ctx, "outbox delete", err)
	}
	return nil
}

// cursor validates an outbox cursor: "" means "0-0".
func cursor(after string) (string, error) {
	if after == "" {
		return "0-0", nil
	}
	return normID(after)
}
