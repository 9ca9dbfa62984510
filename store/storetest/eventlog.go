package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/streamerd/streamer/store"
)

var eventLogScenarios = []scenario{
	{"append returns strictly increasing ids of the form ms-seq", testLogIDs},
	{"partitions are independent streams", testLogPartitions},
	{"read delivers each entry to the group once", testLogReadOnce},
	{"pending counts delivered entries until acked", testLogPendingAck},
	{"blocking read wakes on append", testLogReadWakes},
	{"blocking read returns nothing on timeout", testLogReadTimeout},
	{"blocking read returns on context cancel", testLogReadCancel},
	{"claim pending moves idle entries to a new consumer", testLogClaim},
	{"claim pending drops entries removed by retention", testLogClaimTrimmed},
	{"retention keeps the newest MaxLen entries", testLogRetention},
	{"dead letters keep the entry and reason without acking it", testLogDeadLetters},
	{"partition out of range is rejected", testLogBadPartition},
	{"malformed ids and empty consumers are rejected", testLogBadArgs},
	{"concurrent appenders keep per-partition id order", testLogConcurrent},
	{"append many appends each partition's batch on its own", testLogAppendMany},
	{"route-read appends, then acknowledges, then reads", testLogRouteRead},
	{"route-read-many finishes and reads many partitions at once", testLogRouteReadMany},
	{"route-read drops the items a retirement fenced off", testLogRouteReadFenced},
	{"route-read canceled midway routes all of its batch or none", testLogRouteReadCanceled},
}

// lastPartition is the highest partition number, exercising the bound.
func (e *env) lastPartition() int { return e.b.Log.Partitions() - 1 }

// appendLog appends n payloads "<prefix>-<i>" to partition p, in batches,
// and returns ids and payloads.
func (e *env) appendLog(t *testing.T, p int, prefix string, n int) ([]string, [][]byte) {
	t.Helper()
	pls := payloads(prefix, n)
	var ids []string
	for batch := range slices.Chunk(pls, 100) {
		ids = append(ids, try(e.b.Log.Append(t.Context(), p, batch...)).must(t)...)
	}
	return ids, pls
}

func testLogIDs(t *testing.T, e *env) {
	ctx := t.Context()
	if n := e.b.Log.Partitions(); n < 1 {
		t.Fatalf("Partitions() = %d, want at least 1", n)
	}
	before := time.Now()
	ids := try(e.b.Log.Append(ctx, 0, []byte("a"), []byte("b"), []byte("c"))).must(t)
	if len(ids) != 3 {
		t.Fatalf("Append of 3 payloads returned %d ids", len(ids))
	}
	more := try(e.b.Log.Append(ctx, 0, []byte("d"))).must(t)
	all := append(ids, more...)
	checkIncreasing(t, all)
	for _, id := range all {
		ms, _, _ := store.ParseID(id)
		if at := time.UnixMilli(int64(ms)); at.Before(before.Add(-time.Minute)) || at.After(time.Now().Add(time.Minute)) {
			t.Errorf("id %s: timestamp %v is not close to the time of Append", id, at)
		}
	}
	none, err := e.b.Log.Append(ctx, 0)
	if err != nil || len(none) != 0 {
		t.Errorf("Append of no payloads = %v, %v; want no ids, nil", none, err)
	}
}

func testLogPartitions(t *testing.T, e *env) {
	ctx := t.Context()
	last := e.lastPartition()
	if last == 0 {
		t.Skip("backend has a single partition")
	}
	ids0, pls0 := e.appendLog(t, 0, "zero", 2)
	idsN, plsN := e.appendLog(t, last, "last", 3)
	checkEntries(t, try(e.b.Log.Read(ctx, 0, "c", 0, 0)).must(t), ids0, pls0)
	checkEntries(t, try(e.b.Log.Read(ctx, last, "c", 0, 0)).must(t), idsN, plsN)
	if n := try(e.b.Log.Pending(ctx, 0)).must(t); n != 2 {
		t.Errorf("Pending(0) = %d, want 2", n)
	}
}

