package bench

import (
	"bytes"
	"context"
	"runtime/metrics"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/streamerd/streamer/internal/redistest"
)

// A short embedded run: every expected pair arrives, the counters add up,
// the plot renders, and nothing is left running (TestMain checks leaks).
func TestRunEmbedded(t *testing.T) {
	var progress bytes.Buffer
	forced := func() uint64 {
		s := []metrics.Sample{{Name: "/gc/cycles/forced:gc-cycles"}}
		metrics.Read(s)
		return s[0].Value.Uint64()
	}
	forcedBefore := forced()
	res, err := Run(context.Background(), Config{
		Gateways: 2, SubsPerGateway: 300, DistinctValues: 30, Collections: 4,
		Rate: 3000, Duration: 1200 * time.Millisecond, Warmup: 200 * time.Millisecond,
		BaselineDuration: 100 * time.Millisecond, Progress: &progress,
	})
	if err != nil {
		t.Fatal(err)
	}
	// One collection of the setup's garbage, one under load in the warmup (run.go
	// says why), none in the measured phase.
	if n := forced() - forcedBefore; n != 2 {
		t.Errorf("%d forced collections, want 2: after subscribing and in the warmup", n)
	}
	if f := res.Failures(); len(f) > 0 {
		t.Fatalf("failures: %v\nexamples: %v", f, res.Examples)
	}
	if res.Expected == 0 || res.Delivered != res.Expected || res.Lost != 0 || res.Duplicates != 0 {
		t.Errorf("expected %d, delivered %d, lost %d, duplicates %d", res.Expected, res.Delivered, res.Lost, res.Duplicates)
	}
	if res.Events != 3600 {
		t.Errorf("events = %d, want 3000/s × 1.2s", res.Events)
	}
	if res.Latency.Samples == 0 || res.Latency.P50 <= 0 || res.Latency.P50 > res.Latency.P99 || res.Latency.P99 > res.Latency.Max {
		t.Errorf("latency %+v", res.Latency)
	}
	if res.Baselines.Naive == nil || res.Baselines.Naive.EventsPerSec <= 0 || res.Baselines.RedisStreams != nil {
		t.Errorf("baselines %+v", res.Baselines)
	}
	if len(res.Timeline) < 2 {
		t.Errorf("timeline has %d seconds", len(res.Timeline))
	}
	if !strings.Contains(progress.String(), "[measure   1s]") {
		t.Errorf("no progress line in:\n%s", progress.String())
	}
	var png bytes.Buffer
	if err := WritePlot(&png, res); err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(png.Bytes(), []byte("\x89PNG")) || png.Len() < 10_000 {
		t.Errorf("plot: %d bytes, not a PNG image", png.Len())
	}
}

// TestRunWithNoisyNeighbour: a run with an abusive tenant next to the
// workload completes, delivers every expected pair of the workload, and
// says which neighbour ran.
func TestRunWithNoisyNeighbour(t *testing.T) {
	var progress bytes.Buffer
	res, err := Run(context.Background(), Config{
		Gateways: 2, SubsPerGateway: 300, DistinctValues: 30, Collections: 4,
		Rate: 2000, Duration: time.Second, Warmup: 0, BaselineDuration: 0, Progress: &progress, Abuse: "cel",
	})
	if err != nil {
		t.Fatal(err)
	}
	if f := res.Failures(); len(f) > 0 {
		t.Fatalf("failures: %v", f)
	}
	if res.Abuse != "cel" || !strings.Contains(progress.String(), `noisy neighbour "cel" running`) {
		t.Errorf("abuse %q; progress:\n%s", res.Abuse, progress.String())
	}
	if _, err := Run(context.Background(), Config{Abuse: "nope"}); err == nil || !strings.Contains(err.Error(), `unknown abuse "nope"`) {
		t.Errorf("unknown abuse: %v", err)
	}
}

// TestRunScale: the scale scenario on a real Redis grows the pool to four
// nodes and back to one during the measured phase, and loses nothing.
func TestRunScale(t *testing.T) {
	srv := redistest.Start(t)
	var progress bytes.Buffer
	res, err := Run(context.Background(), Config{RedisURL: srv.URL(), Scale: true,
		Gateways: 2, SubsPerGateway: 200, DistinctValues: 20, Collections: 4,
		Rate: 1000, Duration: 3500 * time.Millisecond, Warmup: 200 * time.Millisecond, Progress: &progress})
	if err != nil {
		t.Fatal(err)
	}
	if f := res.Failures(); len(f) > 0 {
		t.Fatalf("failures: %v\n%s", f, progress.String())
	}
	var sizes []int
	for _, st := range res.Scale {
		sizes = append(sizes, st.To)
	}
	if !slices.Equal(sizes, scaleNodes) || res.Lost != 0 || res.Delivered != res.Expected {
		t.Fatalf("steps to %v (want %v), lost %d, delivered %d of %d", sizes, scaleNodes, res.Lost, res.Delivered, res.Expected)
	}
	var out bytes.Buffer
	res.WriteSummary(&out)
	if !strings.Contains(out.String(), "scale        3 → 4 nodes") {
		t.Fatalf("summary:\n%s", out.String())
	}
	if _, err := Run(context.Background(), Config{Scale: true}); err == nil || !strings.Contains(err.Error(), "needs --redis") {
		t.Fatalf("scale without Redis: %v", err)
	}
}

// TestRunSyntrix: the compat-subscriber scenario, gateways speaking
// Syntrix's streamer service, delivers every pair exactly once, with the
// effective operations; a mix with CEL is refused.
func TestRunSyntrix(t *testing.T) {
	res, err := Run(context.Background(), Config{
		Syntrix: true, Gateways: 2, SubsPerGateway: 300, DistinctValues: 30, Collections: 4,
		Rate: 3000, Duration: 800 * time.Millisecond, Warmup: 200 * time.Millisecond, BaselineDuration: -1,
	})
	if err != nil {
		t.Fatal(err)
	}
	if f := res.Failures(); len(f) > 0 {
		t.Fatalf("failures: %v\nexamples: %v", f, res.Examples)
	}
	if res.Expected == 0 || res.Delivered != res.Expected || res.Lost != 0 || res.Duplicates != 0 || res.WrongOp != 0 {
		t.Errorf("expected %d, delivered %d, lost %d, duplicates %d, wrong op %d", res.Expected, res.Delivered, res.Lost, res.Duplicates, res.WrongOp)
	}
	if _, err := Run(context.Background(), Config{Syntrix: true, Mix: DefaultMix}); err == nil || !strings.Contains(err.Error(), "no CEL") {
		t.Errorf("a mix with CEL: %v", err)
	}
}
