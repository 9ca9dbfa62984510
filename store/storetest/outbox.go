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

var outboxScenarios = []scenario{
	{"append returns increasing ids per gateway in item order", testOutboxAppend},
	{"read returns entries after the cursor", testOutboxRead},
	{"trim deletes acknowledged entries without losing later cursors", testOutboxTrim},
	{"last is the newest id ever appended", testOutboxLast},
	{"cap overflow makes earlier cursors lost", testOutboxCap},
	{"byte cap keeps the newest entries that fit, and the newest always", testOutboxByteCap},
	{"retire deletes the outbox and moves it past every issued id", testOutboxRetire},
	{"retire fences off the items routed before it", testOutboxRetireFences},
	{"blocking read wakes on append to its gateway", testOutboxReadWakes},
	{"blocking read returns nothing on timeout", testOutboxReadTimeout},
	{"blocking read returns on context cancel", testOutboxReadCancel},
	{"malformed cursors and empty gateways are rejected", testOutboxBadArgs},
	{"concurrent appenders keep per-gateway id order", testOutboxConcurrent},
	{"fetch reads and reports deleted entries after the cursor", testOutboxFetch},
	{"fetch-many reads many outboxes at once", testOutboxFetchMany},
}

// appendOutbox appends n payloads "<prefix>-<i>" to gateway's outbox, in
// batches, and returns ids and payloads.
func (e *env) appendOutbox(t *testing.T, gateway, prefix string, n int) ([]string, [][]byte) {
	t.Helper()
	pls := payloads(prefix, n)
	var ids []string
	for batch := range slices.Chunk(pls, 100) {
		items := make([]store.OutboxItem, len(batch))
		for i, pl := range batch {
			items[i] = store.OutboxItem{Gateway: gateway, Payload: pl}
		}
		ids = append(ids, try(e.b.Outboxes.Append(t.Context(), items)).must(t)...)
	}
	return ids, pls
}

// wantLen fails unless gateway's outbox holds n entries.
func (e *env) wantLen(t *testing.T, gateway string, n int64) {
	t.Helper()
	if got := try(e.b.Outboxes.Len(t.Context(), gateway)).must(t); got != n {
		t.Fatalf("Len(%s) = %d, want %d", gateway, got, n)
	}
}

// wantLost fails unless Lost(gateway, after) is want.
func (e *env) wantLost(t *testing.T, gateway, after string, want bool) {
	t.Helper()
	if got := try(e.b.Outboxes.Lost(t.Context(), gateway, after)).must(t); got != want {
		t.Fatalf("Lost(%s, %q) = %v, want %v", gateway, after, got, want)
	}
}

// wantLast fails unless Last(gateway) is want.
func (e *env) wantLast(t *testing.T, gateway, want string) {
	t.Helper()
	if got := try(e.b.Outboxes.Last(t.Context(), gateway)).must(t); got != want {
		t.Fatalf("Last(%s) = %q, want %q", gateway, got, want)
	}
}

func testOutboxAppend(t *testing.T, e *env) {
	ctx := t.Context()
	items := []store.OutboxItem{
		{Gateway: "g1", Payload: []byte("a")},
		{Gateway: "g2", Payload: []byte("b")},
		{Gateway: "g1", Payload: nil},
	}
	ids := try(e.b.Outboxes.Append(ctx, items)).must(t)
	if len(ids) != 3 {
		t.Fatalf("Append of 3 items returned %d ids", len(ids))
	}
	checkIncreasing(t, []string{ids[0], ids[2]})
	checkIncreasing(t, ids[1:2])
	checkEntries(t, try(e.b.Outboxes.Read(ctx, "g1", "", 0, 0)).must(t), []string{ids[0], ids[2]}, [][]byte{[]byte("a"), {}})
	checkEntries(t, try(e.b.Outboxes.Read(ctx, "g2", "", 0, 0)).must(t), ids[1:2], [][]byte{[]byte("b")})
	if none, err := e.b.Outboxes.Append(ctx, nil); err != nil || len(none) != 0 {
		t.Errorf("Append of no items = %v, %v; want no ids, nil", none, err)
	}
	more := try(e.b.Outboxes.Append(ctx, items[:1])).must(t)
	checkIncreasing(t, []string{ids[2], more[0]})
}

