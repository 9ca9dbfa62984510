package bench

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestHistogramQuantiles(t *testing.T) {
	tests := []struct {
		name    string
		bits    uint
		samples []time.Duration
		want    map[float64]time.Duration // quantile → exact nearest-rank value
	}{
		{
			name:    "uniform 1..100000 µs",
			bits:    preciseBits,
			samples: seqDurations(1, 100_000, time.Microsecond),
			want: map[float64]time.Duration{0.5: 50 * time.Millisecond, 0.9: 90 * time.Millisecond,
				0.99: 99 * time.Millisecond, 0.999: 99_900 * time.Microsecond, 1: 100 * time.Millisecond},
		},
		{
			name:    "small values are exact",
			bits:    preciseBits,
			samples: seqDurations(0, 200, time.Nanosecond),
			want:    map[float64]time.Duration{0: 0, 0.5: 100, 0.99: 198, 1: 200},
		},
		{
			name:    "one sample",
			bits:    coarseBits,
			samples: []time.Duration{1234567},
			want:    map[float64]time.Duration{0: 1234567, 0.5: 1234567, 0.999: 1234567, 1: 1234567},
		},
		{
			name: "bimodal: tail outliers",
			bits: preciseBits,
			samples: append(slices.Repeat([]time.Duration{time.Millisecond}, 990),
				slices.Repeat([]time.Duration{time.Second}, 10)...),
			want: map[float64]time.Duration{0.5: time.Millisecond, 0.99: time.Millisecond, 0.991: time.Second, 1: time.Second},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := NewHistogram(tc.bits)
			shuffled := slices.Clone(tc.samples)
			rand.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
			for _, d := range shuffled {
				h.Record(d)
			}
			if h.Count() != uint64(len(tc.samples)) {
				t.Fatalf("Count = %d, want %d", h.Count(), len(tc.samples))
			}
			tolerance := math.Ldexp(1, -int(tc.bits)) // relative
			for q, want := range tc.want {
				got := h.Quantile(q)
				if diff := math.Abs(float64(got - want)); diff > tolerance*float64(want) {
					t.Errorf("Quantile(%g) = %v, want %v within %.2f%%", q, got, want, 100*tolerance)
				}
				if got < h.Min() || got > h.Max() {
					t.Errorf("Quantile(%g) = %v outside [Min %v, Max %v]", q, got, h.Min(), h.Max())
				}
			}
			if h.Max() != slices.Max(tc.samples) || h.Min() != slices.Min(tc.samples) {
				t.Errorf("Min, Max = %v, %v, want exact %v, %v", h.Min(), h.Max(), slices.Min(tc.samples), slices.Max(tc.samples))
			}
		})
	}
}

func TestHistogramAgainstSortedSamples(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	h := NewHistogram(preciseBits)
	samples := make([]time.Duration, 50_000)
	for i := range samples {
		// Log-normal-ish latencies from ~10 µs to ~10 s.
		samples[i] = time.Duration(math.Exp(rnd.NormFloat64()*2+13.8)) + 10*time.Microsecond
		h.Record(samples[i])
	}
	slices.Sort(samples)
	for _, q := range []float64{0.001, 0.1, 0.5, 0.9, 0.99, 0.999, 0.9999} {
		want := samples[int(math.Ceil(q*float64(len(samples))))-1] // nearest rank
		got := h.Quantile(q)
		if got < want || float64(got-want) > float64(want)/128 {
			t.Errorf("Quantile(%g) = %v, want %v (at most 1/128 above)", q, got, want)
		}
	}
	var sum time.Duration
	for _, s := range samples {
		sum += s
	}
	if mean := sum / time.Duration(len(samples)); absDur(h.Mean()-mean) > time.Microsecond {
		t.Errorf("Mean = %v, want %v", h.Mean(), mean)
	}
}

func TestHistogramMerge(t *testing.T) {
	a, b, all := NewHistogram(coarseBits), NewHistogram(coarseBits), NewHistogram(coarseBits)
	for i, d := range seqDurations(1, 10_000, 3*time.Microsecond) {
		if i%3 == 0 {
			a.Record(d)
		} else {
			b.Record(d)
		}
		all.Record(d)
	}
	a.Merge(b)
	a.Merge(NewHistogram(coarseBits)) // empty: no change
	for _, q := range []float64{0, 0.25, 0.5, 0.99, 1} {
		if a.Quantile(q) != all.Quantile(q) {
			t.Errorf("merged Quantile(%g) = %v, want %v", q, a.Quantile(q), all.Quantile(q))
		}
	}
	if a.Count() != all.Count() || a.Min() != all.Min() || a.Max() != all.Max() {
		t.Errorf("merged count/min/max = %d/%v/%v, want %d/%v/%v", a.Count(), a.Min(), a.Max(), all.Count(), all.Min(), all.Max())
	}
}

func TestHistogramEdges(t *testing.T) {
	h := NewHistogram(preciseBits)
	if h.Quantile(0.5) != 0 || h.Max() != 0 || h.Mean() != 0 || len(h.curve()) != 0 {
		t.Error("empty histogram: want zeros")
	}
	h.Record(-5 * time.Millisecond) // clock skew: counts as 0
	h.Record(time.Duration(math.MaxInt64))
	if h.Min() != 0 || h.Max() != time.Duration(math.MaxInt64) || h.Quantile(1) != h.Max() {
		t.Errorf("extremes: min %v max %v q1 %v", h.Min(), h.Max(), h.Quantile(1))
	}
	// Every bucket's bounds contain the values that index to it.
	for _, v := range []uint64{0, 1, 255, 256, 257, 1000, 1 << 20, 1<<20 + 12345, 1<<62 + 1, math.MaxInt64} {
		lo, hi := h.bounds(h.index(v))
		if v < lo || v > hi {
			t.Errorf("value %d in bucket [%d, %d]", v, lo, hi)
		}
		if hi-lo > max(lo>>preciseBits, 0) {
			t.Errorf("bucket [%d, %d] wider than 1/%d of its start", lo, hi, 1<<preciseBits)
		}
	}
	c := h.curve()
	if len(c) != 2 || c[1].q != 1 {
		t.Errorf("curve = %v, want 2 points ending at q=1", c)
	}
}

func seqDurations(from, to int, unit time.Duration) []time.Duration {
	out := make([]time.Duration, 0, to-from+1)
	for i := from; i <= to; i++ {
		out = append(out, time.Duration(i)*unit)
	}
	return out
}

func absDur(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}
