package bench

import (
	"context"
	"slices"
	"strings"
	"testing"
)

// expectedPairs computes, by the verifier's own rules, the pairs events
// [0, n) should produce for each gateway.
func expectedPairs(t *testing.T, v *verifier, n uint64) [][]uint64 {
	t.Helper()
	w := &verifyWorker{v: v, exp: make([][]uint32, v.gateways)}
	out := make([][]uint64, v.gateways)
	for seq := range n {
		w.expect(seq)
		for g, subs := range w.exp {
			for _, s := range subs {
				out[g] = append(out[g], seq<<32|uint64(s))
			}
		}
	}
	return out
}

func TestVerify(t *testing.T) {
	cfg := Config{Gateways: 3, SubsPerGateway: 400, DistinctValues: 20, Collections: 4, Documents: 50}.withDefaults()
	wl := newWorkload(cfg)
	v, err := newVerifier(wl)
	if err != nil {
		t.Fatal(err)
	}
	const n = 3000
	exp := expectedPairs(t, v, n)
	total := 0
	for _, e := range exp {
		total += len(e)
	}
	if total < 1000 {
		t.Fatalf("only %d expected pairs: the workload should match often", total)
	}

	tests := []struct {
		name   string
		mutate func(d [][]uint64) [][]uint64
		want   Completeness // Expected and Delivered are checked separately
		hint   string       // expected in Examples
	}{
		{"complete and shuffled", func(d [][]uint64) [][]uint64 {
			for _, g := range d {
				slices.Reverse(g)
			}
			return d
		}, Completeness{}, ""},
		{"one lost", func(d [][]uint64) [][]uint64 {
			d[1] = slices.Delete(d[1], 7, 8)
			return d
		}, Completeness{Lost: 1}, "lost: gateway 1"},
		{"duplicates", func(d [][]uint64) [][]uint64 {
			d[0] = append(d[0], d[0][3], d[0][3], d[0][10])
			return d
		}, Completeness{Duplicates: 3}, ""},
		{"unexpected subscription", func(d [][]uint64) [][]uint64 {
			d[0] = append(d[0], 5<<32|399, 5<<32|399)
			return d
		}, Completeness{Unexpected: 1, Duplicates: 1}, "unexpected: gateway 0"},
		{"event never published", func(d [][]uint64) [][]uint64 {
			d[2] = append(d[2], (n+10)<<32|1)
			return d
		}, Completeness{Unexpected: 1}, "never published"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := make([][]uint64, len(exp))
			for g := range exp {
				d[g] = slices.Clone(exp[g])
			}
			d = tc.mutate(d)
			delivered := 0
			for _, g := range d {
				delivered += len(g)
			}
			got := v.verify(context.Background(), n, d, nil)
			if got.Expected != int64(total) || got.Delivered != int64(delivered) {
				t.Errorf("expected/delivered = %d/%d, want %d/%d", got.Expected, got.Delivered, total, delivered)
			}
			if got.Lost != tc.want.Lost || got.Duplicates != tc.want.Duplicates || got.Unexpected != tc.want.Unexpected {
				t.Errorf("lost/duplicates/unexpected = %d/%d/%d, want %d/%d/%d",
					got.Lost, got.Duplicates, got.Unexpected, tc.want.Lost, tc.want.Duplicates, tc.want.Unexpected)
			}
			if got.Delivered != got.Expected-got.Lost+got.Unexpected+got.Duplicates {
				t.Errorf("delivered %d != expected − lost + unexpected + duplicates", got.Delivered)
			}
			if tc.hint != "" && !strings.Contains(strings.Join(got.Examples, "\n"), tc.hint) {
				t.Errorf("examples %q do not mention %q", got.Examples, tc.hint)
			}
		})
	}
	t.Run("a gateway got nothing", func(t *testing.T) {
		d := [][]uint64{slices.Clone(exp[0]), slices.Clone(exp[1]), nil}
		got := v.verify(context.Background(), n, d, nil)
		if got.Lost != int64(len(exp[2])) || got.Unexpected != 0 || got.Duplicates != 0 {
			t.Errorf("lost/unexpected/duplicates = %d/%d/%d, want %d/0/0", got.Lost, got.Unexpected, got.Duplicates, len(exp[2]))
		}
		if len(got.Examples) != maxExamples {
			t.Errorf("%d examples, want %d", len(got.Examples), maxExamples)
		}
	})
}
