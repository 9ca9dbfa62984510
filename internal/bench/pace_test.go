package bench

import (
	"testing"
	"time"
)

// TestPacerSleepsAtLeastTheDuration: the pacer re-arms for every sleep and
// never returns before the duration has passed (a tick published early
// would be stamped in the future and its latency understated).
func TestPacerSleepsAtLeastTheDuration(t *testing.T) {
	pc, err := newPacer()
	if err != nil {
		t.Fatal(err)
	}
	defer pc.close()
	for _, d := range []time.Duration{time.Nanosecond, 200 * time.Microsecond, time.Millisecond, 3 * time.Millisecond} {
		for range 5 {
			start := time.Now()
			if err := pc.sleep(d); err != nil {
				t.Fatalf("sleep(%v): %v", d, err)
			}
			if got := time.Since(start); got < d {
				t.Fatalf("sleep(%v) returned after %v", d, got)
			}
		}
	}
}
