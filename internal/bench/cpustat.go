package bench

import (
	"os"
	"strconv"
	"strings"
	"time"
)

// cpuSample is a reading of the machine's CPU counters: /proc/stat's
// aggregate line (in ticks) and the CPU pressure stall total
// (/proc/pressure/cpu "some", in µs). ok is false where they cannot be
// read (not Linux, or no PSI).
type cpuSample struct {
	at            time.Time
	total, steal  uint64
	stallUs       uint64
	statOK, psiOK bool
}

func readCPU() cpuSample {
	s := cpuSample{at: time.Now()}
	if b, err := os.ReadFile("/proc/stat"); err == nil {
		s.total, s.steal, s.statOK = parseProcStat(string(b))
	}
	if b, err := os.ReadFile("/proc/pressure/cpu"); err == nil {
		s.stallUs, s.psiOK = parsePressure(string(b))
	}
	return s
}

// parseProcStat returns the sum of the "cpu" line's counters and its steal
// counter (the 8th).
func parseProcStat(text string) (total, steal uint64, ok bool) {
	line, _, _ := strings.Cut(text, "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0, false
	}
	for i, v := range f[1:] {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, 0, false
		}
		if i < 8 { // guest time is already counted in user time
			total += n
		}
		if i == 7 {
			steal = n
		}
	}
	return total, steal, true
}

// parsePressure returns the "some" line's total stall time in µs.
func parsePressure(text string) (uint64, bool) {
	for line := range strings.SplitSeq(text, "\n") {
		if !strings.HasPrefix(line, "some ") {
			continue
		}
		for _, f := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(f, "total="); ok {
				n, err := strconv.ParseUint(v, 10, 64)
				return n, err == nil
			}
		}
	}
	return 0, false
}

// cpuBetween returns the share of CPU time the hypervisor gave to others
// (steal) and the share of wall time in which some task waited for a CPU
// (pressure), in percent, between two samples; -1 where unknown.
func cpuBetween(a, b cpuSample) (stealPct, pressurePct float64) {
	stealPct, pressurePct = -1, -1
	if a.statOK && b.statOK && b.total > a.total {
		stealPct = 100 * float64(b.steal-a.steal) / float64(b.total-a.total)
	}
	if wall := b.at.Sub(a.at); a.psiOK && b.psiOK && wall > 0 {
		pressurePct = 100 * float64(b.stallUs-a.stallUs) / float64(wall.Microseconds())
	}
	return stealPct, pressurePct
}

// CPUSample is a reading of the machine's CPU counters, for the benches of
// other packages.
type CPUSample struct{ s cpuSample }

// ReadCPU reads the machine's CPU counters.
func ReadCPU() CPUSample { return CPUSample{readCPU()} }

// Until returns the steal and pressure percentages from a to b (see
// cpuBetween); -1 where unknown.
func (a CPUSample) Until(b CPUSample) (stealPct, pressurePct float64) { return cpuBetween(a.s, b.s) }