func testOutboxRead(t *testing.T, e *env) {
	ctx := t.Context()
	ids, pls := e.appendOutbox(t, "g", "x", 5)
	checkEntries(t, try(e.b.Outboxes.Read(ctx, "g", "", 0, 0)).must(t), ids, pls)
	checkEntries(t, try(e.b.Outboxes.Read(ctx, "g", "0-0", 2, 0)).must(t), ids[:2], pls[:2])
	checkEntries(t, try(e.b.Outboxes.Read(ctx, "g", ids[1], 2, 0)).must(t), ids[2:4], pls[2:4])
	checkEntries(t, try(e.b.Outboxes.Read(ctx, "g", ids[1], 0, 0)).must(t), ids[2:], pls[2:])
	checkEntries(t, try(e.b.Outboxes.Read(ctx, "g", ids[1], 0, 0)).must(t), ids[2:], pls[2:]) // reads do not consume
	if got := try(e.b.Outboxes.Read(ctx, "g", ids[4], 0, 0)).must(t); got != nil {
		t.Errorf("Read after the last id = %v, want nil", entryIDs(got))
	}
	ms, seq, _ := store.ParseID(ids[4])
	beyond := store.FormatID(ms+1000, seq)
	if got := try(e.b.Outboxes.Read(ctx, "g", beyond, 0, 0)).must(t); got != nil {
		t.Errorf("Read after a future cursor = %v, want nil", entryIDs(got))
	}
	if got := try(e.b.Outboxes.Read(ctx, "unknown", "", 0, 0)).must(t); got != nil {
		t.Errorf("Read of an unknown gateway = %v, want nil", entryIDs(got))
	}
}

func testOutboxTrim(t *testing.T, e *env) {
	ctx := t.Context()
	ids, pls := e.appendOutbox(t, "g", "x", 5)
	e.wantLost(t, "g", "", false)
	ok(t, e.b.Outboxes.Trim(ctx, "g", ""))
	e.wantLen(t, "g", 5)

	ok(t, e.b.Outboxes.Trim(ctx, "g", ids[2]))
	e.wantLen(t, "g", 2)
	checkEntries(t, try(e.b.Outboxes.Read(ctx, "g", "", 0, 0)).must(t), ids[3:], pls[3:])
	e.wantLost(t, "g", ids[2], false)
	e.wantLost(t, "g", ids[3], false)
	e.wantLost(t, "g", ids[1], true) // behind the acknowledged cursor
	e.wantLast(t, "g", ids[4])

	ok(t, e.b.Outboxes.Trim(ctx, "g", ids[4]))
	e.wantLen(t, "g", 0)
	e.wantLast(t, "g", ids[4])
	e.wantLost(t, "g", ids[4], false)
	more, morePls := e.appendOutbox(t, "g", "y", 1)
	checkIncreasing(t, []string{ids[4], more[0]})
	checkEntries(t, try(e.b.Outboxes.Read(ctx, "g", ids[4], 0, 0)).must(t), more, morePls)
	ok(t, e.b.Outboxes.Trim(ctx, "unknown", ids[4]))
	e.wantLen(t, "unknown", 0)
	e.wantLast(t, "unknown", "")
}

func testOutboxLast(t *testing.T, e *env) {
	e.wantLast(t, "g", "")
	ids, _ := e.appendOutbox(t, "g", "x", 3)
	e.wantLast(t, "g", ids[2])
	other, _ := e.appendOutbox(t, "h", "y", 1)
	e.wantLast(t, "h", other[0])
	e.wantLast(t, "g", ids[2])
}

func testOutboxCap(t *testing.T, e *env) {
	appended := int(3*e.opts.OutboxMaxLen + 200)
	ids, pls := e.appendOutbox(t, "g", "x", appended)
	n := try(e.b.Outboxes.Len(t.Context(), "g")).must(t)
	kept := checkRetained(t, "outbox", int(n), e.opts.OutboxMaxLen, appended)
	first := appended - kept
	checkEntries(t, try(e.b.Outboxes.Read(t.Context(), "g", "", 0, 0)).must(t), ids[first:], pls[first:])
	e.wantLost(t, "g", "", true)
	e.wantLost(t, "g", ids[0], true)
	e.wantLost(t, "g", ids[first-2], true)
	e.wantLost(t, "g", ids[first-1], false) // the newest deleted entry: nothing after it is missing
	e.wantLost(t, "g", ids[appended-1], false)
	e.wantLast(t, "g", ids[appended-1])
	e.wantLen(t, "other", 0)
	e.wantLost(t, "other", "", false)
}

