package redis_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/streamerd/streamer/internal/redistest"
	"github.com/streamerd/streamer/store"
	"github.com/streamerd/streamer/store/redis"
)

func TestLagOfTheConsumerGroup(t *testing.T) {
	srv := redistest.Start(t)
	b, _ := newBackend(t, srv, redis.Config{Partitions: 2})
	ctx := t.Context()
	lagger, ok := b.Log.(store.LagReporter)
	if !ok {
		t.Fatal("the Redis event log does not report lag")
	}
	if _, err := b.Log.Append(ctx, 1, []byte("a"), []byte("b"), []byte("c")); err != nil {
		t.Fatal(err)
	}
	for _, want := range []int64{3, 1} {
		if got, err := lagger.Lag(ctx, 1); err != nil || got != want {
			t.Fatalf("Lag = %d, %v; want %d", got, err, want)
		}
		if _, err := b.Log.Read(ctx, 1, "c", 2, 0); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := lagger.Lag(ctx, 0); err != nil || got != 0 {
		t.Fatalf("Lag of an empty partition = %d, %v", got, err)
	}
	if _, err := lagger.Lag(ctx, 2); err == nil {
		t.Fatal("Lag of a partition out of range succeeded")
	}
}

func TestCountErrorsByKind(t *testing.T) {
	srv := redistest.Start(t)
	client, err := redis.NewClient(srv.URL() + "?max_retries=-1&dial_timeout=200ms")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close() })
	errs := redis.CountErrors(client)
	reg := prometheus.NewRegistry()
	reg.MustRegister(errs)
	count := func(kind string) float64 {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				if m.GetLabel()[0].GetValue() == kind {
					return m.GetCounter().GetValue()
				}
			}
		}
		t.Fatalf("no series for kind %q", kind)
		return 0
	}
	ctx := context.Background()

	// Expected answers are not errors.
	if err := client.Get(ctx, "missing").Err(); err == nil {
		t.Fatal("GET of a missing key returned no nil reply")
	}
	client.XGroupCreateMkStream(ctx, "s", "g", "0")
	client.XGroupCreateMkStream(ctx, "s", "g", "0") // BUSYGROUP
	if n := testutil.CollectAndCount(errs); n != 4 {
		t.Fatalf("%d series, want one per kind", n)
	}
	for _, k := range []string{"dial", "timeout", "io", "reply"} {
		if c := count(k); c != 0 {
			t.Fatalf("%s errors = %v after expected answers", k, c)
		}
	}

	// An error answer.
	if err := client.Do(ctx, "NOSUCHCOMMAND").Err(); err == nil || !strings.Contains(err.Error(), "unknown command") {
		t.Fatalf("unknown command answered %v", err)
	}
	if c := count("reply"); c != 1 {
		t.Fatalf("reply errors = %v, want 1", c)
	}

	// A dead server: the connection is lost, then dialing fails.
	srv.Kill()
	for range 2 {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_ = client.Ping(cctx).Err()
		cancel()
	}
	if c := count("io") + count("dial"); c == 0 {
		t.Fatal("no io or dial error counted with the server dead")
	}
}
