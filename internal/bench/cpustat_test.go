package bench

import (
	"testing"
	"time"
)

func TestCPUCounters(t *testing.T) {
	total, steal, ok := parseProcStat("cpu  100 1 50 800 10 0 5 30 7 0\ncpu0 1 2 3\n")
	if !ok || total != 996 || steal != 30 {
		t.Errorf("parseProcStat = %d, %d, %v; want 996, 30, true", total, steal, ok)
	}
	if _, _, ok := parseProcStat("intr 1 2\n"); ok {
		t.Error("parseProcStat accepted a file without a cpu line")
	}
	stall, ok := parsePressure("some avg10=1.00 avg60=2.00 avg300=3.00 total=123456\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n")
	if !ok || stall != 123456 {
		t.Errorf("parsePressure = %d, %v", stall, ok)
	}
	t0 := time.Unix(0, 0)
	a := cpuSample{at: t0, total: 1000, steal: 10, stallUs: 0, statOK: true, psiOK: true}
	b := cpuSample{at: t0.Add(time.Second), total: 1200, steal: 30, stallUs: 250_000, statOK: true, psiOK: true}
	if s, p := cpuBetween(a, b); s != 10 || p != 25 {
		t.Errorf("cpuBetween = %v%% steal, %v%% pressure; want 10, 25", s, p)
	}
	if s, p := cpuBetween(cpuSample{}, b); s != -1 || p != -1 {
		t.Errorf("cpuBetween without readings = %v, %v; want -1, -1", s, p)
	}
	if s := readCPU(); !s.statOK {
		t.Log("no /proc/stat here; the bench reports -1")
	}
}