func testLogReadOnce(t *testing.T, e *env) {
	ctx := t.Context()
	if got := try(e.b.Log.Read(ctx, 0, "a", 10, 0)).must(t); got != nil {
		t.Fatalf("Read of an empty partition = %v, want nil", got)
	}
	ids, pls := e.appendLog(t, 0, "x", 4)
	ids = append(ids, try(e.b.Log.Append(ctx, 0, nil, []byte{})).must(t)...)
	pls = append(pls, []byte{}, []byte{})

	checkEntries(t, try(e.b.Log.Read(ctx, 0, "a", 2, 0)).must(t), ids[:2], pls[:2])
	checkEntries(t, try(e.b.Log.Read(ctx, 0, "b", 0, 0)).must(t), ids[2:], pls[2:])
	if got := try(e.b.Log.Read(ctx, 0, "a", 0, 0)).must(t); got != nil {
		t.Errorf("Read after everything was delivered = %v, want nil", entryIDs(got))
	}
	more := try(e.b.Log.Append(ctx, 0, []byte("late"))).must(t)
	checkEntries(t, try(e.b.Log.Read(ctx, 0, "c", 0, 0)).must(t), more, [][]byte{[]byte("late")})
}

func testLogPendingAck(t *testing.T, e *env) {
	ctx := t.Context()
	ids, _ := e.appendLog(t, 0, "x", 3)
	wantPending := func(n int64) {
		t.Helper()
		if got := try(e.b.Log.Pending(ctx, 0)).must(t); got != n {
			t.Fatalf("Pending = %d, want %d", got, n)
		}
	}
	wantPending(0)
	try(e.b.Log.Read(ctx, 0, "a", 0, 0)).must(t)
	wantPending(3)
	ok(t, e.b.Log.Ack(ctx, 0, ids[0]))
	wantPending(2)
	ok(t, e.b.Log.Ack(ctx, 0, ids[0], "1-1")) // already acked, never existed
	wantPending(2)
	ok(t, e.b.Log.Ack(ctx, 0))
	ok(t, e.b.Log.Ack(ctx, 0, ids[1:]...))
	wantPending(0)
}

func testLogReadWakes(t *testing.T, e *env) {
	ctx := t.Context()
	res := background(func() ([]store.Entry, error) { return e.b.Log.Read(ctx, 0, "a", 10, longBlock) })
	e.waitBlocked(t, 1)
	ids := try(e.b.Log.Append(ctx, 0, []byte("wake"))).must(t)
	r := await(t, res)
	ok(t, r.err)
	checkEntries(t, r.entries, ids, [][]byte{[]byte("wake")})
}

func testLogReadTimeout(t *testing.T, e *env) {
	start := time.Now()
	got, err := e.b.Log.Read(t.Context(), 0, "a", 10, shortTTL)
	if err != nil || got != nil {
		t.Fatalf("Read on an empty partition = %v, %v; want nil, nil", got, err)
	}
	if took := time.Since(start); took < shortTTL/2 {
		t.Errorf("Read with block %v returned after %v: it did not block", shortTTL, took)
	}
}

func testLogReadCancel(t *testing.T, e *env) {
	ctx, cancel := context.WithCancel(t.Context())
	res := background(func() ([]store.Entry, error) { return e.b.Log.Read(ctx, 0, "a", 10, longBlock) })
	e.waitBlocked(t, 1)
	cancel()
	r := await(t, res)
	wantErr(t, "Read after cancel", r.err, context.Canceled)
	if r.entries != nil {
		t.Errorf("Read after cancel returned entries %v", entryIDs(r.entries))
	}
}

