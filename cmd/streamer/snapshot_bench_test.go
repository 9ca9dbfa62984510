package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/mongo"
	"go.mongodb.org/mongo-driver/mongo/options"

	"github.com/streamerd/streamer/client"
	"github.com/streamerd/streamer/internal/bench"
	"github.com/streamerd/streamer/internal/testbin"
	"github.com/streamerd/streamer/puller"
)

// BenchmarkSnapshot10kFerretDB: serve --mongo with FerretDB (SQLite) as
// the database holding 20,000 documents of about 200 bytes, 10,000 of
// which match; each iteration subscribes with a snapshot over gRPC, the
// change stream delivers a change to a matching document right after
// Subscribe returns, and the client waits for the snapshot's end, then the
// change. end_ms: Subscribe called → snapshot_end; change_ms: → the change
// (always after the end). Compare BenchmarkSnapshot10k (client package),
// the embedded node's in-memory documents.
func BenchmarkSnapshot10kFerretDB(b *testing.B) {
	uri := testbin.FerretDB(b)
	ctx := context.Background()
	mc, err := mongo.Connect(ctx, options.Client().ApplyURI(uri))
	if err != nil {
		b.Fatal(err)
	}
	defer mc.Disconnect(ctx)
	db := mc.Database("app")
	pad := strings.Repeat("x", 150)
	for batch := range 20 {
		docs := make([]any, 1000)
		for i := range docs {
			k := batch*1000 + i
			docs[i] = bson.D{{Key: "_id", Value: fmt.Sprintf("d%05d", k)}, {Key: "tenant", Value: "t"},
				{Key: "status", Value: []string{"hot", "cold"}[k%2]}, {Key: "k", Value: int32(k)}, {Key: "pad", Value: pad}}
		}
		if _, err := db.Collection("docs").InsertMany(ctx, docs); err != nil {
			b.Fatal(err)
		}
	}
	w := &chanWatcher{events: make(chan bson.Raw)}
	open := func(context.Context, string, string, []string) (puller.Watcher, string, *mongo.Database, func(context.Context) error, error) {
		return w, "app", db, func(context.Context) error { return nil }, nil
	}
	sctx, stop := context.WithCancel(ctx)
	s := startServeInProcess(b, sctx, open, "--mongo", uri+"app", "--mongo-snapshot-reads=false")
	defer func() { stop(); _ = s.wait(b) }()
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	conn, err := client.Dial(dctx, s.grpc)
	cancel()
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()

	start := bench.ReadCPU()
	var endTotal, changeTotal time.Duration
	b.ResetTimer()
	for i := range b.N {
		id := fmt.Sprintf("s%d", i)
		t0 := time.Now()
		if err := conn.Subscribe(ctx, client.Subscription{ID: id, Tenant: "t", Collection: "docs",
			Filters: []client.Filter{{Field: "status", Op: "==", Value: "hot"}}, Snapshot: &client.SnapshotRequest{}}); err != nil {
			b.Fatal(err)
		}
		w.events <- changeEvent(b, fmt.Sprintf("82C%06d", i), "update",
			bson.E{Key: "ns", Value: bson.D{{Key: "db", Value: "app"}, {Key: "coll", Value: "docs"}}},
			bson.E{Key: "documentKey", Value: bson.D{{Key: "_id", Value: "d00000"}}},
			bson.E{Key: "fullDocument", Value: bson.D{{Key: "_id", Value: "d00000"}, {Key: "tenant", Value: "t"}, {Key: "status", Value: "hot"}, {Key: "i", Value: int32(i)}}})
		docs, ended := 0, false
		var changed time.Duration
		for changed == 0 {
			d := <-conn.Deliveries()
			if p := d.Snapshot; p != nil && p.GetSubscriptionId() == id {
				docs += len(p.GetDocuments())
				if e := p.GetEnd(); e != nil {
					if e.GetError() != nil || docs != 10_000 {
						b.Fatalf("snapshot of %d documents, %v", docs, e.GetError())
					}
					ended = true
					endTotal += time.Since(t0)
				}
			}
			for _, m := range d.Matches {
				if m.Event.GetDocumentId() == "d00000" && m.SubscriptionIDs[0] == id {
					if !ended {
						b.Fatal("the change arrived before the snapshot's end")
					}
					changed = time.Since(t0)
				}
			}
		}
		changeTotal += changed
		if err := conn.Unsubscribe(ctx, id); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	steal, _ := start.Until(bench.ReadCPU())
	b.ReportMetric(float64(endTotal.Microseconds())/1000/float64(b.N), "end_ms")
	b.ReportMetric(float64(changeTotal.Microseconds())/1000/float64(b.N), "change_ms")
	b.ReportMetric(steal, "steal_%")
}
