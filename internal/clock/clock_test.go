package clock

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var epoch = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func received(c <-chan time.Time) (time.Time, bool) {
	select {
	case v := <-c:
		return v, true
	default:
		return time.Time{}, false
	}
}

func TestFakeTimerFiresAtItsDeadline(t *testing.T) {
	f := NewFake(epoch)
	tm := f.NewTimer(10 * time.Second)
	f.Advance(9 * time.Second)
	if _, ok := received(tm.C()); ok {
		t.Fatal("timer fired 1 s before its deadline")
	}
	f.Advance(time.Second)
	v, ok := received(tm.C())
	if !ok || !v.Equal(epoch.Add(10*time.Second)) {
		t.Fatalf("timer at its deadline: got %v, %v; want the deadline", v, ok)
	}
	if tm.Stop() {
		t.Fatal("Stop of a fired timer reported it armed")
	}
	if f.Timers() != 0 {
		t.Fatalf("%d timers armed after firing", f.Timers())
	}
}

func TestFakeTickerDropsMissedTicksAndKeepsItsPhase(t *testing.T) {
	f := NewFake(epoch)
	tk := f.NewTicker(time.Second)
	defer tk.Stop()
	f.Advance(3500 * time.Millisecond) // three deadlines passed, one tick kept
	if v, ok := received(tk.C()); !ok || !v.Equal(epoch.Add(time.Second)) {
		t.Fatalf("first tick = %v, %v; want the first deadline (later ones dropped)", v, ok)
	}
	if _, ok := received(tk.C()); ok {
		t.Fatal("a second tick was buffered")
	}
	f.Advance(500 * time.Millisecond)
	if v, ok := received(tk.C()); !ok || !v.Equal(epoch.Add(4*time.Second)) {
		t.Fatalf("tick at 4 s = %v, %v", v, ok)
	}
	tk.Reset(10 * time.Second)
	f.Advance(9 * time.Second)
	if _, ok := received(tk.C()); ok {
		t.Fatal("reset ticker fired early")
	}
}

func TestFakeAfterFuncAndWaitDelivered(t *testing.T) {
	f := NewFake(epoch)
	release := make(chan struct{})
	done := make(chan struct{})
	f.AfterFunc(time.Second, func() { <-release; close(done) })
	f.Advance(time.Second)
	if err := f.WaitDelivered(10 * time.Millisecond); err == nil {
		t.Fatal("WaitDelivered returned while the function was still running")
	}
	close(release)
	if err := f.WaitDelivered(time.Minute); err != nil {
		t.Fatal(err)
	}
	<-done

	tm := f.NewTimer(time.Second)
	f.Advance(time.Second)
	if err := f.WaitDelivered(10 * time.Millisecond); err == nil {
		t.Fatal("WaitDelivered returned with a tick unreceived")
	}
	<-tm.C()
	if err := f.WaitDelivered(10 * time.Millisecond); err == nil {
		t.Fatal("WaitDelivered returned before the fired timer was stopped or reset (its round may still run)")
	}
	tm.Reset(time.Second)
	if err := f.WaitDelivered(time.Minute); err != nil {
		t.Fatal(err)
	}
	tm.Stop()
}

func TestWithTimeoutOnFakeEndsWhenTheFakeTimeDoes(t *testing.T) {
	f := NewFake(epoch)
	ctx, cancel := WithTimeout(context.Background(), f, time.Minute)
	defer cancel()
	f.Advance(59 * time.Second)
	if ctx.Err() != nil {
		t.Fatal("context ended before its fake deadline")
	}
	f.Advance(time.Second)
	if err := f.WaitDelivered(time.Minute); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(context.Cause(ctx), context.DeadlineExceeded) {
		t.Fatalf("cause = %v, want DeadlineExceeded", context.Cause(ctx))
	}
}

func TestSleepEndsWithContextOrTime(t *testing.T) {
	f := NewFake(epoch)
	ctx, cancel := context.WithCancel(context.Background())
	res := make(chan bool)
	go func() { res <- Sleep(ctx, f, time.Hour) }()
	cancel()
	if <-res {
		t.Fatal("Sleep reported time passing when its context was cancelled")
	}
	if !Sleep(context.Background(), Real, time.Microsecond) {
		t.Fatal("real Sleep reported a cancelled context")
	}
}

func TestRealClockAndHelpers(t *testing.T) {
	if Or(nil) != Real {
		t.Fatal("Or(nil) is not the system clock")
	}
	f := NewFake(epoch)
	if Or(f) != f {
		t.Fatal("Or(f) is not f")
	}
	if d := Since(f, epoch.Add(-time.Second)); d != time.Second {
		t.Fatalf("Since = %v", d)
	}
	if d := Until(f, epoch.Add(time.Second)); d != time.Second {
		t.Fatalf("Until = %v", d)
	}

	tm := Real.NewTimer(time.Hour)
	if !tm.Stop() || tm.Reset(time.Microsecond) {
		t.Fatal("a stopped real timer: Stop or Reset reported wrongly")
	}
	<-tm.C()
	tk := Real.NewTicker(time.Microsecond)
	<-tk.C()
	tk.Reset(time.Microsecond)
	<-tk.C()
	tk.Stop()
	done := make(chan struct{})
	Real.AfterFunc(time.Microsecond, func() { close(done) })
	<-done
	if d := Real.Now(); d.IsZero() {
		t.Fatal("Real.Now is zero")
	}

	ctx, cancel := WithTimeout(context.Background(), Real, time.Hour)
	if _, ok := ctx.Deadline(); !ok {
		t.Fatal("WithTimeout on Real has no deadline for the network calls")
	}
	cancel()
	ctx, cancel = WithDeadline(context.Background(), Real, time.Now().Add(time.Hour))
	if _, ok := ctx.Deadline(); !ok {
		t.Fatal("WithDeadline on Real has no deadline")
	}
	cancel()
	ctx, cancel = WithDeadline(context.Background(), f, epoch.Add(time.Minute))
	f.Advance(time.Minute)
	<-ctx.Done()
	cancel()
	if err := f.WaitDelivered(time.Minute); err != nil {
		t.Fatal(err)
	}
}

func TestFakeEdgeCases(t *testing.T) {
	f := NewFake(epoch)
	// A timer of zero fires at once; Sleep of zero returns at once.
	if _, ok := received(f.NewTimer(0).C()); !ok {
		t.Fatal("a timer of 0 did not fire at once")
	}
	if !Sleep(context.Background(), f, 0) {
		t.Fatal("Sleep(0) reported a cancelled context")
	}
	defer func() {
		if recover() == nil {
			t.Fatal("NewTicker(0) did not panic")
		}
	}()
	f.NewTicker(0)
}