func testLogClaim(t *testing.T, e *env) {
	ctx := t.Context()
	ids, pls := e.appendLog(t, 0, "x", 3)
	checkEntries(t, try(e.b.Log.Read(ctx, 0, "old", 0, 0)).must(t), ids, pls)
	if got := try(e.b.Log.ClaimPending(ctx, 0, "new", time.Hour, 0)).must(t); len(got) != 0 {
		t.Fatalf("ClaimPending(minIdle 1h) claimed fresh entries %v", entryIDs(got))
	}
	var claimed []store.Entry
	eventually(t, "claimable after 50ms idle", func() bool {
		claimed = try(e.b.Log.ClaimPending(ctx, 0, "new", claimIdle, 0)).must(t)
		return len(claimed) > 0
	})
	checkEntries(t, claimed, ids, pls)
	if got := try(e.b.Log.ClaimPending(ctx, 0, "third", time.Hour, 0)).must(t); len(got) != 0 {
		t.Fatalf("claiming did not reset idle time: claimed again %v", entryIDs(got))
	}
	checkEntries(t, try(e.b.Log.ClaimPending(ctx, 0, "third", 0, 2)).must(t), ids[:2], pls[:2])
	if got := try(e.b.Log.Read(ctx, 0, "new", 0, 0)).must(t); got != nil {
		t.Errorf("Read redelivered claimed entries %v", entryIDs(got))
	}
	if n := try(e.b.Log.Pending(ctx, 0)).must(t); n != 3 {
		t.Errorf("Pending after claims = %d, want 3", n)
	}
	ok(t, e.b.Log.Ack(ctx, 0, ids[1]))
	checkEntries(t, try(e.b.Log.ClaimPending(ctx, 0, "fourth", 0, 0)).must(t), []string{ids[0], ids[2]}, [][]byte{pls[0], pls[2]})
	ok(t, e.b.Log.Ack(ctx, 0, ids...))
	if got := try(e.b.Log.ClaimPending(ctx, 0, "fourth", 0, 0)).must(t); len(got) != 0 {
		t.Errorf("ClaimPending returned acked entries %v", entryIDs(got))
	}
}

func testLogClaimTrimmed(t *testing.T, e *env) {
	ctx := t.Context()
	e.appendLog(t, 0, "early", 5)
	try(e.b.Log.Read(ctx, 0, "old", 0, 0)).must(t)
	e.appendLog(t, 0, "late", int(3*e.opts.LogMaxLen+200))
	if n := try(e.b.Log.Pending(ctx, 0)).must(t); n != 5 {
		t.Errorf("Pending after retention deleted pending entries = %d, want 5 (still listed)", n)
	}
	if got := try(e.b.Log.ClaimPending(ctx, 0, "new", 0, 0)).must(t); len(got) != 0 {
		t.Errorf("ClaimPending returned deleted entries %v", entryIDs(got))
	}
	if n := try(e.b.Log.Pending(ctx, 0)).must(t); n != 0 {
		t.Errorf("Pending after claiming deleted entries = %d, want 0", n)
	}
}

func testLogRetention(t *testing.T, e *env) {
	appended := int(3*e.opts.LogMaxLen + 200)
	ids, pls := e.appendLog(t, 0, "x", appended)
	got := try(e.b.Log.Read(t.Context(), 0, "a", 0, 0)).must(t)
	kept := checkRetained(t, "partition", len(got), e.opts.LogMaxLen, appended)
	checkEntries(t, got, ids[appended-kept:], pls[appended-kept:])
}

func testLogDeadLetters(t *testing.T, e *env) {
	ctx := t.Context()
	ids, pls := e.appendLog(t, 0, "bad", 2)
	read := try(e.b.Log.Read(ctx, 0, "a", 0, 0)).must(t)
	checkEntries(t, read, ids, pls)
	ok(t, e.b.Log.DeadLetter(ctx, 0, read[0], "bad json"))
	ok(t, e.b.Log.DeadLetter(ctx, 0, read[1], ""))

	dead := try(e.b.Log.DeadLetters(ctx, 0, 0)).must(t)
	if len(dead) != 2 {
		t.Fatalf("DeadLetters = %d entries, want 2", len(dead))
	}
	checkIncreasing(t, []string{dead[0].ID, dead[1].ID})
	for i, reason := range []string{"bad json", ""} {
		checkEntries(t, []store.Entry{dead[i].Original}, ids[i:i+1], pls[i:i+1])
		if dead[i].Reason != reason {
			t.Errorf("dead letter %d reason = %q, want %q", i, dead[i].Reason, reason)
		}
	}
	if first := try(e.b.Log.DeadLetters(ctx, 0, 1)).must(t); len(first) != 1 || first[0].ID != dead[0].ID {
		t.Errorf("DeadLetters(count 1) = %+v, want the oldest only", first)
	}
	if n := try(e.b.Log.Pending(ctx, 0)).must(t); n != 2 {
		t.Errorf("Pending after DeadLetter = %d, want 2: dead-lettering must not ack", n)
	}
	if last := e.lastPartition(); last > 0 {
		if other := try(e.b.Log.DeadLetters(ctx, last, 0)).must(t); len(other) != 0 {
			t.Errorf("partition %d has dead letters %+v of partition 0", last, other)
		}
	}
}

