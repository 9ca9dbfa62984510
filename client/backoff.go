package client

import "time"

// backoff computes reconnect delays: exponential growth from min up to max,
// with full jitter (the delay is uniformly random between 0 and the
// exponential ceiling), so that many gateways cut off together do not
// reconnect in lockstep.
type backoff struct {
	min, max time.Duration
}

// ceiling returns the upper bound of the delay before reconnect attempt n
// (0-based): min·2ⁿ, capped at max.
func (b backoff) ceiling(n int) time.Duration {
	d := b.min
	for i := 0; i < n && d < b.max; i++ {
		d *= 2
	}
	return min(d, b.max)
}

// delay returns the wait before reconnect attempt n, uniformly random in
// [0, ceiling(n)); rnd(k) must return a uniform value in [0, k) (such as
// math/rand/v2.Int64N).
func (b backoff) delay(n int, rnd func(int64) int64) time.Duration {
	c := b.ceiling(n)
	if c <= 0 {
		return 0
	}
	return time.Duration(rnd(int64(c)))
}
