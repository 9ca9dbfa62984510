//go:build !linux

package bench

import "time"

// pacer waits out the paced publisher's ticks. Off Linux it is time.Sleep,
// whose wake-ups can be late by up to a millisecond, and by more during a
// collection (see pace_linux.go): latencies measured there include that.
type pacer struct{}

func newPacer() (*pacer, error) { return &pacer{}, nil }

func (*pacer) sleep(d time.Duration) error {
	time.Sleep(d)
	return nil
}

func (*pacer) close() {}
