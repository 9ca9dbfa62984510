package redis

import (
	"context"
	"errors"
	"fmt"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/streamerd/streamer/store"
)

// claimBatch is the COUNT of one XAUTOCLAIM call when ClaimPending has no
// limit (Redis's own default).
const claimBatch = 100

// EventLog is store.EventLog on one stream per partition, stm:{p:N}:events,
// read by the consumer group store.Group. A group found missing (the stream
// was deleted, or Redis lost its data) is recreated from the start of the
// stream and the call retried once.
type EventLog struct{ c *core }

var (
	_ store.EventLog = (*EventLog)(nil)
	_ store.Router   = (*EventLog)(nil)
)

// Partitions returns the configured number of partitions.
func (l *EventLog) Partitions() int { return l.c.partitions }

// Append appends payloads in one script (XADD MAXLEN ~ per payload), so a
// batch gets contiguous ids.
func (l *EventLog) Append(ctx context.Context, p int, payloads ...[]byte) ([]string, error) {
	if err := l.c.beginPartition(ctx, p); err != nil {
		return nil, err
	}
	if len(payloads) == 0 {
		return nil, nil
	}
	args := make([]any, 0, 1+len(payloads))
	args = append(args, l.c.maxLen)
	for _, pl := range payloads {
		args = append(args, pl)
	}
	call := &scriptCall{script: scriptLogAppend, keys: []string{l.c.events[p]}, args: args}
	l.c.runScripts(ctx, []*scriptCall{call})
	ids, err := call.cmd.StringSlice()
	if err != nil {
		return nil, l.c.fail(ctx, "append", err)
	}
	l.wrote(p, ids)
	return ids, nil
}

// AppendMany appends every element in one round trip: without Cluster in
// one scriptLogAppendMany, on Cluster (where partitions live in different
// slots) as one scriptLogAppend per element, pipelined.
func (l *EventLog) AppendMany(ctx context.Context, appends []store.PartitionAppend) {
	if err := l.c.begin(ctx); err != nil {
		for i := range appends {
			appends[i].IDs, appends[i].Err = nil, err
		}
		return
	}
	if l.c.oneNode {
		l.appendOneScript(ctx, appends)
		return
	}
	calls := make([]*scriptCall, len(appends))
	var run []*scriptCall
	for i := range appends {
		a := &appends[i]
		a.IDs, a.Err = nil, l.c.beginPartition(ctx, a.P)
		if a.Err == nil && len(a.Payloads) > 0 {
			args := make([]any, 0, 1+len(a.Payloads))
			args = append(args, l.c.maxLen)
			for _, pl := range a.Payloads {
				args = append(args, pl)
			}
			calls[i] = &scriptCall{script: scriptLogAppend, keys: []string{l.c.events[a.P]}, args: args}
			run = append(run, calls[i])
		}
	}
	l.c.runScripts(ctx, run)
	for i, call := range calls {
		if call == nil {
			continue
		}
		a := &appends[i]
		ids, err := call.cmd.StringSlice()
		if err == nil && len(ids) != len(a.Payloads) {
			err = fmt.Errorf("script returned %d ids for %d payloads", len(ids), len(a.Payloads))
		}
		if err != nil {
			a.Err = l.c.fail(ctx, "append", err)
			continue
		}
		a.IDs = ids
		l.wrote(a.P, ids)
	}
}

// wrote tells the verifier (verify.go) what was appended to partition p.
func (l *EventLog) wrote(p int, ids []string) {
	if len(ids) > 0 {
		l.c.verify.wrote(l.c.events[p], ids[len(ids)-1], "", p)
	}
}