func testLogBadPartition(t *testing.T, e *env) {
	ctx := t.Context()
	for _, p := range []int{-1, e.b.Log.Partitions()} {
		calls := map[string]error{}
		_, calls["Append"] = e.b.Log.Append(ctx, p, []byte("x"))
		_, calls["Read"] = e.b.Log.Read(ctx, p, "a", 1, 0)
		calls["Ack"] = e.b.Log.Ack(ctx, p, "1-1")
		_, calls["ClaimPending"] = e.b.Log.ClaimPending(ctx, p, "a", 0, 1)
		_, calls["Pending"] = e.b.Log.Pending(ctx, p)
		calls["DeadLetter"] = e.b.Log.DeadLetter(ctx, p, store.Entry{ID: "1-1"}, "r")
		_, calls["DeadLetters"] = e.b.Log.DeadLetters(ctx, p, 1)
		for name, err := range calls {
			wantErr(t, fmt.Sprintf("%s(partition %d)", name, p), err, store.ErrBadPartition)
		}
	}
}

func testLogBadArgs(t *testing.T, e *env) {
	ctx := t.Context()
	ids, _ := e.appendLog(t, 0, "x", 1)
	try(e.b.Log.Read(ctx, 0, "a", 0, 0)).must(t)
	wantErr(t, "Ack(malformed id)", e.b.Log.Ack(ctx, 0, ids[0], "not-an-id"), store.ErrBadID)
	if n := try(e.b.Log.Pending(ctx, 0)).must(t); n != 1 {
		t.Errorf("Ack with a malformed id acked some: Pending = %d, want 1", n)
	}
	_, err := e.b.Log.Read(ctx, 0, "", 1, 0)
	wantErr(t, "Read(empty consumer)", err, store.ErrInvalid)
	_, err = e.b.Log.ClaimPending(ctx, 0, "", 0, 1)
	wantErr(t, "ClaimPending(empty consumer)", err, store.ErrInvalid)
}

