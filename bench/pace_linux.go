package bench

import (
	"syscall"
	"time"
)

// pause blocks the calling goroutine for d in the nanosleep system call, not
// on a runtime timer.
//
// The paced publisher is the load generator, and it shares the Go runtime
// with the nodes it measures. While a collection is marking, Go runs "idle"
// mark workers on every processor that has nothing to do; they give the
// processor back as soon as a goroutine is runnable or the network has
// data, but they do not look at timers (golang/go#45632). With both
// processors of a 2-core machine in idle workers, a publisher waiting on a
// timer for its next 1 ms tick woke 10–15 ms late, and since events are
// stamped with the tick they were due at, that delay was charged to the
// system under test: p99 25 ms in the second of each collection, 3 ms in
// the others. A goroutine returning from a system call with no processor
// free goes to the global run queue, which the idle workers do check, so
// this wake-up is on time.
func pause(d time.Duration) {
	ts := syscall.NsecToTimespec(d.Nanoseconds())
	for {
		var left syscall.Timespec
		err := syscall.Nanosleep(&ts, &left)
		if err != syscall.EINTR {
			return
		}
		ts = left
	}
}