func testOutboxByteCap(t *testing.T, e *env) {
	ctx := t.Context()
	const size, n = 4 << 10, 40 // 40 × 4 KiB: more than the 64 KiB cap, less than the entry cap
	const fits = OutboxBytesCap / size
	var ids []string
	for i := range n {
		got := try(e.b.Outboxes.Append(ctx, []store.OutboxItem{{Gateway: "g", Payload: make([]byte, size)}})).must(t)
		ids = append(ids, got[0])
		want := min(int64(i+1), int64(fits), e.opts.OutboxMaxLen)
		e.wantLen(t, "g", want)
	}
	first := n - fits
	e.wantLost(t, "g", ids[first-2], true)
	e.wantLost(t, "g", ids[first-1], false) // the newest deleted: nothing after it is missing
	checkEntries(t, try(e.b.Outboxes.Read(ctx, "g", ids[first-1], 0, 0)).must(t), ids[first:], payloadsOf(n-first, size))

	// One entry larger than the cap: kept alone, everything before it deleted.
	big := try(e.b.Outboxes.Append(ctx, []store.OutboxItem{{Gateway: "g", Payload: make([]byte, 2*OutboxBytesCap)}})).must(t)
	e.wantLen(t, "g", 1)
	e.wantLost(t, "g", ids[n-2], true)
	e.wantLost(t, "g", ids[n-1], false) // deleted through it: nothing after it is missing
	// Trimming it frees its bytes: the next entries fit again.
	ok(t, e.b.Outboxes.Trim(ctx, "g", big[0]))
	for range 3 {
		try(e.b.Outboxes.Append(ctx, []store.OutboxItem{{Gateway: "g", Payload: make([]byte, size)}})).must(t)
	}
	e.wantLen(t, "g", 3)
	// A retired outbox holds nothing: a full cap fits after it.
	try(e.b.Outboxes.Retire(ctx, "g", nil)).must(t)
	for range fits {
		try(e.b.Outboxes.Append(ctx, []store.OutboxItem{{Gateway: "g", Payload: make([]byte, size)}})).must(t)
	}
	e.wantLen(t, "g", int64(fits))
}

// payloadsOf returns n zero payloads of size bytes.
func payloadsOf(n, size int) [][]byte {
	pls := make([][]byte, n)
	for i := range pls {
		pls[i] = make([]byte, size)
	}
	return pls
}

func testOutboxRetire(t *testing.T, e *env) {
	ctx := t.Context()
	ids, _ := e.appendOutbox(t, "g", "x", int(e.opts.OutboxMaxLen)+150) // some entries deleted by the cap
	kept, _ := e.appendOutbox(t, "h", "y", 1)
	newest := ids[len(ids)-1]
	r := try(e.b.Outboxes.Retire(ctx, "g", nil)).must(t)
	if store.CompareIDs(r, newest) <= 0 {
		t.Fatalf("Retire = %q, want an id after the newest appended %q", r, newest)
	}
	e.wantLen(t, "g", 0)
	e.wantLast(t, "g", r)
	if got := try(e.b.Outboxes.Retired(ctx, "g")).must(t); got != r {
		t.Fatalf("Retired = %q, want %q", got, r)
	}
	// Every cursor issued before the retirement is lost, even the newest.
	for _, c := range []string{"", ids[0], newest} {
		e.wantLost(t, "g", c, true)
	}
	e.wantLost(t, "g", r, false)
	if got := try(e.b.Outboxes.Read(ctx, "g", "", 0, 0)).must(t); got != nil {
		t.Errorf("Read after Retire = %v, want nil", entryIDs(got))
	}
	// Other gateways are untouched.
	e.wantLast(t, "h", kept[0])
	if got := try(e.b.Outboxes.Retired(ctx, "h")).must(t); got != "" {
		t.Errorf("Retired(h) = %q, want \"\"", got)
	}
	// The next incarnation's ids follow the retirement, and it can be retired again.
	again, pls := e.appendOutbox(t, "g", "z", 2)
	checkEntries(t, try(e.b.Outboxes.Read(ctx, "g", r, 0, 0)).must(t), again, pls)
	if store.CompareIDs(again[0], r) <= 0 {
		t.Fatalf("first id after Retire %q is not after %q", again[0], r)
	}
	r2 := try(e.b.Outboxes.Retire(ctx, "g", nil)).must(t)
	if store.CompareIDs(r2, again[1]) <= 0 {
		t.Fatalf("second Retire = %q, want after %q", r2, again[1])
	}
	e.wantLost(t, "g", r, true)
	// An outbox that never existed is retired all the same.
	u := try(e.b.Outboxes.Retire(ctx, "unknown", nil)).must(t)
	e.wantLast(t, "unknown", u)
	e.wantLost(t, "unknown", "", true)
	_, err := e.b.Outboxes.Retire(ctx, "g", map[int]string{0: "nope"})
	wantErr(t, "Retire with a malformed fence", err, store.ErrBadID)
	_, err = e.b.Outboxes.Retire(ctx, "", nil)
	wantErr(t, "Retire of no gateway", err, store.ErrInvalid)
}

