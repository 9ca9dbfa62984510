package gateway

import (
	"fmt"
	"slices"
	"testing"
)

func ringIDs(entries []ringEntry) []string {
	var out []string
	for _, e := range entries {
		out = append(out, e.eventID)
	}
	return out
}

func TestRing(t *testing.T) {
	body := make([]byte, 100)
	entrySize := (&ringEntry{upstream: "u1", eventID: "e0", body: body}).size()

	t.Run("since returns the later entries of the same upstream", func(t *testing.T) {
		r := newRing(1 << 20)
		for i := range 6 {
			up := "u1"
			if i%2 == 1 {
				up = "u2"
			}
			r.add(up, fmt.Sprintf("e%d", i), body)
		}
		got, ok := r.since("u1", "e0")
		if !ok || !slices.Equal(ringIDs(got), []string{"e2", "e4"}) {
			t.Fatalf("since(u1, e0) = %v, %v", ringIDs(got), ok)
		}
		if got, ok := r.since("u1", "e4"); !ok || len(got) != 0 {
			t.Fatalf("since the newest = %v, %v", ringIDs(got), ok)
		}
		if _, ok := r.since("u2", "e0"); ok {
			t.Fatal("an event of another upstream is known")
		}
		if _, ok := r.since("u1", "nope"); ok {
			t.Fatal("an unknown event is known")
		}
	})

	t.Run("eviction keeps the byte bound and forgets the oldest", func(t *testing.T) {
		r := newRing(3 * entrySize)
		for i := range 10 {
			r.add("u1", fmt.Sprintf("e%d", i), body)
			if r.bytes > r.maxBytes || r.len() > 3 {
				t.Fatalf("after %d adds: %d bytes in %d entries, bound %d", i+1, r.bytes, r.len(), r.maxBytes)
			}
		}
		if _, ok := r.since("u1", "e6"); ok {
			t.Fatal("an evicted event is still known")
		}
		if got, ok := r.since("u1", "e7"); !ok || !slices.Equal(ringIDs(got), []string{"e8", "e9"}) {
			t.Fatalf("since(e7) = %v, %v", ringIDs(got), ok)
		}
		if len(r.index) != 3 {
			t.Fatalf("index holds %d ids, want 3", len(r.index))
		}
	})

	t.Run("an entry larger than the bound empties the ring", func(t *testing.T) {
		r := newRing(3 * entrySize)
		r.add("u1", "e1", body)
		r.add("u1", "huge", make([]byte, 4*entrySize))
		if _, ok := r.since("u1", "e1"); ok || r.len() != 0 || r.bytes != 0 {
			t.Fatal("a replay from before an unrecorded event would skip it")
		}
	})

	t.Run("forget and reset unindex", func(t *testing.T) {
		r := newRing(1 << 20)
		r.add("u1", "e1", body)
		r.add("u2", "e2", body)
		r.forget("u1")
		if _, ok := r.since("u1", "e1"); ok {
			t.Fatal("forgotten upstream still known")
		}
		if _, ok := r.since("u2", "e2"); !ok {
			t.Fatal("forget removed another upstream")
		}
		r.reset()
		if _, ok := r.since("u2", "e2"); ok || r.len() != 0 {
			t.Fatal("reset kept entries")
		}
	})

	t.Run("events without an id are not recorded", func(t *testing.T) {
		r := newRing(1 << 20)
		r.add("u1", "", body)
		if r.len() != 0 {
			t.Fatal("recorded an event without id")
		}
	})
}
