package gcpolicy

import (
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"testing"
)

func TestPercentFor(t *testing.T) {
	for _, tt := range []struct {
		live, headroom uint64
		base, want     int
	}{
		{64 << 20, 256 << 20, 100, 400},  // goal = live + headroom
		{512 << 20, 256 << 20, 100, 100}, // large heap: GOGC's ratio
		{1 << 30, 256 << 20, 150, 150},   // never below the base
		{1, 256 << 20, 100, 6400},        // nearly empty heap: as if 4 MiB
		{0, 256 << 20, 100, 6400},        // before the first collection
		{1, 1 << 40, 100, maxPercent},    // capped
	} {
		if got := percentFor(tt.live, tt.headroom, tt.base); got != tt.want {
			t.Errorf("percentFor(%d, %d, %d) = %d, want %d", tt.live, tt.headroom, tt.base, got, tt.want)
		}
	}
}

func TestLimits(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tt := range []struct {
		text string
		want uint64
	}{
		{"1073741824\n", 1 << 30},
		{"max\n", 0},
		{"9223372036854771712\n", 0}, // cgroup v1's "no limit"
		{"junk", 0},
	} {
		if got := readLimit(write("limit", tt.text)); got != tt.want {
			t.Errorf("readLimit(%q) = %d, want %d", tt.text, got, tt.want)
		}
	}
	if got := readLimit(filepath.Join(dir, "missing")); got != 0 {
		t.Errorf("readLimit(missing) = %d", got)
	}
	meminfo := write("meminfo", "MemFree:         100 kB\nMemTotal:       24684132 kB\n")
	if got := memTotal(meminfo); got != 24684132<<10 {
		t.Errorf("memTotal = %d, want %d", got, uint64(24684132)<<10)
	}
	if got := memTotal(write("bad", "MemTotal: lots\n")); got != 0 {
		t.Errorf("memTotal(bad) = %d", got)
	}
}

var sink [][]byte

// TestPolicyPacesTheRealGC runs the policy on this test process: after
// collections with a known live heap, the runtime's GC percent and heap
// goal are what the policy computes, and Stop restores the percent.
func TestPolicyPacesTheRealGC(t *testing.T) {
	t.Setenv("GOGC", "")
	os.Unsetenv("GOGC")
	const headroom = 64 << 20
	p, st := Start(headroom)
	if !st.Active || st.Headroom != headroom {
		t.Fatalf("Start = %+v, want active with headroom %d", st, headroom)
	}
	defer p.Stop()
	if q, st := Start(headroom); q != nil || st.Active {
		t.Fatalf("a second Start while one runs = %v, %+v; want it refused", q, st)
	}
	// From the start, the goal is about live + headroom, not a multiple of
	// a tiny live heap (4 MiB being the runtime's minimum goal).
	if got := read("/gc/heap/live:bytes", "/gc/heap/goal:bytes"); got[1] > max(got[0], minLive)+headroom*11/10 {
		t.Fatalf("right after Start: heap goal %d with %d live bytes, want at most live + headroom", got[1], got[0])
	}

	live := make([][]byte, 0, 64)
	for range 64 {
		live = append(live, make([]byte, 128<<10)) // 8 MiB held
	}
	for range 3 { // a finalizer runs after the collection that finds it
		runtime.GC()
		runtime.GC()
		for range 200 { // churn, so that the finalizer goroutine runs
			sink = append(sink[:0], make([]byte, 4096))
			runtime.Gosched()
		}
	}
	got := read("/gc/gogc:percent", "/gc/heap/live:bytes", "/gc/heap/goal:bytes")
	gogc, heapLive, goal := got[0], got[1], got[2]
	want := uint64(percentFor(heapLive, headroom, 100))
	if gogc != want || p.Percent() != int(want) {
		t.Fatalf("GC percent %d (policy says %d) with %d live bytes, want %d", gogc, p.Percent(), heapLive, want)
	}
	if gogc <= 100 {
		t.Fatalf("GC percent %d: with %d live and a headroom of %d the policy should raise it", gogc, heapLive, headroom)
	}
	if lo, hi := heapLive+headroom*9/10, heapLive+headroom*11/10; goal < lo || goal > hi {
		t.Errorf("heap goal %d, want about live + headroom = %d", goal, heapLive+headroom)
	}
	runtime.KeepAlive(live)

	p.Stop()
	if gogc := read("/gc/gogc:percent")[0]; gogc != 100 {
		t.Errorf("after Stop: GC percent %d, want 100 again", gogc)
	}
	q, st := Start(headroom)
	if !st.Active {
		t.Errorf("Start after Stop = %+v, want active", st)
	}
	q.Stop()
}

func TestOffWhenGOGCSetOrNoHeadroom(t *testing.T) {
	if p, st := Start(0); p != nil || st.Active {
		t.Errorf("Start(0) = %v, %+v; want off", p, st)
	}
	t.Setenv("GOGC", "200")
	if p, st := Start(64 << 20); p != nil || st.Active || st.Reason == "" {
		t.Errorf("Start with GOGC set = %v, %+v; want off, with a reason", p, st)
	}
}

func read(names ...string) []uint64 {
	s := make([]metrics.Sample, len(names))
	for i, n := range names {
		s[i].Name = n
	}
	metrics.Read(s)
	out := make([]uint64, len(s))
	for i := range s {
		out[i] = s[i].Value.Uint64()
	}
	return out
}
