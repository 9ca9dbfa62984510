package main

import (
	"flag"
	"fmt"
	"log/slog"

	"github.com/streamerd/streamer/internal/gcpolicy"
)

// gcHeadroomFlag registers --gc-headroom-mb on fs.
func gcHeadroomFlag(fs *flag.FlagSet) *int {
	return fs.Int("gc-headroom-mb", gcpolicy.DefaultHeadroom>>20,
		"memory the garbage collector may let garbage take beyond the live heap, in `MiB`: fewer collections, a shorter latency tail (capped at a quarter of the memory limit; 0 = GOGC alone; ignored when GOGC is set)")
}

// startGCPolicy applies the headroom policy and logs how the GC is paced.
// It returns the policy (nil when off) and a one-line description.
func startGCPolicy(mb int, logger *slog.Logger) (*gcpolicy.Policy, string, error) {
	if mb < 0 {
		return nil, "", fmt.Errorf("--gc-headroom-mb must not be negative")
	}
	p, st := gcpolicy.Start(uint64(mb) << 20)
	desc := st.Reason
	if st.Active {
		desc = fmt.Sprintf("headroom %d MiB (--gc-headroom-mb)", st.Headroom>>20)
		if st.Reason != "" {
			desc += ", " + st.Reason
		}
	}
	logger.Info("garbage collector pacing", "pacing", desc)
	return p, desc, nil
}
