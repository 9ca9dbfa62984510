package service

import (
	"bytes"
	"context"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"

	streamerv1 "github.com/streamerd/streamer/proto/streamer/v1"
	"github.com/streamerd/streamer/store"
	"github.com/streamerd/streamer/store/memory"
)

func TestMalformedLogEntriesAreDeadLetteredAndThePartitionContinues(t *testing.T) {
	h := startNode(t, Config{}, memory.Config{Partitions: 4})
	ctx := context.Background()
	g := h.watching("gw-1")
	p := store.PartitionOf("t", "c", 4)

	empty, _ := proto.Marshal(&streamerv1.LogEntry{})
	badDoc, _ := proto.Marshal(&streamerv1.LogEntry{Entry: &streamerv1.LogEntry_Event{Event: &streamerv1.ChangeEvent{
		EventId: "bad", Tenant: "t", Collection: "c", DocumentId: "d", Operation: opCreate, Document: []byte(`{"a":`)}}})
	garbage := []byte{0xff, 0xff, 0xff, 0x01, 0x02}
	bad := [][]byte{garbage, empty, badDoc}
	if _, err := h.backend.Log.Append(ctx, p, bad...); err != nil {
		t.Fatal(err)
	}
	h.publish(event("e1", "t", "c", "d", opCreate, `{}`, ""))
	if got := summary(g.matchesUntil("e1")); !slices.Equal(got, []string{"e1:CREATE:s"}) {
		t.Fatalf("got %q", got)
	}
	dead, err := h.backend.Log.DeadLetters(ctx, p, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(dead) != len(bad) {
		t.Fatalf("%d dead letters, want %d: %v", len(dead), len(bad), dead)
	}
	for i, d := range dead {
		if !bytes.Equal(d.Original.Payload, bad[i]) || d.Reason == "" {
			t.Errorf("dead letter %d = %+v, want payload %x with a reason", i, d, bad[i])
		}
	}
	waitFor(t, "no pending entries", func() bool {
		n, err := h.backend.Log.Pending(ctx, p)
		return err == nil && n == 0
	})
}