func testOutboxRetireFences(t *testing.T, e *env) {
	ctx := t.Context()
	try(e.b.Outboxes.Retire(ctx, "g", map[int]string{1: "100-5", 2: "50-0"})).must(t)
	// A later retirement never moves a fence back.
	try(e.b.Outboxes.Retire(ctx, "g", map[int]string{1: "90-0", 3: "7-0"})).must(t)
	items := []store.OutboxItem{
		{Gateway: "g", Payload: []byte("before"), Partition: 1, Position: "100-4"},
		{Gateway: "g", Payload: []byte("at"), Partition: 1, Position: "100-5"},
		{Gateway: "g", Payload: []byte("other partition"), Partition: 0, Position: "1-0"},
		{Gateway: "g", Payload: []byte("unfenced"), Partition: 1},
		{Gateway: "g", Payload: []byte("before 3"), Partition: 3, Position: "6-9"},
		{Gateway: "h", Payload: []byte("other gateway"), Partition: 1, Position: "1-0"},
		{Gateway: "g", Payload: []byte("after 2"), Partition: 2, Position: "50-1"},
	}
	ids := try(e.b.Outboxes.Append(ctx, items)).must(t)
	for i, dropped := range []bool{true, false, false, false, true, false, false} {
		if (ids[i] == "") != dropped {
			t.Errorf("item %q: id %q, want dropped=%v", items[i].Payload, ids[i], dropped)
		}
	}
	e.wantOutboxes(t, "Append after Retire", map[string][]string{
		"g": {"at", "other partition", "unfenced", "after 2"}, "h": {"other gateway"},
	})
	_, err := e.b.Outboxes.Append(ctx, []store.OutboxItem{{Gateway: "g", Payload: []byte("x"), Position: "bad"}})
	wantErr(t, "Append with a malformed position", err, store.ErrBadID)
}

func testOutboxReadWakes(t *testing.T, e *env) {
	ctx := t.Context()
	before, _ := e.appendOutbox(t, "g", "old", 1)
	res := background(func() ([]store.Entry, error) { return e.b.Outboxes.Read(ctx, "g", before[0], 10, longBlock) })
	e.waitBlocked(t, 1)
	e.appendOutbox(t, "other", "noise", 1)
	ids, pls := e.appendOutbox(t, "g", "new", 1)
	r := await(t, res)
	ok(t, r.err)
	checkEntries(t, r.entries, ids, pls)
}

func testOutboxReadTimeout(t *testing.T, e *env) {
	ids, _ := e.appendOutbox(t, "g", "old", 1)
	start := time.Now()
	got, err := e.b.Outboxes.Read(t.Context(), "g", ids[0], 10, shortTTL)
	if err != nil || got != nil {
		t.Fatalf("Read with nothing after the cursor = %v, %v; want nil, nil", got, err)
	}
	if took := time.Since(start); took < shortTTL/2 {
		t.Errorf("Read with block %v returned after %v: it did not block", shortTTL, took)
	}
}

func testOutboxReadCancel(t *testing.T, e *env) {
	ctx, cancel := context.WithCancel(t.Context())
	res := background(func() ([]store.Entry, error) { return e.b.Outboxes.Read(ctx, "g", "", 10, longBlock) })
	e.waitBlocked(t, 1)
	cancel()
	r := await(t, res)
	wantErr(t, "Read after cancel", r.err, context.Canceled)
}

