// Package clock is the time source of everything time-driven in Streamer:
// lease renewal and expiry, gateway TTLs and the janitor, heartbeats, retry
// backoff and the puller's batching window. Production code uses Real; tests
// use a Fake that moves only when told to, so that a scenario such as "the
// lease ran out" does not depend on how fast the machine is.
//
// What is not a clock's business stays on real time: I/O deadlines handed
// to the network (a blocking read of Redis, a gRPC call's deadline) and the
// sub-millisecond pauses of the hot path that only trade latency for batch
// size.
package clock

import (
	"context"
	"time"
)

// Clock tells the time and makes timers. The zero value of a field of this
// type in a Config means Real.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// NewTimer returns a timer that fires once, d from now.
	NewTimer(d time.Duration) Timer
	// NewTicker returns a ticker that fires every d (d > 0), dropping ticks
	// a slow reader missed, as time.Ticker does.
	NewTicker(d time.Duration) Ticker
	// AfterFunc calls f in its own goroutine once d has passed.
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a time.Timer made by a Clock.
type Timer interface {
	// C delivers the time once the timer fires (nil for AfterFunc timers).
	C() <-chan time.Time
	// Stop prevents the timer from firing; false if it already fired or was
	// stopped.
	Stop() bool
	// Reset makes the timer fire d from now; false if it had fired or been
	// stopped.
	Reset(d time.Duration) bool
}

// Ticker is a time.Ticker made by a Clock.
type Ticker interface {
	C() <-chan time.Time
	Stop()
	Reset(d time.Duration)
}

// Or returns c, or Real when c is nil: the default of Config fields.
func Or(c Clock) Clock {
	if c == nil {
		return Real
	}
	return c
}

// Since is c.Now().Sub(t).
func Since(c Clock, t time.Time) time.Duration { return c.Now().Sub(t) }

// Until is t.Sub(c.Now()).
func Until(c Clock, t time.Time) time.Duration { return t.Sub(c.Now()) }

// Sleep waits for d on c, or until ctx is done; false when ctx is done.
func Sleep(ctx context.Context, c Clock, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := c.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C():
		return true
	}
}

// WithTimeout is context.WithTimeout on c's time: the context ends d from
// now on c. On Real it is context.WithTimeout itself (so the deadline reaches
// the network calls made with it); on another clock the context has no
// deadline and is cancelled with cause context.DeadlineExceeded when c
// reaches it.
func WithTimeout(ctx context.Context, c Clock, d time.Duration) (context.Context, context.CancelFunc) {
	if c == Real {
		return context.WithTimeout(ctx, d)
	}
	cctx, cancel := context.WithCancelCause(ctx)
	t := c.AfterFunc(d, func() { cancel(context.DeadlineExceeded) })
	return cctx, func() {
		t.Stop()
		cancel(context.Canceled)
	}
}

// WithDeadline is WithTimeout until the instant at on c.
func WithDeadline(ctx context.Context, c Clock, at time.Time) (context.Context, context.CancelFunc) {
	if c == Real {
		return context.WithDeadline(ctx, at)
	}
	return WithTimeout(ctx, c, Until(c, at))
}

// Real is the system clock.
var Real Clock = realClock{}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) NewTimer(d time.Duration) Timer { return realTimer{time.NewTimer(d)} }

func (realClock) NewTicker(d time.Duration) Ticker { return realTicker{time.NewTicker(d)} }

func (realClock) AfterFunc(d time.Duration, f func()) Timer { return realTimer{time.AfterFunc(d, f)} }

type realTimer struct{ t *time.Timer }

func (r realTimer) C() <-chan time.Time        { return r.t.C }
func (r realTimer) Stop() bool                 { return r.t.Stop() }
func (r realTimer) Reset(d time.Duration) bool { return r.t.Reset(d) }

type realTicker struct{ t *time.Ticker }

func (r realTicker) C() <-chan time.Time   { return r.t.C }
func (r realTicker) Stop()                 { r.t.Stop() }
func (r realTicker) Reset(d time.Duration) { r.t.Reset(d) }