// appendOneScript is AppendMany in one scriptLogAppendMany.
func (l *EventLog) appendOneScript(ctx context.Context, appends []store.PartitionAppend) {
	keys := make([]string, 0, len(appends))
	n := 1
	for i := range appends {
		a := &appends[i]
		a.IDs, a.Err = nil, l.c.beginPartition(ctx, a.P)
		if a.Err == nil && len(a.Payloads) > 0 {
			keys = append(keys, l.c.events[a.P])
			n += 1 + len(a.Payloads)
		}
	}
	if len(keys) == 0 {
		return
	}
	args := make([]any, 0, n)
	args = append(args, l.c.maxLen)
	for i := range appends {
		if a := &appends[i]; a.Err == nil && len(a.Payloads) > 0 {
			args = append(args, len(a.Payloads))
			for _, pl := range a.Payloads {
				args = append(args, pl)
			}
		}
	}
	call := &scriptCall{script: scriptLogAppendMany, keys: keys, args: args}
	l.c.runScripts(ctx, []*scriptCall{call})
	reply, err := call.cmd.Slice()
	if err == nil && len(reply) != len(keys) {
		err = fmt.Errorf("script returned %d results for %d partitions", len(reply), len(keys))
	}
	k := 0
	for i := range appends {
		a := &appends[i]
		if a.Err != nil || len(a.Payloads) == 0 {
			continue
		}
		if err != nil {
			a.Err = l.c.fail(ctx, "append", err)
			continue
		}
		a.IDs, a.Err = appendedIDs(reply[k], len(a.Payloads))
		if a.Err != nil {
			a.IDs, a.Err = nil, l.c.fail(ctx, "append", a.Err)
		}
		l.wrote(a.P, a.IDs)
		k++
	}
}

// appendedIDs reads one partition's element of scriptLogAppendMany's
// reply: n ids, or the error that stopped the partition.
func appendedIDs(v any, n int) ([]string, error) {
	if err, ok := v.(error); ok {
		return nil, err
	}
	list, ok := v.([]any)
	if !ok || len(list) != n {
		return nil, fmt.Errorf("script returned %T (%d ids) for %d payloads", v, len(list), n)
	}
	ids := make([]string, n)
	for i, id := range list {
		if ids[i], ok = id.(string); !ok {
			return nil, fmt.Errorf("script returned an id of type %T", id)
		}
	}
	return ids, nil
}

// Read is XREADGROUP GROUP streamer consumer COUNT count BLOCK … STREAMS key >.
func (l *EventLog) Read(ctx context.Context, p int, consumer string, count int, block time.Duration) ([]store.Entry, error) {
	entries, _, err := l.RouteRead(ctx, p, consumer, nil, nil, count, block)
	return entries, err
}

// RouteRead pipelines scriptRoute (or, with no items, XACK) and the first
// XREADGROUP of Read. On Redis Cluster, where the outboxes live in other
// slots than the partition, it appends with Outboxes.Append first: two
// round trips.
func (l *EventLog) RouteRead(ctx context.Context, p int, consumer string, items []store.OutboxItem, ack []string, count int, block time.Duration) ([]store.Entry, bool, error) {
	if err := l.c.beginPartition(ctx, p); err != nil {
		return nil, false, err
	}
	if _, cluster := l.c.client.(*goredis.ClusterClient); cluster && len(items) > 0 {
		if err := required("consumer", consumer); err != nil {
			return nil, false, err
		}
		if _, err := normIDs(ack); err != nil {
			return nil, false, err
		}
		if _, err := (&Outboxes{l.c}).Append(ctx, items); err != nil {
			return nil, false, err
		}
		items = nil
	}
	route := [1]store.PartitionRoute{{P: p, Items: items, Ack: ack}}
	routed, err := l.routeRead(ctx, consumer, route[:], count, block)
	return route[0].Entries, routed, err
}

// RouteReadMany is RouteRead for many partitions: one scriptRoute and one
// XREADGROUP over every partition's stream, pipelined. It is offered only
// without Cluster (Backend.Multi).
func (l *EventLog) RouteReadMany(ctx context.Context, consumer string, routes []store.PartitionRoute, count int, block time.Duration) (bool, error) {
	if err := l.c.begin(ctx); err != nil {
		return false, err
	}
	seen := make(map[int]bool, len(routes))
	for _, r := range routes {
		if err := l.c.beginPartition(ctx, r.P); err != nil {
			return false, err
		}
		if seen[r.P] {
			return false, fmt.Errorf("%w: partition %d named twice", store.ErrInvalid, r.P)
		}
		seen[r.P] = true
	}
	return l.routeRead(ctx, consumer, routes, count, block)
}