func testOutboxBadArgs(t *testing.T, e *env) {
	ctx := t.Context()
	e.appendOutbox(t, "g", "x", 2)
	for _, bad := range []string{"nope", "12", "1-", "-1", "1-2-3", "a-1"} {
		_, err := e.b.Outboxes.Read(ctx, "g", bad, 0, 0)
		wantErr(t, fmt.Sprintf("Read(after %q)", bad), err, store.ErrBadID)
		wantErr(t, fmt.Sprintf("Trim(%q)", bad), e.b.Outboxes.Trim(ctx, "g", bad), store.ErrBadID)
		_, err = e.b.Outboxes.Lost(ctx, "g", bad)
		wantErr(t, fmt.Sprintf("Lost(%q)", bad), err, store.ErrBadID)
	}
	e.wantLen(t, "g", 2)
	_, err := e.b.Outboxes.Append(ctx, []store.OutboxItem{{Gateway: "g", Payload: []byte("x")}, {Gateway: ""}})
	wantErr(t, "Append(item with empty gateway)", err, store.ErrInvalid)
	e.wantLen(t, "g", 2)
	_, err = e.b.Outboxes.Read(ctx, "", "", 0, 0)
	wantErr(t, "Read(empty gateway)", err, store.ErrInvalid)
}

func testOutboxConcurrent(t *testing.T, e *env) {
	const writers = 4
	perWriter := min(int(e.opts.OutboxMaxLen)/writers, 25)
	ctx := t.Context()
	errs := make(chan error, writers)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				items := []store.OutboxItem{
					{Gateway: "shared", Payload: fmt.Appendf(nil, "w%d-%d", w, i)},
					{Gateway: fmt.Sprintf("own%d", w), Payload: []byte("x")},
				}
				if _, err := e.b.Outboxes.Append(ctx, items); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	got := try(e.b.Outboxes.Read(ctx, "shared", "", 0, 0)).must(t)
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
	for w := range writers {
		e.wantLen(t, fmt.Sprintf("own%d", w), int64(perWriter))
	}
}

func testOutboxFetch(t *testing.T, e *env) {
	ctx := t.Context()
	fetch := func(after string, block time.Duration) ([]store.Entry, bool) {
		t.Helper()
		entries, lost, err := e.b.Outboxes.Fetch(ctx, "g", after, 0, block)
		ok(t, err)
		return entries, lost
	}
	if got, lost := fetch("", 0); got != nil || lost {
		t.Fatalf("Fetch of an unknown outbox = %v, lost %v; want nil, false", entryIDs(got), lost)
	}
	ids, pls := e.appendOutbox(t, "g", "x", 4)
	got, lost := fetch("", 0)
	checkEntries(t, got, ids, pls)
	if lost {
		t.Errorf("Fetch before any deletion: lost")
	}

	ok(t, e.b.Outboxes.Trim(ctx, "g", ids[1]))
	got, lost = fetch(ids[1], 0)
	checkEntries(t, got, ids[2:], pls[2:])
	if lost {
		t.Errorf("Fetch after the acknowledged cursor: lost")
	}
	got, lost = fetch(ids[0], 0)
	checkEntries(t, got, ids[2:], pls[2:])
	if !lost {
		t.Errorf("Fetch from behind the acknowledged cursor: not lost, though %s was deleted", ids[1])
	}
	if got, lost = fetch(ids[3], 0); got != nil || lost {
		t.Errorf("Fetch at the newest entry = %v, lost %v; want nil, false", entryIDs(got), lost)
	}

	// A blocked fetch wakes on append and checks after reading.
	res := background(func() ([]store.Entry, error) {
		entries, lost, err := e.b.Outboxes.Fetch(ctx, "g", ids[3], 10, longBlock)
		if err == nil && lost {
			err = errors.New("lost after a blocked read with nothing deleted after the cursor")
		}
		return entries, err
	})
	e.waitBlocked(t, 1)
	more, morePls := e.appendOutbox(t, "g", "y", 2)
	r := await(t, res)
	ok(t, r.err)
	checkEntries(t, r.entries, more, morePls)

	// A cap overflow deletes entries nobody read.
	n := int(e.opts.OutboxMaxLen) + 150
	over, _ := e.appendOutbox(t, "g", "z", n)
	got, lost = fetch(more[1], 0)
	if !lost || len(got) == 0 {
		t.Errorf("Fetch after a cap overflow: %d entries, lost %v; want entries and lost", len(got), lost)
	}
	_, lost = fetch(over[n-2], 0)
	if lost {
		t.Errorf("Fetch from after the overflow: lost")
	}
}

