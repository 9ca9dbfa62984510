package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"github.com/streamerd/streamer/internal/redistest"
)

// runBenchCmd runs `streamer bench args…` in-process.
func runBenchCmd(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errb bytes.Buffer
	err = runBench(context.Background(), args, stdio{in: strings.NewReader(""), out: &out, err: &errb})
	return out.String(), errb.String(), err
}

// lastJSON decodes the last line of stdout, which --json promises is one
// JSON object.
func lastJSON(t *testing.T, stdout string) map[string]any {
	t.Helper()
	lines := strings.Split(strings.TrimRight(stdout, "\n"), "\n")
	var m map[string]any
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &m); err != nil {
		t.Fatalf("last stdout line is not a JSON object: %v\n%s", err, stdout)
	}
	return m
}

// field returns the number at a dotted path of m, failing when absent.
func field(t *testing.T, m map[string]any, path string) float64 {
	t.Helper()
	var v any = m
	for p := range strings.SplitSeq(path, ".") {
		obj, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("JSON field %s: %q is not inside an object", path, p)
		}
		if v, ok = obj[p]; !ok {
			t.Fatalf("JSON has no field %s", path)
		}
	}
	f, ok := v.(float64)
	if !ok {
		t.Fatalf("JSON field %s = %v, not a number", path, v)
	}
	return f
}

func TestBenchJSONContract(t *testing.T) {
	t.Parallel()
	stdout, stderr, err := runBenchCmd(t, "--duration", "2s", "--rate", "2000", "--gateways", "2", "--subs", "200", "--json")
	if err != nil {
		t.Fatalf("bench: %v\nstderr:\n%s", err, stderr)
	}
	m := lastJSON(t, stdout)
	for _, f := range []string{"events_per_sec", "deliveries_per_sec", "latency_ms.p50", "latency_ms.p90", "latency_ms.p99",
		"latency_ms.p999", "latency_ms.max", "expected", "delivered", "lost", "duplicates", "baselines.naive.events_per_sec",
		"baselines.naive.ratio"} {
		field(t, m, f)
	}
	if lost := field(t, m, "lost"); lost != 0 {
		t.Errorf("lost = %v, want 0", lost)
	}
	expected, delivered, dups := field(t, m, "expected"), field(t, m, "delivered"), field(t, m, "duplicates")
	if expected != delivered-dups {
		t.Errorf("expected %v != delivered %v - duplicates %v", expected, delivered, dups)
	}
	if eps := field(t, m, "events_per_sec"); eps <= 0 {
		t.Errorf("events_per_sec = %v: the run measured nothing (throughput figures belong to the bench, not to this test)", eps)
	}
	if !strings.Contains(stderr, "[measure   1s]") || !strings.Contains(stderr, "latency ms") {
		t.Errorf("stderr lacks progress or summary:\n%s", stderr)
	}
	if _, ok := m["baselines"].(map[string]any)["redis_streams"]; ok {
		t.Error("embedded run reports a Redis baseline")
	}
}

// Redis mode, two nodes on one real redis-server: nothing lost, the raw
// Redis Streams baseline measured, and the run's keys deleted afterwards.
func TestBenchRedisSmoke(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	stdout, stderr, err := runBenchCmd(t, "--redis", srv.URL(), "--nodes", "2", "--gateways", "2", "--subs", "100",
		"--rate", "1000", "--duration", "1s", "--warmup", "200ms", "--baseline-duration", "300ms", "--partitions", "4", "--json")
	if err != nil {
		t.Fatalf("bench: %v\nstderr:\n%s", err, stderr)
	}
	m := lastJSON(t, stdout)
	if m["mode"] != "redis" || field(t, m, "nodes") != 2 {
		t.Errorf("mode %v, nodes %v", m["mode"], m["nodes"])
	}
	if lost, exp := field(t, m, "lost"), field(t, m, "expected"); lost != 0 || exp == 0 {
		t.Errorf("lost %v of %v expected", lost, exp)
	}
	if field(t, m, "baselines.redis_streams.events_per_sec") <= 0 || field(t, m, "baselines.redis_streams.ratio") <= 0 {
		t.Errorf("redis baseline: %v", m["baselines"])
	}
	rc := goredis.NewClient(&goredis.Options{Addr: srv.Addr()})
	defer rc.Close()
	keys, err := rc.Keys(context.Background(), "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) > 0 {
		t.Errorf("the run left %d keys in Redis, e.g. %q", len(keys), keys[0])
	}
}

