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
// OutboxMaxLen in the script that appends. It and Trim record the greatest
// deleted id in stm:{gw:G}:outdel, which Lost reads with one GET. (XINFO
// STREAM's max-deleted-entry-id would say the same when deleting with XDEL,
// but XINFO STREAM also returns the first and last entries, payloads
// included, and a pump checks after every read.)
type Outboxes struct{ c *core }

var _ store.Outboxes = (*Outboxes)(nil)

// outboxBatch is the items of one gateway in one Append: a
// scriptOutboxAppend on its outboxKeys with the caps, the number of items,
// then each item's arguments (appendItemArgs).
type outboxBatch struct {
	scriptCall
	index []int // positions of the items in Append's argument
}

// Append runs one script per gateway, all pipelined in one round trip. If
// the call fails, the outboxes of some gateways may have been appended to
// and others not; a retry may duplicate entries (delivery is at least once).
func (o *Outboxes) Append(ctx context.Context, items []store.OutboxItem) ([]string, error) {
	if err := o.c.begin(ctx); err != nil {
		return nil, err
	}
	if err := checkItems(items); err != nil {
		return nil, err
	}
	if len(items) == 0 {
		return nil, nil
	}
	var batches []*outboxBatch
	byGateway := map[string]*outboxBatch{}
	for i, it := range items {
		b := byGateway[it.Gateway]
		if b == nil {
			b = &outboxBatch{scriptCall: scriptCall{script: scriptOutboxAppend, keys: o.keys(it.Gateway), args: []any{o.c.outboxMaxLen, o.c.outboxMaxBytes, 0}}}
			byGateway[it.Gateway] = b
			batches = append(batches, b)
		}
		b.index = append(b.index, i)
		b.args = appendItemArgs(b.args, it)
	}
	for _, b := range batches {
		b.args[2] = len(b.index)
	}

	calls := make([]*scriptCall, len(batches))
	for i, b := range batches {
		calls[i] = &b.scriptCall
	}
	o.c.runScripts(ctx, calls)

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
		if !o.c.oneNode { // see verify.go
			for j := len(got) - 1; j >= 0; j-- {
				if got[j] != "" { // "": fenced off
					o.c.verify.wrote(b.keys[0], got[j], items[b.index[0]].Gateway, 0)
					break
				}
			}
		}
	}
	return ids, nil
}

// keys returns gateway's outbox keys as the scripts take them.
func (o *Outboxes) keys(gateway string) []string {
	k := o.c.outbox(gateway)
	return k[:]
}

// appendItemArgs appends an item's arguments of append_items (scripts.go):
// its partition, position and payload.
func appendItemArgs(args []any, it store.OutboxItem) []any {
	return append(args, it.Partition, it.Position, it.Payload)
}

// checkItems refuses items naming no gateway or with a malformed position.
func checkItems(items []store.OutboxItem) error {
	for i, it := range items {
		if it.Gateway == "" {
			return fmt.Errorf("%w: item %d names no gateway", store.ErrInvalid, i)
		}
		if it.Position != "" {
			if id, err := normID(it.Position); err != nil || id != it.Position {
				return fmt.Errorf("%w: item %d: position %q is not a full stream id", store.ErrBadID, i, it.Position)
			}
		}
	}
	return nil
}

// Read is XREAD COUNT count BLOCK … STREAMS stm:{gw:G}:out after.
func (o *Outboxes) Read(ctx context.Context, gateway, after string, count int, block time.Duration) ([]store.Entry, error) {
	entries, _, err := o.read(ctx, "outbox read", gateway, after, count, block, false)
	return entries, err
}

// Fetch pipelines Read's XREAD with Lost's GET: the GET runs right after
// the XREAD is served, in the same round trip.
func (o *Outboxes) Fetch(ctx context.Context, gateway, after string, count int, block time.Duration) ([]store.Entry, bool, error) {
	return o.read(ctx, "outbox fetch", gateway, after, count, block, true)
}

