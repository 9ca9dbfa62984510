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