// routeRead is RouteRead and RouteReadMany once the partitions are checked.
func (l *EventLog) routeRead(ctx context.Context, consumer string, routes []store.PartitionRoute, count int, block time.Duration) (bool, error) {
	if err := required("consumer", consumer); err != nil {
		return false, err
	}
	acks := make([][]string, len(routes))
	writes := false
	for i := range routes {
		r := &routes[i]
		r.Entries = nil
		var err error
		if acks[i], err = normIDs(r.Ack); err != nil {
			return false, err
		}
		if err := checkItems(r.Items); err != nil {
			return false, err
		}
		writes = writes || len(acks[i]) > 0 || len(r.Items) > 0
	}
	if len(routes) == 0 {
		return true, nil
	}
	var keys []string
	var args []any
	if writes {
		keys, args = l.routeArgs(routes, acks)
	}
	op, routed := "read", !writes
	_, err := l.c.poll(ctx, block, func(block time.Duration) ([]store.Entry, error) {
		var got []streamReply
		// A blocking read of several partitions is followed, in the same
		// round trip, by the same read without BLOCK (wakeUpReads).
		follow := l.c.raw && block >= 0 && len(routes) > 1
		err := l.withGroups(ctx, routes, func() error {
			if routed && !follow {
				var err error
				got, err = l.xreadgroup(ctx, nil, consumer, routes, count, block).result()
				return err
			}
			pipe := l.c.client.Pipeline()
			var wrote *goredis.Cmd
			if !routed {
				wrote = scriptRoute.EvalSha(ctx, pipe, keys, args...)
			}
			read := l.xreadgroup(ctx, pipe, consumer, routes, count, block)
			var more streamsCmd
			if follow {
				more = l.xreadgroup(ctx, pipe, consumer, routes, count, -1)
			}
			_, _ = pipe.Exec(ctx) // errors are per command
			if !routed {
				err := wrote.Err()
				if isNoScript(err) { // script cache flushed since New
					err = scriptRoute.Run(ctx, l.c.client, keys, args...).Err()
				}
				if err != nil {
					op = "route"
					return err
				}
				op, routed = "read", true // done: later slices only read
			}
			var err error
			got, err = read.result()
			if err == nil && more != nil {
				var next []streamReply
				next, err = more.result()
				got = appendReads(got, next)
			}
			return err
		})
		if err != nil {
			return nil, ignoreNil(err)
		}
		// poll only needs to know whether anything came.
		var some []store.Entry
		for _, st := range got {
			for i := range routes {
				if l.c.events[routes[i].P] == st.stream {
					routes[i].Entries = st.entries
					some = st.entries
				}
			}
		}
		return some, nil
	})
	if err != nil {
		for i := range routes {
			routes[i].Entries = nil
		}
		return routed, l.c.fail(ctx, op, err)
	}
	return routed, nil
}

// xreadgroup returns the command XREADGROUP GROUP streamer consumer COUNT
// count BLOCK block STREAMS <the routes' partitions> > … >, queued on pipe
// (nil: sent at once). block < 0: no BLOCK.
//
// It is never retried by go-redis: a retry of a read of new entries after
// a network error or a timeout would leave the first attempt's entries
// pending, held by no batch. Off Cluster it is a raw command (resp.go),
// which go-redis does not retry; on Cluster it is go-redis's XReadGroup,
// which go-redis treats as the blocking read it is (it waits for the reply
// past its read timeout and does not retry it on a timeout).
func (l *EventLog) xreadgroup(ctx context.Context, pipe goredis.Pipeliner, consumer string, routes []store.PartitionRoute, count int, block time.Duration) streamsCmd {
	if l.c.raw {
		args := readArgs(count, block, 2*len(routes), "xreadgroup", "group", store.Group, consumer)
		for _, r := range routes {
			args = append(args, l.c.eventArgs[r.P])
		}
		for range routes {
			args = append(args, ">")
		}
		return rawStreamsCmd(ctx, l.c.client, pipe, args)
	}
	streams := make([]string, 2*len(routes))
	for i, r := range routes {
		streams[i] = l.c.events[r.P]
		streams[len(routes)+i] = ">"
	}
	args := &goredis.XReadGroupArgs{Group: store.Group, Consumer: consumer, Streams: streams, Count: int64(max(count, 0)), Block: block}
	if pipe == nil {
		return typedStreams{l.c.client.XReadGroup(ctx, args)}
	}
	return typedStreams{pipe.XReadGroup(ctx, args)}
}

