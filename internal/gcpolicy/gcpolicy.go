// Package gcpolicy paces Go's garbage collector by a memory headroom
// instead of by GOGC's ratio alone.
//
// With the default GOGC=100 a process collects whenever its heap doubles.
// A Streamer node keeps a modest live heap (its subscription index) and
// allocates at a steady rate per event, so it collects about once a second
// under load; on a small machine each collection's marking competes with
// event delivery for the cores, and the events that arrive meanwhile make
// up the latency tail. Measured on a 2-core machine with Redis
// (docs/PERFORMANCE.md): at 20,000 events/s, p99 36–43 ms with GOGC=100 and
// 8–9 ms with a 512 MiB headroom; at 5,000 events/s 14 ms and 3 ms.
//
// The policy keeps the heap goal at max(2 × live, live + headroom): a
// process with a small live heap collects only once it has allocated
// headroom bytes, one with a large live heap behaves as with GOGC=100. The
// memory it costs is bounded by headroom, whatever the live heap. The
// headroom is capped at a quarter of the memory the process may use (its
// cgroup limit, else the machine's), and the policy stays off when GOGC is
// set in the environment: an operator's explicit setting wins. GOMEMLIMIT
// keeps working on top of it.
package gcpolicy

import (
	"bufio"
	"bytes"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"sync"
	"sync/atomic"
)

// DefaultHeadroom is the headroom the commands use unless told otherwise.
const DefaultHeadroom = 512 << 20

// maxPercent bounds the GC percent the policy sets (for a nearly empty
// heap the headroom would ask for far more).
const maxPercent = 100_000

// Policy is a running policy.
type Policy struct {
	headroom uint64
	base     int // GC percent before Start, restored by Stop
	stopped  atomic.Bool
	stopOnce sync.Once

	mu      sync.Mutex
	percent int // last set
}

// Status says how a Start call came out, for a startup log line.
type Status struct {
	// Active is false when the policy is off: headroom 0, or GOGC set.
	Active bool
	// Headroom is the headroom in effect, after the memory cap.
	Headroom uint64
	// Reason explains an inactive policy or a capped headroom.
	Reason string
}

// active is set while a policy runs: a process has one GC.
var active atomic.Bool

// Start applies the policy with the given headroom in bytes (0 = off) until
// Stop. While one policy runs, another Start leaves it alone and reports
// so (several nodes in one process share one GC).
func Start(headroom uint64) (*Policy, Status) {
	switch {
	case headroom == 0:
		return nil, Status{Reason: "off (headroom 0): GOGC's ratio alone paces the GC"}
	case os.Getenv("GOGC") != "":
		return nil, Status{Reason: "off: GOGC is set in the environment and wins"}
	case !active.CompareAndSwap(false, true):
		return nil, Status{Reason: "already paced by another policy in this process"}
	}
	st := Status{Active: true, Headroom: headroom}
	if avail, from := available(); avail > 0 && headroom > avail/4 {
		st.Headroom = avail / 4
		st.Reason = "capped at a quarter of the " + from
	}
	base := debug.SetGCPercent(100)
	debug.SetGCPercent(base)
	if base < 0 {
		active.Store(false)
		return nil, Status{Reason: "off: the GC is disabled"}
	}
	p := &Policy{headroom: st.Headroom, base: base}
	p.adjust()
	p.arm()
	return p, st
}

// Stop restores the GC percent Start found. Nil-safe.
func (p *Policy) Stop() {
	if p == nil {
		return
	}
	p.stopOnce.Do(func() {
		p.stopped.Store(true)
		p.mu.Lock()
		defer p.mu.Unlock()
		debug.SetGCPercent(p.base)
		active.Store(false)
	})
}

// Percent returns the GC percent last set (0 for a nil policy).
func (p *Policy) Percent() int {
	if p == nil {
		return 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.percent
}

// sentinel is garbage whose finalizer runs after every collection that
// finds it: it adjusts the percent and arms the next one.
type sentinel struct {
	p *Policy
	_ [16]byte // not tiny-allocated, so that it is freed on its own
}

func (p *Policy) arm() {
	s := &sentinel{p: p}
	runtime.SetFinalizer(s, func(s *sentinel) {
		if !s.p.stopped.Load() {
			s.p.adjust()
			s.p.arm()
		}
	})
}

// adjust sets the percent for the live heap the last collection found.
func (p *Policy) adjust() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped.Load() {
		return
	}
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	var live uint64
	if s[0].Value.Kind() == metrics.KindUint64 {
		live = s[0].Value.Uint64()
	}
	pct := percentFor(live, p.headroom, p.base)
	if pct != p.percent {
		debug.SetGCPercent(pct)
		p.percent = pct
	}
}

// minLive is the smallest live heap percentFor assumes: the runtime's own
// minimum heap goal is 4 MiB × GOGC/100, and before the first collection
// the live heap reads as 0, so a smaller figure would put the goal far
// beyond live + headroom.
const minLive = 4 << 20

// percentFor returns the GC percent that puts the heap goal at
// max(live × (1 + base/100), live + headroom).
func percentFor(live, headroom uint64, base int) int {
	pct := headroom * 100 / max(live, minLive)
	return max(int(min(pct, maxPercent)), base)
}

// available returns the memory this process may use: its cgroup's limit
// (v2, then v1), else the machine's total; 0 if none can be read.
func available() (uint64, string) {
	if n := readLimit("/sys/fs/cgroup/memory.max"); n > 0 {
		return n, "cgroup memory limit"
	}
	if n := readLimit("/sys/fs/cgroup/memory/memory.limit_in_bytes"); n > 0 {
		return n, "cgroup memory limit"
	}
	if n := memTotal("/proc/meminfo"); n > 0 {
		return n, "machine's memory"
	}
	return 0, ""
}

// unlimited is what cgroup v1 reports for no limit (rounded to pages), or
// more.
const unlimited = 1 << 62

// readLimit reads a cgroup memory limit file: a byte count, or "max".
func readLimit(path string) uint64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	n, err := strconv.ParseUint(string(bytes.TrimSpace(b)), 10, 64)
	if err != nil || n >= unlimited {
		return 0
	}
	return n
}

// memTotal reads MemTotal from a meminfo file.
func memTotal(path string) uint64 {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := bytes.CutPrefix(sc.Bytes(), []byte("MemTotal:"))
		if !ok {
			continue
		}
		kb, ok := bytes.CutSuffix(bytes.TrimSpace(rest), []byte(" kB"))
		if !ok {
			return 0
		}
		n, err := strconv.ParseUint(string(bytes.TrimSpace(kb)), 10, 64)
		if err != nil {
			return 0
		}
		return n << 10
	}
	return 0
}