func (o *Outboxes) read(ctx context.Context, op, gateway, after string, count int, block time.Duration, check bool) ([]store.Entry, bool, error) {
	if err := o.c.begin(ctx); err != nil {
		return nil, false, err
	}
	if err := required("gateway", gateway); err != nil {
		return nil, false, err
	}
	after, err := cursor(after)
	if err != nil {
		return nil, false, err
	}
	k := o.c.outbox(gateway)
	keys := []string{k.out(), k.outdel()}
	lost := false
	got, err := o.c.poll(ctx, block, func(block time.Duration) ([]store.Entry, error) {
		if !check {
			return first(o.xread(ctx, nil, []string{keys[0], after}, count, block).result())
		}
		pipe := o.c.client.Pipeline()
		read := o.xread(ctx, pipe, []string{keys[0], after}, count, block)
		deleted := pipe.Get(ctx, keys[1])
		_, _ = pipe.Exec(ctx) // errors are per command
		got, err := first(read.result())
		if err != nil || len(got) == 0 {
			return nil, err
		}
		if lost, err = deletedAfter(deleted, after); err != nil {
			return nil, err
		}
		return got, nil
	})
	if err != nil {
		return nil, false, o.c.fail(ctx, op, err)
	}
	return got, lost, nil
}

// FetchMany is one XREAD over every fetch's outbox, pipelined with the GET
// of each outbox's outdel key (see Fetch).
func (o *Outboxes) FetchMany(ctx context.Context, fetches []store.OutboxFetch, count int, block time.Duration) error {
	if err := o.c.begin(ctx); err != nil {
		return err
	}
	index := make(map[string]int, len(fetches)) // outbox key → fetch
	keys := make([]string, 0, 2*len(fetches))
	outdels := make([]string, len(fetches))
	afters := make([]string, len(fetches))
	for i := range fetches {
		f := &fetches[i]
		f.Entries, f.Lost = nil, false
		if err := required("gateway", f.Gateway); err != nil {
			return err
		}
		after, err := cursor(f.After)
		if err != nil {
			return err
		}
		k := o.c.outbox(f.Gateway)
		out, outdel := k.out(), k.outdel()
		if _, dup := index[out]; dup {
			return fmt.Errorf("%w: gateway %q named twice", store.ErrInvalid, f.Gateway)
		}
		index[out], outdels[i], afters[i] = i, outdel, after
		keys = append(keys, out)
	}
	keys = append(keys, afters...)
	if len(fetches) == 0 {
		return nil
	}
	_, err := o.c.poll(ctx, block, func(block time.Duration) ([]store.Entry, error) {
		pipe := o.c.client.Pipeline()
		read := o.xread(ctx, pipe, keys, count, block)
		var more streamsCmd // the wake-up read (resp.go)
		if o.c.raw && block >= 0 && len(fetches) > 1 {
			more = o.xread(ctx, pipe, keys, count, -1)
		}
		deleted := make([]*goredis.StringCmd, len(fetches))
		for i := range fetches {
			deleted[i] = pipe.Get(ctx, outdels[i])
		}
		_, _ = pipe.Exec(ctx) // errors are per command
		got, err := read.result()
		if err == nil && more != nil {
			var next []streamReply
			next, err = more.result()
			got = laterReads(got, next)
		}
		if err != nil || len(got) == 0 {
			return nil, ignoreNil(err)
		}
		var some []store.Entry
		for _, st := range got {
			i, ok := index[st.stream]
			if !ok {
				return nil, fmt.Errorf("%w: XREAD returned stream %q, which was not asked for", errBadReply, st.stream)
			}
			f := &fetches[i]
			if f.Lost, err = deletedAfter(deleted[i], afters[i]); err != nil {
				return nil, err
			}
			f.Entries, some = st.entries, st.entries
		}
		return some, nil
	})
	if err != nil {
		for i := range fetches {
			fetches[i].Entries, fetches[i].Lost = nil, false
		}
		return o.c.fail(ctx, "outbox fetch", err)
	}
	return nil
}

// xread returns the command XREAD COUNT count BLOCK block STREAMS streams
// (keys, then ids), queued on pipe (nil: sent at once). block < 0: no
// BLOCK. Off Cluster it is a raw command (resp.go).
func (o *Outboxes) xread(ctx context.Context, pipe goredis.Pipeliner, streams []string, count int, block time.Duration) streamsCmd {
	if o.c.raw {
		args := readArgs(count, block, len(streams), "xread")
		for _, s := range streams {
			args = append(args, s)
		}
		return rawStreamsCmd(ctx, o.c.client, pipe, args)
	}
	args := &goredis.XReadArgs{Streams: streams, Count: int64(max(count, 0)), Block: block}
	if pipe == nil {
		return typedStreams{o.c.client.XRead(ctx, args)}
	}
	return typedStreams{pipe.XRead(ctx, args)}
}