// routeArgs returns scriptRoute's keys and arguments for routes, whose
// normalised acknowledgements are acks: items grouped by gateway, in order
// of first appearance, each gateway's in item order.
func (l *EventLog) routeArgs(routes []store.PartitionRoute, acks [][]string) ([]string, []any) {
	order, byGateway := []string{}, map[string][]store.OutboxItem{}
	nitems, nacks, nparts := 0, 0, 0
	for i, r := range routes {
		for _, it := range r.Items {
			if _, ok := byGateway[it.Gateway]; !ok {
				order = append(order, it.Gateway)
			}
			byGateway[it.Gateway] = append(byGateway[it.Gateway], it)
		}
		nitems += len(r.Items)
		nacks += len(acks[i])
		if len(acks[i]) > 0 {
			nparts++
		}
	}
	keys := make([]string, 0, nparts+4*len(order))
	args := make([]any, 0, 4+nparts+nacks+len(order)+3*nitems)
	args = append(args, store.Group, l.c.outboxMaxLen, l.c.outboxMaxBytes, nparts)
	for i, r := range routes {
		if len(acks[i]) == 0 {
			continue
		}
		keys = append(keys, l.c.events[r.P])
		args = append(args, len(acks[i]))
		for _, id := range acks[i] {
			args = append(args, id)
		}
	}
	for _, gw := range order {
		k := l.c.outbox(gw)
		keys = append(keys, k[:]...)
		args = append(args, len(byGateway[gw]))
		for _, it := range byGateway[gw] {
			args = appendItemArgs(args, it)
		}
	}
	return keys, args
}

// Ack is XACK.
func (l *EventLog) Ack(ctx context.Context, p int, ids ...string) error {
	if err := l.c.beginPartition(ctx, p); err != nil {
		return err
	}
	norm, err := normIDs(ids)
	if err != nil {
		return err
	}
	if len(norm) == 0 {
		return nil
	}
	err = l.withGroup(ctx, p, func() error {
		return l.c.client.XAck(ctx, l.c.events[p], store.Group, norm...).Err()
	})
	if err != nil {
		return l.c.fail(ctx, "ack", err)
	}
	return nil
}

// ClaimPending loops XAUTOCLAIM from 0-0 over its cursor. Redis (>= 7.0)
// removes the pending entries retention has deleted and does not return them.
func (l *EventLog) ClaimPending(ctx context.Context, p int, consumer string, minIdle time.Duration, count int) ([]store.Entry, error) {
	if err := l.c.beginPartition(ctx, p); err != nil {
		return nil, err
	}
	if err := required("consumer", consumer); err != nil {
		return nil, err
	}
	args := &goredis.XAutoClaimArgs{
		Stream:   l.c.events[p],
		Group:    store.Group,
		MinIdle:  ceilMs(max(minIdle, 0)),
		Start:    "0-0",
		Consumer: consumer,
	}
	var out []store.Entry
	for {
		args.Count = claimBatch
		if count > 0 {
			args.Count = int64(count - len(out))
		}
		var msgs []goredis.XMessage
		var next string
		err := l.withGroup(ctx, p, func() (err error) {
			msgs, next, err = l.c.client.XAutoClaim(ctx, args).Result()
			return err
		})
		if err != nil {
			return nil, l.c.fail(ctx, "claim pending", err)
		}
		out = append(out, entries(msgs)...)
		if next == "0-0" || (count > 0 && len(out) >= count) {
			return out, nil
		}
		if err := l.c.begin(ctx); err != nil {
			return nil, err
		}
		args.Start = next
	}
}

// Pending is the count of XPENDING's summary.
func (l *EventLog) Pending(ctx context.Context, p int) (int64, error) {
	if err := l.c.beginPartition(ctx, p); err != nil {
		return 0, err
	}
	var n int64
	err := l.withGroup(ctx, p, func() error {
		sum, err := l.c.client.XPending(ctx, l.c.events[p], store.Group).Result()
		if err == nil {
			n = sum.Count
		}
		return err
	})
	if err != nil {
		return 0, l.c.fail(ctx, "pending", err)
	}
	return n, nil
}

