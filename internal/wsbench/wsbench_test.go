package wsbench

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/streamerd/streamer/internal/testbin"
)

// TestRunMeasuresBothWorkloads runs each workload briefly through a real
// node and gateway: everything published arrives exactly once at the
// connections it is for, and the run measured latency and CPU.
func TestRunMeasuresBothWorkloads(t *testing.T) {
	exe := testbin.Streamer(t)
	for _, w := range Workloads {
		t.Run(w, func(t *testing.T) {
			var progress bytes.Buffer
			res, err := Run(context.Background(), Config{Exe: exe, Workload: w, Conns: 200, Rate: 200,
				Warmup: 200 * time.Millisecond, Duration: time.Second, Progress: &progress})
			if err != nil {
				t.Fatal(err)
			}
			if f := res.Failures(); len(f) > 0 {
				t.Fatalf("failures %v; progress:\n%s", f, progress.String())
			}
			perEvent := uint64(200) // w2: every connection
			if w == "w1" {
				perEvent = 2 // 200 connections over 100 keys
			}
			if res.Published == 0 || res.Expected != res.Published*perEvent || res.Received != res.Expected {
				t.Fatalf("published %d, expected %d deliveries, received %d", res.Published, res.Expected, res.Received)
			}
			if res.P50 <= 0 || res.NodeCPU+res.GatewayCPU <= 0 || res.GatewayRSS <= 0 {
				t.Fatalf("nothing measured: %+v", res)
			}
			var out bytes.Buffer
			res.WriteSummary(&out)
			if !strings.Contains(out.String(), "µs per delivered message") {
				t.Fatalf("summary:\n%s", out.String())
			}
		})
	}
}

func TestConfigIsChecked(t *testing.T) {
	for _, cfg := range []Config{{Workload: "w3", Conns: 1, Rate: 1, Duration: time.Second}, {Workload: "w1", Rate: 1, Duration: time.Second}} {
		if _, err := Run(context.Background(), cfg); err == nil {
			t.Errorf("Run(%+v) accepted", cfg)
		}
	}
}

func TestEventFields(t *testing.T) {
	msg := []byte(`{"type":"event","subs":["s"],"op":"update","collection":"c","id":"d1","doc":{"k":1,"t":1700000000123456789,"p":"x"},"event_id":"e42","ts":1,"tenant":"bench"}`)
	if seq, ts, ok := eventFields(msg); !ok || seq != 42 || ts != 1700000000123456789 {
		t.Fatalf("eventFields = %d, %d, %v", seq, ts, ok)
	}
	for _, bad := range []string{`{"type":"subscribed","id":"s"}`, `{"type":"event","event_id":"x1"}`, `{"type":"event","doc":{"t":1}}`} {
		if _, _, ok := eventFields([]byte(bad)); ok {
			t.Errorf("eventFields(%s) accepted", bad)
		}
	}
}