func testOutboxFetchMany(t *testing.T, e *env) {
	if e.b.MultiFetch == nil {
		t.Skip("this backend offers no MultiFetcher (Backend.MultiFetch is nil): nothing to test")
	}
	ctx := t.Context()
	m := e.b.MultiFetch
	idsG, plsG := e.appendOutbox(t, "g", "a", 3)
	idsH, plsH := e.appendOutbox(t, "h", "b", 2)

	// Each outbox after its own cursor, up to count each; an unknown
	// gateway has nothing; the caller's cursors are left as they were.
	fs := []store.OutboxFetch{{Gateway: "g"}, {Gateway: "h", After: idsH[0]}, {Gateway: "none"}}
	ok(t, m.FetchMany(ctx, fs, 2, 0))
	checkEntries(t, fs[0].Entries, idsG[:2], plsG[:2])
	checkEntries(t, fs[1].Entries, idsH[1:], plsH[1:])
	if fs[2].Entries != nil || fs[0].Lost || fs[1].Lost || fs[2].Lost {
		t.Errorf("FetchMany: unknown gateway got %v; lost %v %v %v; want nothing lost", entryIDs(fs[2].Entries), fs[0].Lost, fs[1].Lost, fs[2].Lost)
	}
	if fs[0].After != "" || fs[1].After != idsH[0] {
		t.Errorf("FetchMany changed the cursors to %q, %q", fs[0].After, fs[1].After)
	}

	// Lost as Fetch reports it, per outbox.
	ok(t, e.b.Outboxes.Trim(ctx, "g", idsG[1]))
	fs = []store.OutboxFetch{{Gateway: "g", After: idsG[0]}, {Gateway: "h"}}
	ok(t, m.FetchMany(ctx, fs, 0, 0))
	checkEntries(t, fs[0].Entries, idsG[2:], plsG[2:])
	checkEntries(t, fs[1].Entries, idsH, plsH)
	if !fs[0].Lost || fs[1].Lost {
		t.Errorf("FetchMany after a trim past g's cursor: lost %v, %v; want true, false", fs[0].Lost, fs[1].Lost)
	}

	// A blocked FetchMany wakes on an append to any of its outboxes, and
	// returns only that one's entries.
	res := background(func() ([]store.Entry, error) {
		fs := []store.OutboxFetch{{Gateway: "g", After: idsG[2]}, {Gateway: "h", After: idsH[1]}}
		if err := m.FetchMany(ctx, fs, 10, longBlock); err != nil {
			return nil, err
		}
		if fs[0].Entries != nil {
			return nil, fmt.Errorf("g, which got no append, returned %v", entryIDs(fs[0].Entries))
		}
		return fs[1].Entries, nil
	})
	e.waitBlocked(t, 1)
	more, morePls := e.appendOutbox(t, "h", "c", 2)
	r := await(t, res)
	ok(t, r.err)
	checkEntries(t, r.entries, more, morePls)

	// Timeout: nothing; bad requests are refused.
	fs = []store.OutboxFetch{{Gateway: "g", After: idsG[2]}}
	ok(t, m.FetchMany(ctx, fs, 0, 20*time.Millisecond))
	if fs[0].Entries != nil {
		t.Errorf("FetchMany that timed out: %v", entryIDs(fs[0].Entries))
	}
	for _, bad := range [][]store.OutboxFetch{
		{{Gateway: "g"}, {Gateway: "g"}},
		{{Gateway: ""}},
	} {
		wantErr(t, fmt.Sprintf("FetchMany(%+v)", bad), m.FetchMany(ctx, bad, 0, 0), store.ErrInvalid)
	}
	wantErr(t, "FetchMany with a malformed cursor", m.FetchMany(ctx, []store.OutboxFetch{{Gateway: "g", After: "nonsense"}}, 0, 0), store.ErrBadID)
	ok(t, m.FetchMany(ctx, nil, 0, longBlock)) // nothing to wait for: at once
}
