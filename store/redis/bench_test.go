package redis_test

import (
	"fmt"
	"log/slog"
	"testing"

	"github.com/streamerd/streamer/internal/redistest"
	"github.com/streamerd/streamer/store/redis"
)

// BenchmarkAppendReadAck measures the event log's hot path: append a batch
// of 100, read it through the consumer group, ack it.
func BenchmarkAppendReadAck(b *testing.B) {
	const batch = 100
	srv := redistest.Start(b)
	backend, _ := newBackend(b, srv, redis.Config{Partitions: 1, Logger: slog.New(slog.DiscardHandler)})
	ctx := b.Context()
	payloads := make([][]byte, batch)
	for i := range payloads {
		payloads[i] = fmt.Appendf(nil, `{"event_id":"e%03d","tenant":"t","collection":"c","id":"d","op":"update","doc":{"n":%d}}`, i, i)
	}
	ids := make([]string, 0, batch)
	b.ResetTimer()
	for b.Loop() {
		if _, err := backend.Log.Append(ctx, 0, payloads...); err != nil {
			b.Fatal(err)
		}
		got, err := backend.Log.Read(ctx, 0, "bench", batch, 0)
		if err != nil || len(got) != batch {
			b.Fatalf("Read = %d entries, %v", len(got), err)
		}
		ids = ids[:0]
		for _, e := range got {
			ids = append(ids, e.ID)
		}
		if err := backend.Log.Ack(ctx, 0, ids...); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "events/s")
}