// --redis-cluster: the bench starts a cluster of 1 master and one of 3,
// each master with a replica, runs the workload on each with and without
// waiting for the replica, and compares the four runs: nothing lost, each
// master's CPU reported.
func TestBenchRedisClusterComparison(t *testing.T) {
	t.Parallel()
	stdout, stderr, err := runBenchCmd(t, "--redis-cluster", "1,3", "--redis-cluster-replicas", "1", "--redis-wait-replicas", "0,1",
		"--nodes", "2", "--gateways", "2", "--subs", "100", "--rate", "1000", "--duration", "1s", "--warmup", "200ms",
		"--baseline-duration", "0", "--partitions", "6", "--json")
	if err != nil {
		t.Fatalf("bench: %v\nstderr:\n%s", err, stderr)
	}
	lines := strings.Split(strings.TrimRight(stdout, "\n"), "\n")
	var runs []map[string]any
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &runs); err != nil {
		t.Fatalf("last stdout line is not a JSON array: %v\n%s", err, stdout)
	}
	if len(runs) != 4 {
		t.Fatalf("%d runs, want 4 (1 and 3 shards, wait 0 and 1)", len(runs))
	}
	for i, m := range runs {
		shards, wait := []int{1, 1, 3, 3}[i], []int{0, 1, 0, 1}[i]
		if lost, exp := field(t, m, "lost"), field(t, m, "expected"); lost != 0 || exp == 0 {
			t.Errorf("run %d: lost %v of %v expected", i, lost, exp)
		}
		cpu, _ := m["redis_master_cpu_pct"].([]any)
		replicas, _ := m["redis_replica_cpu_pct"].([]any)
		if len(cpu) != shards || len(replicas) != shards {
			t.Errorf("run %d: masters' CPU %v, replicas' %v; want %d of each", i, m["redis_master_cpu_pct"], m["redis_replica_cpu_pct"], shards)
		}
		if w, _ := m["wait_replicas"].(float64); int(w) != wait {
			t.Errorf("run %d: wait_replicas %v, want %d", i, m["wait_replicas"], wait)
		}
		if field(t, m, "cpu_us_per_event") <= 0 || field(t, m, "redis_cpu_us_per_event") <= 0 {
			t.Errorf("run %d: CPU per event not measured: %v, %v", i, m["cpu_us_per_event"], m["redis_cpu_us_per_event"])
		}
	}
	if !strings.Contains(stdout, "Redis masters' CPU") {
		t.Errorf("no comparison table:\n%s", stdout)
	}
}

func TestBenchUsageErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		want string // in stderr
	}{
		{"several nodes need Redis", []string{"--nodes", "3"}, "exactly one node; add --redis"},
		{"bad rate", []string{"--rate", "fast"}, "--rate"},
		{"zero rate", []string{"--rate", "0"}, "--rate"},
		{"bad mix", []string{"--mix", "eq=50,doc=10"}, "sum to 60"},
		{"no gateways", []string{"--gateways", "0"}, "--gateways must be at least 1"},
		{"no duration", []string{"--duration", "0s"}, "--duration"},
		{"stray argument", []string{"now"}, "unexpected arguments"},
		{"cluster and redis", []string{"--redis-cluster", "1", "--redis", "redis://localhost:6379"}, "leave --redis out"},
		{"waiting without replicas", []string{"--redis-cluster", "1", "--redis-wait-replicas", "0,1"}, "--redis-cluster-replicas"},
		{"bad shard list", []string{"--redis-cluster", "1,x"}, "--redis-cluster"},
		{"wait list without cluster", []string{"--redis-wait-replicas", "0,1"}, "one number without --redis-cluster"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, stderr, err := runBenchCmd(t, tc.args...)
			if !errors.Is(err, errUsage) || !strings.Contains(stderr, tc.want) {
				t.Errorf("err %v, stderr %q; want errUsage and %q", err, stderr, tc.want)
			}
		})
	}
}
