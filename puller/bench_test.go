package puller

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/bson/primitive"

	"github.com/streamerd/streamer/internal/redistest"
	"github.com/streamerd/streamer/store"
	"github.com/streamerd/streamer/store/memory"
	"github.com/streamerd/streamer/store/redis"
)

// benchEvents returns n canned change events of orders of 16 tenants: 30%
// inserts, 60% updates (with pre-images), 10% deletes, documents of a dozen
// fields of the common BSON types (~400 bytes).
func benchEvents(tb testing.TB, n int) []bson.Raw {
	tb.Helper()
	price, _ := primitive.ParseDecimal128("19.99")
	created := primitive.NewDateTimeFromTime(time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC))
	out := make([]bson.Raw, n)
	for i := range n {
		oid := primitive.NewObjectIDFromTimestamp(time.Unix(1700000000+int64(i), 0))
		doc := bson.D{
			{Key: "_id", Value: oid},
			{Key: "tenant", Value: fmt.Sprintf("tenant-%02d", i%16)},
			{Key: "status", Value: []string{"new", "paid", "shipped"}[i%3]},
			{Key: "total", Value: float64(i%1000) + 0.5},
			{Key: "qty", Value: int32(i % 7)},
			{Key: "version", Value: int64(i)},
			{Key: "price", Value: price},
			{Key: "created", Value: created},
			{Key: "tags", Value: bson.A{"red", "large", "gift"}},
			{Key: "address", Value: bson.D{{Key: "city", Value: "Oslo"}, {Key: "zip", Value: "0150"}}},
			{Key: "note", Value: "Leave at the door, please \"ring\" twice"},
		}
		ev := bson.D{
			{Key: "_id", Value: token(fmt.Sprintf("8265%020X", i))},
			{Key: "clusterTime", Value: primitive.Timestamp{T: 1700000000 + uint32(i), I: 1}},
			{Key: "wallTime", Value: created},
			{Key: "ns", Value: bson.D{{Key: "db", Value: "shop"}, {Key: "coll", Value: "orders"}}},
			{Key: "documentKey", Value: bson.D{{Key: "_id", Value: oid}}},
		}
		switch r := i % 10; {
		case r < 3:
			ev = append(ev, bson.E{Key: "operationType", Value: "insert"}, bson.E{Key: "fullDocument", Value: doc})
		case r < 9:
			ev = append(ev, bson.E{Key: "operationType", Value: "update"},
				bson.E{Key: "updateDescription", Value: bson.D{
					{Key: "updatedFields", Value: bson.D{{Key: "status", Value: "paid"}, {Key: "version", Value: int64(i)}}},
					{Key: "removedFields", Value: bson.A{"coupon"}},
				}},
				bson.E{Key: "fullDocument", Value: doc},
				bson.E{Key: "fullDocumentBeforeChange", Value: doc})
		default:
			ev = append(ev, bson.E{Key: "operationType", Value: "delete"})
		}
		out[i] = mustRaw(tb, ev)
	}
	return out
}

// cycleStream serves n events, cycling over events, in server batches of
// batch, then fails with errEndOfEvents.
type cycleStream struct {
	events   []bson.Raw
	n, batch int
	served   int
	inBatch  int
	cur, tok bson.Raw
	err      error
}

func (s *cycleStream) TryNext(context.Context) bool {
	if s.served == s.n {
		s.err = errEndOfEvents
		return false
	}
	if s.inBatch == 0 {
		s.inBatch = min(s.batch, s.n-s.served)
	}
	s.cur = s.events[s.served%len(s.events)]
	s.tok = s.cur.Lookup("_id").Document()
	s.served++
	s.inBatch--
	return true
}

func (s *cycleStream) Current() bson.Raw           { return s.cur }
func (s *cycleStream) RemainingBatchLength() int   { return s.inBatch }
func (s *cycleStream) ResumeToken() bson.Raw       { return s.tok }
func (s *cycleStream) Err() error                  { return s.err }
func (s *cycleStream) Close(context.Context) error { return nil }

// BenchmarkConvertAppend measures the Puller's path from raw change events
// to the event log: conversion (BSON → JSON, mapping, protobuf encoding),
// per-partition batched appends and a checkpoint per server batch of 500.
func BenchmarkConvertAppend(b *testing.B) {
	events := benchEvents(b, 4096)
	b.Run("memory", func(b *testing.B) {
		backend := memory.New(memory.Config{Partitions: 16, MaxLen: 100_000})
		defer backend.Close()
		benchConvertAppend(b, events, backend)
	})
	b.Run("redis", func(b *testing.B) {
		srv := redistest.Start(b)
		backend, err := redis.New(context.Background(), redis.Config{URL: srv.URL(), Partitions: 16, MaxLen: 100_000})
		if err != nil {
			b.Fatal(err)
		}
		defer backend.Close()
		benchConvertAppend(b, events, backend)
	})
	b.Run("convert only", func(b *testing.B) {
		mp := NewMapper(Mapping{})
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if _, err := mp.Convert(events[i%len(events)]); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	})
}

func benchConvertAppend(b *testing.B, events []bson.Raw, backend *store.Backend) {
	p, err := New(Config{
		Watcher: &fakeWatcher{},
		Batch:   500,
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
	}, backend)
	if err != nil {
		b.Fatal(err)
	}
	r := p.newReader()
	stream := &cycleStream{events: events, n: b.N, batch: 500}
	b.ReportAllocs()
	b.ResetTimer()
	if err := r.consume(context.Background(), stream); err != errEndOfEvents {
		b.Fatalf("consume = %v", err)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
