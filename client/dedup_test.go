package client

import (
	"slices"
	"testing"

	streamerv1 "github.com/streamerd/streamer/proto/streamer/v1"
)

func em(id string, op streamerv1.Operation, subs ...string) *streamerv1.EventMatch {
	return &streamerv1.EventMatch{Event: &streamerv1.ChangeEvent{EventId: id}, Operation: op, SubscriptionIds: subs}
}

func ids(ms []*streamerv1.EventMatch) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.GetEvent().GetEventId())
	}
	return out
}

func TestDedup(t *testing.T) {
	const (
		create = streamerv1.Operation_OPERATION_CREATE
		del    = streamerv1.Operation_OPERATION_DELETE
	)
	type step struct {
		in          []*streamerv1.EventMatch
		wantKept    []string
		wantDropped int
	}
	for _, tc := range []struct {
		name  string
		size  int
		steps []step
	}{
		{"new events pass", 10, []step{
			{[]*streamerv1.EventMatch{em("a", create, "s"), em("b", create, "s")}, []string{"a", "b"}, 0},
		}},
		{"replayed events are dropped", 10, []step{
			{[]*streamerv1.EventMatch{em("a", create, "s"), em("b", create, "s")}, []string{"a", "b"}, 0},
			{[]*streamerv1.EventMatch{em("b", create, "s"), em("c", create, "s")}, []string{"c"}, 1},
		}},
		{"one event in several matches of a delivery is kept whole", 10, []step{
			{[]*streamerv1.EventMatch{em("a", create, "s1"), em("a", del, "s2")}, []string{"a", "a"}, 0},
			{[]*streamerv1.EventMatch{em("a", create, "s1"), em("a", del, "s2")}, nil, 1},
		}},
		{"events without id are never dropped", 10, []step{
			{[]*streamerv1.EventMatch{em("", create, "s")}, []string{""}, 0},
			{[]*streamerv1.EventMatch{em("", create, "s")}, []string{""}, 0},
		}},
		{"the oldest ids are forgotten at the size", 2, []step{
			{[]*streamerv1.EventMatch{em("a", create, "s"), em("b", create, "s"), em("c", create, "s")}, []string{"a", "b", "c"}, 0},
			{[]*streamerv1.EventMatch{em("a", create, "s"), em("c", create, "s")}, []string{"a"}, 1},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newDedup(tc.size)
			for i, st := range tc.steps {
				kept, dropped := d.filter(st.in)
				if !slices.Equal(ids(kept), st.wantKept) || dropped != st.wantDropped {
					t.Errorf("step %d: kept %q dropped %d, want %q dropped %d", i, ids(kept), dropped, st.wantKept, st.wantDropped)
				}
			}
		})
	}
}

// TestDedupRemembersTheLastDistinctIDs compares the dedup with a plain model
// over random deliveries: an id is dropped exactly when it is among the last
// size distinct ids delivered before.
func TestDedupRemembersTheLastDistinctIDs(t *testing.T) {
	const size = 7
	d := newDedup(size)
	var order []string // distinct ids in first-delivery order
	rnd := uint64(1)
	next := func(n uint64) uint64 { rnd = rnd*6364136223846793005 + 1442695040888963407; return (rnd >> 33) % n }
	for step := range 2000 {
		var in []*streamerv1.EventMatch
		for range 1 + next(4) {
			in = append(in, em(string(rune('a'+next(20))), streamerv1.Operation_OPERATION_UPDATE, "s"))
		}
		recent := order[max(0, len(order)-size):]
		var want []string
		for _, m := range in {
			if !slices.Contains(recent, m.GetEvent().GetEventId()) {
				want = append(want, m.GetEvent().GetEventId())
			}
		}
		kept, _ := d.filter(in)
		if got := ids(kept); !slices.Equal(got, want) {
			t.Fatalf("step %d: kept %v, want %v (remembered %v)", step, got, want, recent)
		}
		for _, m := range in {
			if id := m.GetEvent().GetEventId(); !slices.Contains(order[max(0, len(order)-size):], id) {
				order = append(order, id)
			}
		}
	}
}
