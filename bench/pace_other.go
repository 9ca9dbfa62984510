//go:build !linux

package bench

import "time"

// pause blocks for d. Off Linux it is time.Sleep, so during a collection a
// tick may start late (see pace_linux.go).
func pause(d time.Duration) { time.Sleep(d) }
