package service

import (
	"fmt"
	"testing"

	"github.com/hashicorp/golang-lru/v2/simplelru"
	"google.golang.org/protobuf/proto"

	streamerv1 "github.com/streamerd/streamer/proto/streamer/v1"
	"github.com/streamerd/streamer/store"
	"github.com/streamerd/streamer/store/memory"
)

// BenchmarkConsumerEventPath measures a partition consumer's work on one
// read batch of 256 events, up to the backend calls: decode, match, route,
// encode the outbox items, deduplicate. "proto" is the implementation the
// wire path replaced (protoConsumer), "wire" the consumer's. 4 gateways
// × 250 equality subscriptions; every event matches one subscription of
// each gateway.
func BenchmarkConsumerEventPath(b *testing.B) {
	backend := memory.New(memory.Config{Partitions: 1})
	b.Cleanup(func() { _ = backend.Close() })
	n, err := New(Config{Logger: testLogger()}, backend)
	if err != nil {
		b.Fatal(err)
	}
	c := newConsumer(n, 0, nil)
	ref := newProtoConsumer(newConsumer(n, 0, nil), n.cfg.DedupSize)
	const subs = 250
	for gw := range 4 {
		for i := range subs {
			sub := filterSub(fmt.Sprintf("s%d", i), "t", "c", "k", "==", float64(i))
			if err := c.add(fmt.Sprintf("gw%d", gw), sub); err != nil {
				b.Fatal(err)
			}
			if err := ref.c.add(fmt.Sprintf("gw%d", gw), sub); err != nil {
				b.Fatal(err)
			}
		}
	}
	// 8 batches of distinct event ids, more than the dedup window: cycling
	// through them, no event is a replay.
	batches := make([][]store.Entry, 8)
	for bi := range batches {
		for i := range 256 {
			j := bi*256 + i
			ev := event(fmt.Sprintf("ev-%d", j), "t", "c", fmt.Sprintf("d%d", j%subs), opUpdate,
				fmt.Sprintf(`{"k":%d,"name":"document %d","tags":["a","b"]}`, j%subs, j), "")
			payload, err := proto.Marshal(&streamerv1.LogEntry{Entry: &streamerv1.LogEntry_Event{Event: ev}})
			if err != nil {
				b.Fatal(err)
			}
			batches[bi] = append(batches[bi], store.Entry{ID: fmt.Sprintf("1-%d", j), Payload: payload})
		}
	}
	// next is the batch each consumer processes next, also when -count
	// runs a sub-benchmark again.
	var next [2]int
	b.Run("proto", func(b *testing.B) {
		b.ReportAllocs()
		for ; b.Loop(); next[0]++ {
			if items, _ := ref.process(batches[next[0]%len(batches)], true); len(items) != 4 {
				b.Fatalf("%d items", len(items))
			}
		}
	})
	b.Run("wire", func(b *testing.B) {
		b.ReportAllocs()
		for ; b.Loop(); next[1]++ {
			if items, _ := c.processWithoutBackend(batches[next[1]%len(batches)], true); len(items) != 4 {
				b.Fatalf("%d items", len(items))
			}
		}
	})
}

// BenchmarkDedup measures the replay check and commit of one read batch of
// 256 new event ids with the default window: "lru" is the LRU the consumer
// used before, "ring" recentIDs.
func BenchmarkDedup(b *testing.B) {
	ids := make([][]byte, 1<<14)
	for i := range ids {
		ids[i] = fmt.Appendf(nil, "0194c3f2-7d1e-7c3a-9a55-%012d", i)
	}
	const batch = 256
	b.Run("lru", func(b *testing.B) {
		b.ReportAllocs()
		lru, _ := simplelru.NewLRU[string, struct{}](DefaultDedupSize, nil)
		inBatch := map[string]struct{}{}
		var pending []string
		for i := 0; b.Loop(); i++ { // -count runs it afresh: ids repeat after 64 batches, beyond the window
			pending = pending[:0]
			clear(inBatch)
			for _, raw := range ids[i*batch%len(ids):][:batch] {
				id := string(raw) // the proto decoding allocated it
				if _, ok := inBatch[id]; ok || lru.Contains(id) {
					b.Fatal("replay")
				}
				inBatch[id] = struct{}{}
				pending = append(pending, id)
			}
			for _, id := range pending {
				lru.Add(id, struct{}{})
			}
		}
	})
	b.Run("ring", func(b *testing.B) {
		b.ReportAllocs()
		r := newRecentIDs(DefaultDedupSize)
		for i := 0; b.Loop(); i++ {
			r.abort()
			for _, id := range ids[i*batch%len(ids):][:batch] {
				if r.replayed(id) {
					b.Fatal("replay")
				}
			}
			r.commit()
		}
	})
}
