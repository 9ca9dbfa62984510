package bench

import (
	"math"
	"math/bits"
	"time"
)

// Precision of the histograms the harness keeps: the overall latency
// histogram resolves values to 1/128 (< 0.8 %), the per-second ones of the
// timeline to 1/32 (~3 %).
const (
	preciseBits = 7
	coarseBits  = 5
)

// Histogram counts durations in log-linear buckets, the layout of HDR
// histograms: values below 2^(bits+1) ns are counted exactly, and every
// power-of-two range above is split into 2^bits equal buckets, so a
// reported value is within a relative 2^-bits of the recorded one. Count,
// Min, Max and Mean are exact. Memory is fixed (8·(64-bits)·2^bits bytes)
// whatever the number of samples. A Histogram is not safe for concurrent
// use.
type Histogram struct {
	bits   uint
	counts []uint64
	n      uint64
	min    int64
	max    int64
	sum    float64
}

// NewHistogram returns an empty histogram with 2^bits sub-buckets per power
// of two; bits must be in [1, 16].
func NewHistogram(bits uint) *Histogram {
	if bits < 1 || bits > 16 {
		panic("bench: histogram bits out of [1, 16]")
	}
	return &Histogram{bits: bits, counts: make([]uint64, (64-bits)<<bits)}
}

// index returns the bucket of v >= 0.
func (h *Histogram) index(v uint64) int {
	sub := uint64(1) << h.bits
	if v < 2*sub {
		return int(v)
	}
	shift := uint(bits.Len64(v)) - (h.bits + 1)
	return int(uint64(shift)<<h.bits + v>>shift)
}

// bounds returns the smallest and largest value counted in bucket i.
func (h *Histogram) bounds(i int) (lo, hi uint64) {
	sub := 1 << h.bits
	if i < 2*sub {
		return uint64(i), uint64(i)
	}
	shift := uint(i>>h.bits) - 1
	top := uint64(i - int(shift)<<h.bits)
	return top << shift, (top+1)<<shift - 1
}

// Record counts one duration; negative ones count as 0.
func (h *Histogram) Record(d time.Duration) {
	v := max(int64(d), 0)
	h.counts[h.index(uint64(v))]++
	if h.n == 0 || v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
	h.n++
	h.sum += float64(v)
}

// Merge adds o's samples to h. Both must have the same precision.
func (h *Histogram) Merge(o *Histogram) {
	if o.bits != h.bits {
		panic("bench: merging histograms of different precision")
	}
	if o.n == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	h.max = max(h.max, o.max)
	h.n += o.n
	h.sum += o.sum
}

// Count returns the number of samples.
func (h *Histogram) Count() uint64 { return h.n }

// Min returns the smallest sample, 0 when empty.
func (h *Histogram) Min() time.Duration { return time.Duration(h.min) }

// Max returns the largest sample, 0 when empty.
func (h *Histogram) Max() time.Duration { return time.Duration(h.max) }

// Mean returns the mean of the samples, 0 when empty.
func (h *Histogram) Mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(h.sum / float64(h.n))
}

// Quantile returns the value at quantile q in [0, 1] by nearest rank: the
// smallest bucket holding at least ceil(q·Count) samples, reported as its
// largest value (never above Max, never below Min), as HDR histograms do.
// Quantile(1) is Max; an empty histogram gives 0.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	if q >= 1 {
		return time.Duration(h.max)
	}
	rank := uint64(math.Ceil(max(q, 0) * float64(h.n)))
	rank = max(rank, 1)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			_, hi := h.bounds(i)
			return time.Duration(min(max(int64(hi), h.min), h.max))
		}
	}
	return time.Duration(h.max)
}

// quantilePoint is one point of a latency distribution curve.
type quantilePoint struct {
	q     float64 // fraction of samples at or below value
	value time.Duration
}

// curve returns, for every non-empty bucket, the fraction of samples up to
// it and its largest value (clamped to Max): the percentile distribution.
func (h *Histogram) curve() []quantilePoint {
	var out []quantilePoint
	var seen uint64
	for i, c := range h.counts {
		if c == 0 {
			continue
		}
		seen += c
		_, hi := h.bounds(i)
		out = append(out, quantilePoint{q: float64(seen) / float64(h.n), value: time.Duration(min(int64(hi), h.max))})
	}
	return out
}