// first returns the entries of a one-stream read's reply.
func first(got []streamReply, err error) ([]store.Entry, error) {
	if err != nil || len(got) == 0 {
		return nil, ignoreNil(err)
	}
	return got[0].entries, nil
}

// deletedAfter reports whether the outdel value GET returned is an id
// greater than after.
func deletedAfter(get *goredis.StringCmd, after string) (bool, error) {
	deleted, err := get.Result()
	if err != nil {
		return false, ignoreNil(err)
	}
	return store.CompareIDs(deleted, after) > 0, nil
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
	if err := scriptOutboxTrim.Run(ctx, o.c.client, o.keys(gateway), upTo).Err(); err != nil {
		return o.c.fail(ctx, "outbox trim", err)
	}
	return nil
}

// Last is XINFO STREAM's last-generated-id.
func (o *Outboxes) Last(ctx context.Context, gateway string) (string, error) {
	if err := o.c.begin(ctx); err != nil {
		return "", err
	}
	if err := required("gateway", gateway); err != nil {
		return "", err
	}
	last, err := scriptOutboxLast.Run(ctx, o.c.client, []string{o.c.outbox(gateway).out()}).Text()
	if err = ignoreNil(err); err != nil {
		return "", o.c.fail(ctx, "outbox last", err)
	}
	if last == "0-0" {
		return "", nil
	}
	return last, nil
}

// Lost compares stm:{gw:G}:outdel with after.
func (o *Outboxes) Lost(ctx context.Context, gateway, after string) (bool, error) {
	if err := o.c.begin(ctx); err != nil {
		return false, err
	}
	if err := required("gateway", gateway); err != nil {
		return false, err
	}
	after, err := cursor(after)
	if err != nil {
		return false, err
	}
	lost, err := deletedAfter(o.c.client.Get(ctx, o.c.outbox(gateway).outdel()), after)
	if err != nil {
		return false, o.c.fail(ctx, "outbox lost", err)
	}
	return lost, nil
}

// Len is XLEN.
func (o *Outboxes) Len(ctx context.Context, gateway string) (int64, error) {
	if err := o.c.begin(ctx); err != nil {
		return 0, err
	}
	if err := required("gateway", gateway); err != nil {
		return 0, err
	}
	n, err := o.c.client.XLen(ctx, o.c.outbox(gateway).out()).Result()
	if err != nil {
		return 0, o.c.fail(ctx, "outbox len", err)
	}
	return n, nil
}

// Retire runs scriptOutboxRetire.
func (o *Outboxes) Retire(ctx context.Context, gateway string, fences map[int]string) (string, error) {
	if err := o.c.begin(ctx); err != nil {
		return "", err
	}
	if err := required("gateway", gateway); err != nil {
		return "", err
	}
	args := make([]any, 0, 2*len(fences))
	for p, pos := range fences {
		id, err := normID(pos)
		if err != nil {
			return "", fmt.Errorf("outbox retire %s: fence of partition %d: %w", gateway, p, err)
		}
		args = append(args, p, id)
	}
	r, err := scriptOutboxRetire.Run(ctx, o.c.client, o.keys(gateway), args...).Text()
	if err != nil {
		return "", o.c.fail(ctx, "outbox retire", err)
	}
	return r, nil
}

// Retired is HGET of the retirement hash's field r.
func (o *Outboxes) Retired(ctx context.Context, gateway string) (string, error) {
	if err := o.c.begin(ctx); err != nil {
		return "", err
	}
	if err := required("gateway", gateway); err != nil {
		return "", err
	}
	r, err := o.c.client.HGet(ctx, o.c.outbox(gateway).meta(), "r").Result()
	if err = ignoreNil(err); err != nil {
		return "", o.c.fail(ctx, "outbox retired", err)
	}
	return r, nil
}

// cursor validates an outbox cursor: "" means "0-0".
func cursor(after string) (string, error) {
	if after == "" {
		return "0-0", nil
	}
	return normID(after)
}
