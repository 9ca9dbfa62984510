package wire

import (
	"testing"

	"google.golang.org/protobuf/proto"

	streamerv1 "github.com/streamerd/streamer/proto/streamer/v1"
)

// TestOverridesReplaceThePublishersFields pins the merge rule the outbox
// encoding relies on, zero values included.
func TestOverridesReplaceThePublishersFields(t *testing.T) {
	for _, tc := range []struct {
		name      string
		published *streamerv1.ChangeEvent
		partition int32
		position  string
		op        int32
	}{
		{"nothing published: nothing appended for partition 0", &streamerv1.ChangeEvent{EventId: "e", Operation: streamerv1.Operation_OPERATION_CREATE}, 0, "1-1", 1},
		{"published partition overridden by 0", &streamerv1.ChangeEvent{Partition: 7, Position: "9-9", Operation: streamerv1.Operation_OPERATION_CREATE}, 0, "1-1", 1},
		{"published partition overridden by another", &streamerv1.ChangeEvent{Partition: 7}, 3, "1-1", 1},
		{"negative partition published", &streamerv1.ChangeEvent{Partition: -7}, 3, "1-1", 1},
		{"same values: nothing appended", &streamerv1.ChangeEvent{Partition: 3, Position: "1-1", Operation: streamerv1.Operation_OPERATION_UPDATE}, 3, "1-1", 2},
		{"soft delete turned the operation", &streamerv1.ChangeEvent{Operation: streamerv1.Operation_OPERATION_UPDATE, Document: []byte(`{}`)}, 1, "1-1", 3},
		{"empty position overrides a published one", &streamerv1.ChangeEvent{Position: "9-9"}, 1, "", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw, err := proto.Marshal(tc.published)
			if err != nil {
				t.Fatal(err)
			}
			var w Event
			if !w.Decode(raw) {
				t.Fatal("decode failed")
			}
			tail := w.AppendOverrides(nil, tc.partition, tc.position, tc.op)
			var got streamerv1.ChangeEvent
			if err := proto.Unmarshal(append(raw, tail...), &got); err != nil {
				t.Fatal(err)
			}
			want := proto.Clone(tc.published).(*streamerv1.ChangeEvent)
			want.Partition, want.Position, want.Operation = tc.partition, tc.position, streamerv1.Operation(tc.op)
			if !proto.Equal(&got, want) {
				t.Fatalf("got %v, want %v", &got, want)
			}
			if tc.published.GetPartition() == tc.partition && tc.published.GetPosition() == tc.position &&
				int32(tc.published.GetOperation()) == tc.op && len(tail) != 0 {
				t.Fatalf("appended %x although nothing changes", tail)
			}
		})
	}
}

// TestEventDecodingAllocatesNothing guards the point of the package.
func TestEventDecodingAllocatesNothing(t *testing.T) {
	raw, _ := proto.Marshal(&streamerv1.LogEntry{Entry: &streamerv1.LogEntry_Event{Event: &streamerv1.ChangeEvent{
		EventId: "e", Tenant: "t", Collection: "c", DocumentId: "d", Operation: streamerv1.Operation_OPERATION_UPDATE, Document: []byte(`{"a":1}`),
		ChangedFields: []string{"a", "b"}, TimestampMs: 1700000000123, ClusterTime: 7<<32 | 3}}})
	var w Event
	var tail []byte
	if allocs := testing.AllocsPerRun(100, func() {
		ev, ok := LogEntryEvent(raw)
		if !ok || !w.Decode(ev) {
			t.Fatal("not decoded")
		}
		tail = w.AppendOverrides(tail[:0], 1, "1-1", 2)
	}); allocs != 0 {
		t.Errorf("decoding allocates %v times", allocs)
	}
	if w.TimestampMs != 1700000000123 || w.ClusterTime != 7<<32|3 || w.Op != 2 || string(w.EventID) != "e" {
		t.Errorf("decoded timestamp %d, op %d, event id %q", w.TimestampMs, w.Op, w.EventID)
	}
	if allocs := testing.AllocsPerRun(100, func() { _ = w.MatchEvent() }); allocs != 1 {
		t.Errorf("MatchEvent allocates %v times, want 1 (its strings)", allocs)
	}
}