func testLogConcurrent(t *testing.T, e *env) {
	const writers = 4
	perWriter := min(int(e.opts.LogMaxLen)/writers, 25)
	ctx := t.Context()
	errs := make(chan error, writers)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			prev := ""
			for i := 0; i < perWriter; i += 2 {
				batch := payloads(fmt.Sprintf("w%d", w), perWriter)[i:min(i+2, perWriter)]
				ids, err := e.b.Log.Append(ctx, 0, batch...)
				if err != nil {
					errs <- err
					return
				}
				for _, id := range ids {
					if store.CompareIDs(prev, id) >= 0 {
						errs <- fmt.Errorf("writer %d got id %s after %s", w, id, prev)
						return
					}
					prev = id
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	got := try(e.b.Log.Read(ctx, 0, "a", 0, 0)).must(t)
	if len(got) != writers*perWriter {
		t.Fatalf("read %d entries, want %d", len(got), writers*perWriter)
	}
	checkIncreasing(t, entryIDs(got))
	next := make([]int, writers)
	for _, entry := range got {
		var w, i int
		if _, err := fmt.Sscanf(string(entry.Payload), "w%d-%d", &w, &i); err != nil || w < 0 || w >= writers || i != next[w] {
			t.Fatalf("entry %s payload %q out of its writer's order (want index %v)", entry.ID, entry.Payload, next)
		}
		next[w]++
	}
}

func testLogAppendMany(t *testing.T, e *env) {
	ctx := t.Context()
	last := e.lastPartition()
	first, firstPls := e.appendLog(t, last, "before", 1)
	appends := []store.PartitionAppend{
		{P: 0, Payloads: payloads("a", 3)},
		{P: last, Payloads: payloads("b", 2)},
		{P: last + 1, Payloads: payloads("bad", 1)},
		{P: 0, Payloads: payloads("c", 1)},
		{P: 0},
	}
	e.b.Log.AppendMany(ctx, appends)
	for i, a := range appends {
		switch {
		case a.P == last+1:
			wantErr(t, "AppendMany element of a partition out of range", a.Err, store.ErrBadPartition)
			if a.IDs != nil {
				t.Errorf("element %d of a bad partition got ids %v", i, a.IDs)
			}
		case a.Err != nil:
			t.Fatalf("AppendMany element %d (partition %d): %v", i, a.P, a.Err)
		case len(a.IDs) != len(a.Payloads):
			t.Fatalf("AppendMany element %d: %d ids for %d payloads", i, len(a.IDs), len(a.Payloads))
		}
	}
	// Expected content per partition: the earlier entry, then the elements in order.
	wantIDs := map[int][]string{last: first}
	wantPls := map[int][][]byte{last: firstPls}
	for _, a := range appends {
		if a.Err == nil {
			wantIDs[a.P] = append(wantIDs[a.P], a.IDs...)
			wantPls[a.P] = append(wantPls[a.P], a.Payloads...)
		}
	}
	for _, p := range slices.Compact([]int{0, last}) {
		checkIncreasing(t, wantIDs[p])
		checkEntries(t, try(e.b.Log.Read(ctx, p, "r", 0, 0)).must(t), wantIDs[p], wantPls[p])
	}
	e.b.Log.AppendMany(ctx, nil)
}

// wantOutboxes checks that each gateway's outbox holds exactly the payloads
// of want, in order, after call.
func (e *env) wantOutboxes(t *testing.T, call string, want map[string][]string) {
	t.Helper()
	for gw, payloads := range want {
		got := try(e.b.Outboxes.Read(t.Context(), gw, "", 0, 0)).must(t)
		if len(got) != len(payloads) {
			t.Fatalf("outbox %s after %s: %d entries, want %v", gw, call, len(got), payloads)
		}
		for i, w := range payloads {
			if string(got[i].Payload) != w {
				t.Errorf("outbox %s entry %d after %s = %q, want %q", gw, i, call, got[i].Payload, w)
			}
		}
	}
}

func testLogRouteReadFenced(t *testing.T, e *env) {
	ctx := t.Context()
	ids, _ := e.appendLog(t, 0, "x", 3)
	try(e.b.Log.Read(ctx, 0, "a", 10, 0)).must(t)
	try(e.b.Outboxes.Retire(ctx, "g", map[int]string{0: ids[1]})).must(t)
	items := []store.OutboxItem{
		{Gateway: "g", Payload: []byte("before"), Partition: 0, Position: ids[0]},
		{Gateway: "h", Payload: []byte("other gateway"), Partition: 0, Position: ids[0]},
		{Gateway: "g", Payload: []byte("after"), Partition: 0, Position: ids[2]},
	}
	_, routed, err := e.b.Router.RouteRead(ctx, 0, "a", items, ids, 10, 0)
	ok(t, err)
	if !routed {
		t.Fatal("RouteRead succeeded with routed false")
	}
	e.wantOutboxes(t, "RouteRead", map[string][]string{"g": {"after"}, "h": {"other gateway"}})
	if n := try(e.b.Log.Pending(ctx, 0)).must(t); n != 0 {
		t.Errorf("Pending = %d after RouteRead acknowledged everything", n)
	}
	if e.b.Multi == nil {
		return
	}
	try(e.b.Outboxes.Retire(ctx, "g", map[int]string{0: ids[2]})).must(t)
	routes := []store.PartitionRoute{{P: 0, Items: []store.OutboxItem{
		{Gateway: "g", Payload: []byte("fenced"), Partition: 0, Position: ids[1]},
		{Gateway: "g", Payload: []byte("kept"), Partition: 0, Position: ids[2]},
	}}}
	try(e.b.Multi.RouteReadMany(ctx, "a", routes, 10, 0)).must(t)
	e.wantOutboxes(t, "RouteReadMany", map[string][]string{"g": {"kept"}})
}

func testLogRouteRead(t *testing.T, e *env) {
	ctx := t.Context()
	wantPending := func(n int64) {
		t.Helper()
		if got := try(e.b.Log.Pending(ctx, 0)).must(t); got != n {
			t.Fatalf("Pending = %d, want %d", got, n)
		}
	}
	routeRead := func(items []store.OutboxItem, ack []string, block time.Duration) []store.Entry {
		t.Helper()
		entries, routed, err := e.b.Router.RouteRead(ctx, 0, "a", items, ack, 10, block)
		ok(t, err)
		if !routed {
			t.Fatalf("RouteRead succeeded with routed false")
		}
		return entries
	}
	ids, pls := e.appendLog(t, 0, "x", 3)
	entries, routed, err := e.b.Router.RouteRead(ctx, 0, "a", nil, nil, 2, 0)
	ok(t, err)
	if !routed {
		t.Errorf("RouteRead with nothing to route: routed false")
	}
	checkEntries(t, entries, ids[:2], pls[:2])
	wantPending(2)

	// Outbox entries of the batch, then its ack, then the next read.
	items := []store.OutboxItem{
		{Gateway: "g", Payload: []byte("g1")}, {Gateway: "h", Payload: []byte("h1")}, {Gateway: "g", Payload: []byte("g2")},
	}
	checkEntries(t, routeRead(items, ids[:2], 0), ids[2:], pls[2:])
	wantPending(1)
	e.wantOutboxes(t, "RouteRead", map[string][]string{"g": {"g1", "g2"}, "h": {"h1"}})

	// An item without gateway, or a malformed id: nothing appended, acked or read.
	more, morePls := e.appendLog(t, 0, "y", 1)
	_, routed, err = e.b.Router.RouteRead(ctx, 0, "a", []store.OutboxItem{{Gateway: "g", Payload: []byte("no")}, {}}, ids[2:], 10, 0)
	wantErr(t, "RouteRead with an item naming no gateway", err, store.ErrInvalid)
	if routed {
		t.Errorf("RouteRead with an item naming no gateway: routed true")
	}
	_, routed, err = e.b.Router.RouteRead(ctx, 0, "a", nil, []string{ids[2], "nope"}, 10, 0)
	wantErr(t, "RouteRead with a malformed id", err, store.ErrBadID)
	if routed {
		t.Errorf("RouteRead with a malformed id: routed true")
	}
	wantPending(1)
	e.wantLen(t, "g", 2)

	// Everything takes effect before a blocking read waits; the read wakes on append.
	checkEntries(t, routeRead(nil, ids[2:], 0), more, morePls)
	wantPending(1)
	res := background(func() ([]store.Entry, error) {
		entries, routed, err := e.b.Router.RouteRead(ctx, 0, "a", []store.OutboxItem{{Gateway: "h", Payload: []byte("h2")}}, more, 10, longBlock)
		if err == nil && !routed {
			err = errors.New("routed false")
		}
		return entries, err
	})
	eventually(t, "the writes of a blocked RouteRead", func() bool {
		n, err := e.b.Log.Pending(ctx, 0)
		l, lerr := e.b.Outboxes.Len(ctx, "h")
		return err == nil && lerr == nil && n == 0 && l == 2
	})
	last, lastPls := e.appendLog(t, 0, "z", 1)
	r := await(t, res)
	ok(t, r.err)
	checkEntries(t, r.entries, last, lastPls)
	wantPending(1)

	// Routed, then the read is cancelled: routed true with the error.
	cancelled, cancel := context.WithCancel(ctx)
	res = background(func() ([]store.Entry, error) {
		entries, routed, err := e.b.Router.RouteRead(cancelled, 0, "a", []store.OutboxItem{{Gateway: "h", Payload: []byte("h3")}}, last, 10, longBlock)
		if err != nil && !routed {
			err = fmt.Errorf("routed false after a cancelled read: %w", err)
		}
		return entries, err
	})
	// Both writes, the outbox append and the acknowledgement: on Redis Cluster
	// they are separate round trips, and cancelling between them leaves the
	// batch unacknowledged (routed false), which is a different case.
	eventually(t, "the writes of a blocked RouteRead", func() bool {
		n, err := e.b.Log.Pending(ctx, 0)
		l, lerr := e.b.Outboxes.Len(ctx, "h")
		return err == nil && lerr == nil && n == 0 && l == 3
	})
	cancel()
	r = await(t, res)
	wantErr(t, "RouteRead cancelled while reading", r.err, context.Canceled)
	wantPending(0)
}

func testLogRouteReadMany(t *testing.T, e *env) {
	if e.b.Multi == nil {
		t.Skip("this backend offers no MultiRouter (Backend.Multi is nil): nothing to test")
	}
	ctx := t.Context()
	m, last := e.b.Multi, e.lastPartition()
	if last == 0 {
		t.Skip("the backend has one partition: RouteReadMany needs two")
	}
	pending := func(p int) int64 { t.Helper(); return try(e.b.Log.Pending(ctx, p)).must(t) }
	ids0, pls0 := e.appendLog(t, 0, "a", 3)
	idsL, plsL := e.appendLog(t, last, "b", 2)

	// A first read of both: up to count entries of each.
	routes := []store.PartitionRoute{{P: 0}, {P: last}}
	routed, err := m.RouteReadMany(ctx, "c", routes, 2, 0)
	ok(t, err)
	if !routed {
		t.Errorf("RouteReadMany with nothing to route: routed false")
	}
	checkEntries(t, routes[0].Entries, ids0[:2], pls0[:2])
	checkEntries(t, routes[1].Entries, idsL, plsL)

	// Finish both batches: outbox entries from both, acks of both, then the
	// next read returns partition 0's third entry and nothing of the other.
	routes = []store.PartitionRoute{
		{P: 0, Items: []store.OutboxItem{{Gateway: "g", Payload: []byte("g1")}, {Gateway: "h", Payload: []byte("h1")}}, Ack: ids0[:2]},
		{P: last, Items: []store.OutboxItem{{Gateway: "g", Payload: []byte("g2")}}, Ack: idsL},
	}
	routed, err = m.RouteReadMany(ctx, "c", routes, 10, 0)
	ok(t, err)
	if !routed {
		t.Fatalf("RouteReadMany succeeded with routed false")
	}
	checkEntries(t, routes[0].Entries, ids0[2:], pls0[2:])
	if len(routes[1].Entries) != 0 {
		t.Errorf("partition %d read %d entries, want none", last, len(routes[1].Entries))
	}
	if n0, nL := pending(0), pending(last); n0 != 1 || nL != 0 {
		t.Errorf("Pending after RouteReadMany = %d and %d, want 1 and 0", n0, nL)
	}
	e.wantOutboxes(t, "RouteReadMany", map[string][]string{"g": {"g1", "g2"}, "h": {"h1"}})

	// Refused before anything happens: a partition twice, out of range, a
	// malformed id, an item without gateway.
	bad := [][]store.PartitionRoute{
		{{P: 0, Ack: ids0[2:]}, {P: 0}},
		{{P: 0, Ack: ids0[2:]}, {P: last + 1}},
		{{P: 0, Ack: ids0[2:]}, {P: last, Ack: []string{"nope"}}},
		{{P: 0, Ack: ids0[2:]}, {P: last, Items: []store.OutboxItem{{Payload: []byte("x")}}}},
	}
	for i, rs := range bad {
		routed, err := m.RouteReadMany(ctx, "c", rs, 10, 0)
		if err == nil || routed {
			t.Errorf("bad call %d: routed %v, err %v; want an error and routed false", i, routed, err)
		}
	}
	wantErr(t, "RouteReadMany naming a partition out of range", func() error {
		_, err := m.RouteReadMany(ctx, "c", bad[1], 10, 0)
		return err
	}(), store.ErrBadPartition)
	if n := pending(0); n != 1 {
		t.Errorf("Pending after refused calls = %d, want 1", n)
	}

	// Blocking: the acknowledgement takes effect before the read waits, and
	// an append to any of the partitions wakes it.
	res := background(func() ([]store.Entry, error) {
		rs := []store.PartitionRoute{{P: 0, Ack: ids0[2:]}, {P: last}}
		routed, err := m.RouteReadMany(ctx, "c", rs, 10, longBlock)
		if err == nil && !routed {
			err = errors.New("routed false")
		}
		if err == nil && len(rs[0].Entries) != 0 {
			err = fmt.Errorf("partition 0 read %d entries, want none", len(rs[0].Entries))
		}
		return rs[1].Entries, err
	})
	eventually(t, "the ack of a blocked RouteReadMany", func() bool {
		n, err := e.b.Log.Pending(ctx, 0)
		return err == nil && n == 0
	})
	woke, wokePls := e.appendLog(t, last, "w", 1)
	r := await(t, res)
	ok(t, r.err)
	checkEntries(t, r.entries, woke, wokePls)

	// Nothing to read within block: routed, no entries, no error.
	routes = []store.PartitionRoute{{P: 0}, {P: last, Ack: woke}}
	routed, err = m.RouteReadMany(ctx, "c", routes, 10, 20*time.Millisecond)
	ok(t, err)
	if !routed || routes[0].Entries != nil || routes[1].Entries != nil {
		t.Errorf("RouteReadMany with nothing new: routed %v, entries %v and %v", routed, routes[0].Entries, routes[1].Entries)
	}
	if n := pending(last); n != 0 {
		t.Errorf("Pending of partition %d = %d, want 0", last, n)
	}
}

// flippingContext reports no error for its first n Err calls and
// context.Canceled after: a cancellation at each point of a call in turn.
type flippingContext struct {
	context.Context
	n, calls int
}

func (c *flippingContext) Err() error {
	if c.calls++; c.calls > c.n {
		return context.Canceled
	}
	return nil
}

// A RouteRead whose context is canceled at any point either routed its batch
// (outbox entries appended and entries acknowledged, routed true) or did
// nothing of it (routed false). A half (appended, not acknowledged, routed
// false) would make the consumer append the batch again on its way out.
func testLogRouteReadCanceled(t *testing.T, e *env) {
	ctx := t.Context()
	for n := range 8 {
		gw := fmt.Sprintf("g%d", n)
		e.appendLog(t, 0, "x", 1)
		read := try(e.b.Log.Read(ctx, 0, "a", 10, 0)).must(t)
		if len(read) != 1 {
			t.Fatalf("cut after %d checks: read %d entries, want 1", n, len(read))
		}
		fc := &flippingContext{Context: ctx, n: n}
		_, routed, _ := e.b.Router.RouteRead(fc, 0, "a", []store.OutboxItem{{Gateway: gw, Payload: []byte("p")}}, []string{read[0].ID}, 10, 0)
		pending := try(e.b.Log.Pending(ctx, 0)).must(t)
		out := try(e.b.Outboxes.Read(ctx, gw, "", 0, 0)).must(t)
		switch {
		case routed && (len(out) != 1 || pending != 0):
			t.Fatalf("cut after %d checks: routed, with %d outbox entries and %d pending", n, len(out), pending)
		case !routed && (len(out) != 0 || pending != 1):
			t.Fatalf("cut after %d checks: not routed, with %d outbox entries and %d pending", n, len(out), pending)
		}
		if !routed { // finish it, as the consumer would
			ok(t, e.b.Log.Ack(ctx, 0, read[0].ID))
		}
	}
}