// DeadLetter appends {id, p, reason} to stm:{p:N}:dead (XADD MAXLEN ~).
func (l *EventLog) DeadLetter(ctx context.Context, p int, e store.Entry, reason string) error {
	if err := l.c.beginPartition(ctx, p); err != nil {
		return err
	}
	err := l.c.client.XAdd(ctx, &goredis.XAddArgs{
		Stream: l.c.keys.Dead(p),
		MaxLen: l.c.maxLen,
		Approx: true,
		Values: []any{"id", e.ID, "p", e.Payload, "reason", reason},
	}).Err()
	if err != nil {
		return l.c.fail(ctx, "dead letter", err)
	}
	return nil
}

// DeadLetters is XRANGE stm:{p:N}:dead - + COUNT count.
func (l *EventLog) DeadLetters(ctx context.Context, p int, count int) ([]store.DeadLetter, error) {
	if err := l.c.beginPartition(ctx, p); err != nil {
		return nil, err
	}
	key := l.c.keys.Dead(p)
	var cmd *goredis.XMessageSliceCmd
	if count > 0 {
		cmd = l.c.client.XRangeN(ctx, key, "-", "+", int64(count))
	} else {
		cmd = l.c.client.XRange(ctx, key, "-", "+")
	}
	msgs, err := cmd.Result()
	if err != nil {
		return nil, l.c.fail(ctx, "dead letters", err)
	}
	out := make([]store.DeadLetter, 0, len(msgs))
	for _, m := range msgs {
		out = append(out, store.DeadLetter{
			ID:       m.ID,
			Original: store.Entry{ID: string(field(m.Values, "id")), Payload: field(m.Values, "p")},
			Reason:   string(field(m.Values, "reason")),
		})
	}
	return out, nil
}

// withGroup runs call and, if Redis answers that the consumer group does not
// exist, creates it (from the start of the stream, creating the stream if
// needed) and runs call again.
func (l *EventLog) withGroup(ctx context.Context, p int, call func() error) error {
	err := call()
	if !isNoGroup(err) {
		return err
	}
	key := l.c.events[p]
	if err := l.c.client.XGroupCreateMkStream(ctx, key, store.Group, "0").Err(); err != nil && !isBusyGroup(err) {
		return fmt.Errorf("recreating consumer group %s of %s: %w", store.Group, key, err)
	}
	l.c.log.Warn("redis: consumer group was missing and has been recreated from the start of the stream",
		"stream", key, "group", store.Group)
	return call()
}

// withGroups is withGroup for a call reading the partitions of routes: on
// NOGROUP it recreates the group of each of them, then calls again.
func (l *EventLog) withGroups(ctx context.Context, routes []store.PartitionRoute, call func() error) error {
	if len(routes) == 1 {
		return l.withGroup(ctx, routes[0].P, call)
	}
	err := call()
	if !isNoGroup(err) {
		return err
	}
	for _, r := range routes {
		key := l.c.events[r.P]
		created, err := l.c.client.XGroupCreateMkStream(ctx, key, store.Group, "0").Result()
		if err != nil && !isBusyGroup(err) {
			return fmt.Errorf("recreating consumer group %s of %s: %w", store.Group, key, err)
		}
		if err == nil && created != "" {
			l.c.log.Warn("redis: consumer group was missing and has been recreated from the start of the stream",
				"stream", key, "group", store.Group)
		}
	}
	return call()
}

// normIDs validates stream ids and returns them in canonical form.
func normIDs(ids []string) ([]string, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	norm := make([]string, len(ids))
	for i, id := range ids {
		var err error
		if norm[i], err = normID(id); err != nil {
			return nil, err
		}
	}
	return norm, nil
}

// ignoreNil turns go-redis's "no reply" (a blocking read that timed out, a
// missing key) into success.
func ignoreNil(err error) error {
	if errors.Is(err, goredis.Nil) {
		return nil
	}
	return err
}
