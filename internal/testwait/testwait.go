// Package testwait is how Streamer's tests wait: for a condition, with a
// deadline, never for a fixed time; on a fake clock, by stepping it until a
// condition holds. When the deadline passes the test fails
// naming what it waited for (and, with ForState, the last state it saw), so
// a failure under load reads as "timed out after 30s waiting for shares
// map[n1:6 n2:6]; last seen map[n1:7 n2:5]", not as a wrong value.
package testwait

import (
	"fmt"
	"testing"
	"time"

	"github.com/streamerd/streamer/internal/clock"
)

// Timeout is how long For and ForState wait. It is long on purpose: a
// condition that holds is seen at once, so the limit costs nothing on a
// passing run and only has to be longer than the slowest machine.
const Timeout = 30 * time.Second

// For polls cond until it returns true, failing the test after Timeout.
func For(t testing.TB, what string, cond func() bool) {
	t.Helper()
	ForState(t, what, func() (bool, any) { return cond(), nil })
}

// ForState polls cond until its first result is true, failing the test after
// Timeout with the last state cond returned.
func ForState(t testing.TB, what string, cond func() (bool, any)) {
	t.Helper()
	if err := Until(Timeout, cond); err != nil {
		t.Fatalf("timed out after %v waiting for %s%s", Timeout, what, err.state)
	}
}

// Failure is what Until returns when the timeout passed first.
type Failure struct{ state string }

func (f *Failure) Error() string { return "timed out" + f.state }

// Until polls cond until its first result is true and returns nil, or
// returns a *Failure carrying the last state once timeout has passed. It is
// for helpers that cannot fail a test themselves (goroutines, cleanups).
func Until(timeout time.Duration, cond func() (bool, any)) *Failure {
	deadline := time.Now().Add(timeout)
	poll := 100 * time.Microsecond
	for {
		ok, state := cond()
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			f := &Failure{}
			if state != nil {
				f.state = "; last seen: " + fmtState(state)
			}
			return f
		}
		time.Sleep(poll) // the polling interval, not synchronisation
		poll = min(2*poll, 10*time.Millisecond)
	}
}

func fmtState(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	return fmt.Sprint(v)
}

// Step advances fc by d and waits until every round of work it started has
// finished (clock.Fake.WaitDelivered), failing the test after Timeout.
func Step(t testing.TB, fc *clock.Fake, d time.Duration) {
	t.Helper()
	fc.Advance(d)
	if err := fc.WaitDelivered(Timeout); err != nil {
		t.Fatal(err)
	}
}

// StepUntil steps fc by d until cond's first result is true, failing the
// test with cond's last state after Timeout of real time.
func StepUntil(t testing.TB, fc *clock.Fake, what string, d time.Duration, cond func() (bool, any)) {
	t.Helper()
	ForState(t, what, func() (bool, any) {
		if ok, state := cond(); ok {
			return true, state
		}
		Step(t, fc, d)
		return cond()
	})
}
