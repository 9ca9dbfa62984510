package client

import (
	"testing"
	"time"
)

func TestBackoffCeiling(t *testing.T) {
	b := backoff{min: 100 * time.Millisecond, max: time.Second}
	for _, tc := range []struct {
		name    string
		attempt int
		want    time.Duration
	}{
		{"first attempt is min", 0, 100 * time.Millisecond},
		{"doubles", 1, 200 * time.Millisecond},
		{"doubles again", 3, 800 * time.Millisecond},
		{"capped at max", 4, time.Second},
		{"huge attempt does not overflow", 1000, time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := b.ceiling(tc.attempt); got != tc.want {
				t.Errorf("ceiling(%d) = %v, want %v", tc.attempt, got, tc.want)
			}
		})
	}
}

func TestBackoffDelayIsFullJitter(t *testing.T) {
	b := backoff{min: 100 * time.Millisecond, max: time.Second}
	for _, tc := range []struct {
		name    string
		rnd     func(int64) int64
		attempt int
		want    time.Duration
	}{
		{"lowest draw is zero", func(int64) int64 { return 0 }, 2, 0},
		{"highest draw is just below the ceiling", func(n int64) int64 { return n - 1 }, 2, 400*time.Millisecond - 1},
		{"middle draw", func(n int64) int64 { return n / 2 }, 5, 500 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var asked int64
			got := b.delay(tc.attempt, func(n int64) int64 { asked = n; return tc.rnd(n) })
			if got != tc.want {
				t.Errorf("delay = %v, want %v", got, tc.want)
			}
			if c := b.ceiling(tc.attempt); asked != int64(c) {
				t.Errorf("drew from [0, %v), want [0, %v)", time.Duration(asked), c)
			}
		})
	}
}
