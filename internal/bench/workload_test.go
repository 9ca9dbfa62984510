package bench

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/streamerd/streamer/match"
)

func TestWorkloadMix(t *testing.T) {
	tests := []struct {
		name         string
		mix          Mix
		subs         int
		eq, doc, cel int
	}{
		{"default mix", DefaultMix, 10_000, 9_000, 900, 100},
		{"rounding keeps the total", DefaultMix, 7, 6, 1, 0},
		{"only CEL", Mix{CEL: 100}, 50, 0, 0, 50},
		{"only document ids", Mix{DocumentID: 100}, 30, 0, 30, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{Gateways: 2, SubsPerGateway: tc.subs, Mix: tc.mix}.withDefaults()
			wl := newWorkload(cfg)
			eng, err := match.NewEngine(match.Config{})
			if err != nil {
				t.Fatal(err)
			}
			for g := range wl.gateways {
				counts := map[subKind]int{}
				for i := range wl.perGateway {
					sp := wl.spec(g, i)
					counts[sp.kind]++
					if _, err := eng.Compile(sp.crit); err != nil {
						t.Fatalf("gateway %d %s: %v", g, sp.sub.ID, err)
					}
				}
				if counts[kindEquality] != tc.eq || counts[kindDocID] != tc.doc || counts[kindCEL] != tc.cel {
					t.Errorf("gateway %d: eq/doc/cel = %d/%d/%d, want %d/%d/%d", g,
						counts[kindEquality], counts[kindDocID], counts[kindCEL], tc.eq, tc.doc, tc.cel)
				}
			}
		})
	}
}

func TestWorkloadIsDeterministic(t *testing.T) {
	cfg := Config{Gateways: 2, SubsPerGateway: 100}.withDefaults()
	a, b := newWorkload(cfg), newWorkload(cfg)
	for g := range a.gateways {
		for i := range a.perGateway {
			sp := a.spec(g, i)
			if !reflect.DeepEqual(sp, b.spec(g, i)) || !reflect.DeepEqual(sp, a.spec(g, i)) {
				t.Fatalf("subscription %d/%d differs between two calls or two workloads of one seed", g, i)
			}
		}
	}
	stamp := time.Unix(0, 1_700_000_000_123_456_789)
	for seq := range uint64(100) {
		ea, eb := a.changeEvent(phaseMeasure, seq, stamp), b.changeEvent(phaseMeasure, seq, stamp)
		if string(ea.Document) != string(eb.Document) || ea.Collection != eb.Collection || ea.DocumentId != eb.DocumentId {
			t.Fatalf("event %d differs between two workloads of one seed", seq)
		}
		if _, err := match.ParseDocument(ea.Document); err != nil {
			t.Fatalf("event %d: %v", seq, err)
		}
	}
	other := newWorkload(Config{Gateways: 2, SubsPerGateway: 100, Seed: 2}.withDefaults())
	if string(other.changeEvent(phaseMeasure, 0, stamp).Document) == string(a.changeEvent(phaseMeasure, 0, stamp).Document) {
		t.Error("another seed gave the same first event")
	}
}

func TestEventIDRoundTrip(t *testing.T) {
	stamp := time.Unix(0, 1_700_000_000_123_456_789)
	for _, ph := range []phase{phaseWarmup, phaseMeasure} {
		got, ok := parseEventID(eventID(ph, 123456, stamp))
		if !ok || got.marker || got.phase != ph || got.seq != 123456 || got.stamp != stamp.UnixNano() {
			t.Errorf("parse(eventID(%v)) = %+v, %v", ph, got, ok)
		}
	}
	wl := newWorkload(Config{Gateways: 1, SubsPerGateway: 1}.withDefaults())
	for c, ev := range wl.markerEvents(phaseMeasure) {
		got, ok := parseEventID(ev.EventId)
		if !ok || !got.marker || got.phase != phaseMeasure || got.seq != uint64(c) {
			t.Errorf("marker %d: parse(%q) = %+v, %v", c, ev.EventId, got, ok)
		}
	}
	for _, bad := range []string{"", "m", "m12", "q1.2", "m1.x", "x9.1.2", "x0.1"} {
		if _, ok := parseEventID(bad); ok {
			t.Errorf("parseEventID(%q) accepted", bad)
		}
	}
}

func TestParseMixAndRate(t *testing.T) {
	mixes := []struct {
		in   string
		want Mix
		ok   bool
	}{
		{"eq=90,doc=9,cel=1", DefaultMix, true},
		{"cel=50, eq=50", Mix{Equality: 50, CEL: 50}, true},
		{"eq=100", Mix{Equality: 100}, true},
		{"eq=90,doc=9", Mix{}, false},
		{"eq=90,doc=20,cel=-10", Mix{}, false},
		{"eq=100,foo=0", Mix{}, false},
		{"eq:100", Mix{}, false},
	}
	for _, tc := range mixes {
		got, err := ParseMix(tc.in)
		if (err == nil) != tc.ok || (tc.ok && got != tc.want) {
			t.Errorf("ParseMix(%q) = %v, %v", tc.in, got, err)
		}
	}
	if m, err := ParseMix(DefaultMix.String()); err != nil || m != DefaultMix {
		t.Errorf("ParseMix(DefaultMix.String()) = %v, %v", m, err)
	}
	rates := []struct {
		in   string
		want float64
		ok   bool
	}{{"max", 0, true}, {"MAX", 0, true}, {"2000", 2000, true}, {"0.5", 0.5, true}, {"0", 0, false}, {"-1", 0, false}, {"fast", 0, false}}
	for _, tc := range rates {
		got, err := ParseRate(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseRate(%q) = %v, %v", tc.in, got, err)
		}
	}
}

func TestConfigRefusesNodesWithoutRedis(t *testing.T) {
	err := Config{Nodes: 2}.withDefaults().validate()
	if !errors.Is(err, ErrMemoryOneNode) {
		t.Errorf("validate = %v, want ErrMemoryOneNode", err)
	}
	if err := (Config{Nodes: 2, RedisURL: "redis://x"}).withDefaults().validate(); err != nil {
		t.Errorf("with Redis: %v", err)
	}
}

func TestScheduleStampsEachEventAtItsTick(t *testing.T) {
	start := time.Unix(1000, 0)
	for _, rate := range []float64{0.5, 3, 1000, 2000, 2500, 33_333, 100_000} {
		s := schedule{rate: rate, start: start}
		prev := start
		for j := range uint64(3000) {
			at := s.dueAt(j)
			if at.Before(prev) {
				t.Fatalf("rate %g: event %d due at %v, before event %d", rate, j, at.Sub(start), j-1)
			}
			prev = at
			// Due by its own tick, not by the one before.
			if s.dueBy(at) <= j || s.dueBy(at.Add(-time.Nanosecond)) > j {
				t.Fatalf("rate %g: event %d stamped %v, but due by then: %d, just before: %d",
					rate, j, at.Sub(start), s.dueBy(at), s.dueBy(at.Add(-time.Nanosecond)))
			}
		}
		if got := s.dueBy(start.Add(10 * time.Second)); got != uint64(rate*10) {
			t.Errorf("rate %g: %d events due after 10s, want %d", rate, got, uint64(rate*10))
		}
	}
}
