package clock

import (
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Fake is a Clock that moves only when Advance is called. Timers and tickers
// fire during Advance, in the order of their deadlines; a ticker fires at
// most once per Advance (a slow reader misses ticks, as with time.Ticker).
//
// Tests pair Advance with WaitDelivered, which waits until every timer the
// advance fired has been stopped or reset, every ticker's tick received and
// every AfterFunc function returned. A loop that re-arms its timer when its
// work is done (t.Reset after the round, not a Ticker) is then known to have
// finished the round that time started, whatever the machine's load, and the
// next Advance cannot overrun it.
type Fake struct {
	mu     sync.Mutex
	now    time.Time
	timers map[*fakeTimer]struct{} // armed
	fired  map[*fakeTimer]struct{} // fired one-shot timers not stopped or reset since
	funcs  atomic.Int64            // AfterFunc functions running
}

// NewFake returns a Fake reading start.
func NewFake(start time.Time) *Fake {
	return &Fake{now: start, timers: map[*fakeTimer]struct{}{}, fired: map[*fakeTimer]struct{}{}}
}

var _ Clock = (*Fake)(nil)

// fakeTimer is a timer, ticker or AfterFunc of a Fake.
type fakeTimer struct {
	f      *Fake
	when   time.Time
	period time.Duration // > 0 for tickers
	ch     chan time.Time
	fn     func()
}

// Now returns the fake time.
func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

// NewTimer returns a timer firing when the fake time reaches now+d.
func (f *Fake) NewTimer(d time.Duration) Timer {
	return f.add(&fakeTimer{f: f, ch: make(chan time.Time, 1)}, d)
}

// NewTicker returns a ticker firing every d of fake time.
func (f *Fake) NewTicker(d time.Duration) Ticker {
	if d <= 0 {
		panic(fmt.Sprintf("clock: non-positive interval %v for NewTicker", d))
	}
	return fakeTicker{f.add(&fakeTimer{f: f, period: d, ch: make(chan time.Time, 1)}, d)}
}

// AfterFunc calls fn in its own goroutine when the fake time reaches now+d.
func (f *Fake) AfterFunc(d time.Duration, fn func()) Timer {
	return f.add(&fakeTimer{f: f, fn: fn}, d)
}

func (f *Fake) add(t *fakeTimer, d time.Duration) *fakeTimer {
	f.mu.Lock()
	defer f.mu.Unlock()
	t.when = f.now.Add(d)
	f.timers[t] = struct{}{}
	if d <= 0 && t.period == 0 {
		f.fire(t)
	}
	return t
}

// Timers returns how many timers and tickers are armed.
func (f *Fake) Timers() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.timers)
}

// Advance moves the fake time forward by d, firing every timer and ticker
// whose deadline it passes, earliest first.
func (f *Fake) Advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	target := f.now.Add(d)
	for {
		due := make([]*fakeTimer, 0, len(f.timers))
		for t := range f.timers {
			if !t.when.After(target) {
				due = append(due, t)
			}
		}
		if len(due) == 0 {
			break
		}
		sort.Slice(due, func(i, j int) bool { return due[i].when.Before(due[j].when) })
		t := due[0]
		if t.when.After(f.now) {
			f.now = t.when
		}
		f.fire(t)
	}
	f.now = target
}

// fire delivers t's tick (f.mu held): a ticker is re-armed past the target
// time of the advance at the latest; a timer or AfterFunc is disarmed.
func (f *Fake) fire(t *fakeTimer) {
	if t.period > 0 {
		t.when = t.when.Add(t.period)
	} else {
		delete(f.timers, t)
		if t.ch != nil {
			f.fired[t] = struct{}{}
		}
	}
	if t.fn != nil {
		f.funcs.Add(1)
		go func() {
			defer f.funcs.Add(-1)
			t.fn()
		}()
		return
	}
	select {
	case t.ch <- f.now:
	default: // the reader has not taken the last tick: this one is dropped
	}
}

// WaitDelivered waits, up to timeout of real time, until every timer that
// fired has been stopped or reset, every ticker's channel is empty and every
// AfterFunc function that fired has returned. It returns an error saying
// what is still waiting if the timeout passed first. Code on a Fake must
// therefore stop (or reset) every timer it made, as clock.Sleep does.
func (f *Fake) WaitDelivered(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		pending, running := f.undelivered(), f.funcs.Load()
		if pending == 0 && running == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("clock: after %v, %d fired timers not yet stopped or reset (or ticks not received) and %d AfterFunc functions still running", timeout, pending, running)
		}
		time.Sleep(100 * time.Microsecond) // polling a channel's length: there is nothing to wait on
	}
}

// undelivered counts the fired timers not stopped or reset and the tickers
// whose tick was not received.
func (f *Fake) undelivered() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := len(f.fired)
	for t := range f.timers {
		if t.period > 0 && len(t.ch) > 0 {
			n++
		}
	}
	return n
}

func (t *fakeTimer) C() <-chan time.Time { return t.ch }

// Stop disarms the timer or ticker; it reports whether it was armed.
func (t *fakeTimer) Stop() bool {
	t.f.mu.Lock()
	defer t.f.mu.Unlock()
	_, armed := t.f.timers[t]
	delete(t.f.timers, t)
	delete(t.f.fired, t)
	return armed
}

// Reset re-arms the timer d from now; it reports whether it was armed.
func (t *fakeTimer) Reset(d time.Duration) bool {
	armed := t.Stop()
	if t.ch != nil && t.period == 0 {
		select {
		case <-t.ch: // as time.Timer since Go 1.23: no stale value after Reset
		default:
		}
	}
	if t.period > 0 {
		t.period = d
	}
	t.f.add(t, d)
	return armed
}

// Ticker's Reset has no result.
type fakeTicker struct{ *fakeTimer }

func (t fakeTicker) Reset(d time.Duration) { t.fakeTimer.Reset(d) }
func (t fakeTicker) Stop()                 { t.fakeTimer.Stop() }
