package client_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/streamerd/streamer/client"
	"github.com/streamerd/streamer/internal/bench"
	streamerv1 "github.com/streamerd/streamer/proto/streamer/v1"
	"github.com/streamerd/streamer/service"
	"github.com/streamerd/streamer/store/memory"
)

// BenchmarkSnapshot10k: an embedded node holds 20,000 documents of about
// 200 bytes, 10,000 of which match; each iteration subscribes with a
// snapshot over gRPC, publishes a change to a matching document right
// after Subscribe returns, and waits for the snapshot's end and then the
// change. It reports the medians-friendly per-iteration figures:
// end_ms (Subscribe called → snapshot_end received), change_ms (→ the
// change received, always after the end), and the steal of the run.
func BenchmarkSnapshot10k(b *testing.B) {
	n := startNode(b, service.Config{Documents: memory.NewDocuments(0)}, memory.Config{Partitions: 4}, nil)
	pub := publisher(b, n.addr)
	pad := strings.Repeat("x", 150)
	for batch := range 40 {
		evs := make([]*streamerv1.ChangeEvent, 500)
		for i := range evs {
			k := batch*500 + i
			status := []string{"hot", "cold"}[k%2]
			evs[i] = event(fmt.Sprintf("seed-%d", k), "t", "docs", fmt.Sprintf("d%05d", k), streamerv1.Operation_OPERATION_CREATE,
				fmt.Sprintf(`{"status":%q,"k":%d,"pad":%q}`, status, k, pad), "")
		}
		publish(b, pub, evs...)
	}
	c := dial(b, n.addr)
	ctx := context.Background()
	start := bench.ReadCPU()
	var endTotal, changeTotal time.Duration
	b.ResetTimer()
	for i := range b.N {
		id := fmt.Sprintf("s%d", i)
		t0 := time.Now()
		if err := c.Subscribe(ctx, client.Subscription{ID: id, Tenant: "t", Collection: "docs",
			Filters: []client.Filter{{Field: "status", Op: "==", Value: "hot"}}, Snapshot: &client.SnapshotRequest{}}); err != nil {
			b.Fatal(err)
		}
		change := fmt.Sprintf("change-%d", i)
		publish(b, pub, event(change, "t", "docs", "d00000", streamerv1.Operation_OPERATION_UPDATE, fmt.Sprintf(`{"status":"hot","k":0,"i":%d}`, i), ""))
		docs, ended := 0, false
		var changed time.Duration
		for changed == 0 {
			d := <-c.Deliveries()
			if p := d.Snapshot; p != nil && p.GetSubscriptionId() == id {
				docs += len(p.GetDocuments())
				if p.GetEnd() != nil {
					ended = true
					endTotal += time.Since(t0)
					if docs != 10_000 {
						b.Fatalf("snapshot of %d documents, want 10,000", docs)
					}
				}
			}
			for _, m := range d.Matches {
				if m.Event.GetEventId() == change {
					if !ended {
						b.Fatal("the change arrived before the snapshot's end")
					}
					changed = time.Since(t0)
				}
			}
		}
		changeTotal += changed
		if err := c.Unsubscribe(ctx, id); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	steal, _ := start.Until(bench.ReadCPU())
	b.ReportMetric(float64(endTotal.Microseconds())/1000/float64(b.N), "end_ms")
	b.ReportMetric(float64(changeTotal.Microseconds())/1000/float64(b.N), "change_ms")
	b.ReportMetric(steal, "steal_%")
}
