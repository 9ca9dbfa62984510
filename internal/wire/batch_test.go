package wire

import (
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"

	streamerv1 "github.com/streamerd/streamer/proto/streamer/v1"
)

// TestBatchEncodingIsProtoEncoding: AppendBatchMatch encodes what
// proto.Marshal encodes, a batch followed by DeliveryHead's cursor is the
// Delivery, and ScanBatch reads the batch back without allocating.
func TestBatchEncodingIsProtoEncoding(t *testing.T) {
	create, update := streamerv1.Operation_OPERATION_CREATE, streamerv1.Operation_OPERATION_UPDATE
	matches := []*streamerv1.EventMatch{
		{Event: &streamerv1.ChangeEvent{EventId: "e1", TimestampMs: 1700000000123, Document: []byte(`{"a":1}`)}, Operation: create, SubscriptionIds: []string{"s1", "s2"}},
		{Event: &streamerv1.ChangeEvent{EventId: "e2"}, Operation: update, SubscriptionIds: []string{"s3"}},
		{Event: &streamerv1.ChangeEvent{EventId: "e3", Partition: 4}}, // no operation, no ids
	}
	var payload []byte
	for _, m := range matches {
		ev, err := proto.Marshal(m.GetEvent())
		if err != nil {
			t.Fatal(err)
		}
		// The event's bytes split in two, as a raw event and the node's overrides.
		head, tail := ev[:len(ev)/2], ev[len(ev)/2:]
		size := EventMatchSize(len(ev), int32(m.GetOperation()), m.GetSubscriptionIds())
		before := len(payload)
		payload = AppendBatchMatch(payload, size, head, tail, int32(m.GetOperation()), m.GetSubscriptionIds())
		if got := len(payload) - before; got != BatchMatchSize(size) {
			t.Fatalf("appended %d bytes, BatchMatchSize says %d", got, BatchMatchSize(size))
		}
	}
	want := &streamerv1.OutboxBatch{Matches: matches}
	var got streamerv1.OutboxBatch
	if err := proto.Unmarshal(payload, &got); err != nil || !proto.Equal(&got, want) {
		t.Fatalf("batch decodes to %v, %v; want %v", &got, err, want)
	}
	var msg streamerv1.StreamerMessage
	if err := proto.Unmarshal(append(DeliveryHead("17-3", len(payload)), payload...), &msg); err != nil {
		t.Fatal(err)
	}
	if d := msg.GetDelivery(); d.GetCursor() != "17-3" || !proto.Equal(&streamerv1.OutboxBatch{Matches: d.GetMatches()}, want) {
		t.Fatalf("frame decodes to %v", &msg)
	}

	var stamps []int64
	n, ended, err := ScanBatch(payload, func(ms int64) { stamps = append(stamps, ms) })
	if err != nil || n != 3 || ended != 0 || len(stamps) != 3 || stamps[0] != 1700000000123 || stamps[1] != 0 || stamps[2] != 0 {
		t.Fatalf("ScanBatch = %d, %d, %v, stamps %v", n, ended, err, stamps)
	}
	// Ended subscriptions, after the matches or alone, are counted apart.
	notice, err := proto.Marshal(&streamerv1.OutboxBatch{Ended: []*streamerv1.SubscriptionEnded{{SubscriptionId: "a"}, {SubscriptionId: "b"}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range [][]byte{notice, append(slices.Clip(payload), notice...)} {
		n, ended, err := ScanBatch(b, func(int64) {})
		if err != nil || ended != 2 || (n != 0 && n != 3) {
			t.Fatalf("ScanBatch with ended subscriptions = %d, %d, %v", n, ended, err)
		}
	}
	page, err := proto.Marshal(&streamerv1.OutboxBatch{Snapshot: &streamerv1.SnapshotPage{SubscriptionId: "a"}})
	if err != nil {
		t.Fatal(err)
	}
	if n, notices, err := ScanBatch(page, func(int64) {}); err != nil || n != 0 || notices != 1 {
		t.Fatalf("ScanBatch of a snapshot page = %d, %d, %v", n, notices, err)
	}
	for _, bad := range [][]byte{{0x12}, {0x12, 0x05, 0x0a}, {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}} {
		if _, _, err := ScanBatch(bad, func(int64) {}); err == nil {
			t.Errorf("ScanBatch(%x) accepted a malformed batch", bad)
		}
	}
	if allocs := testing.AllocsPerRun(100, func() { _, _, _ = ScanBatch(payload, func(int64) {}) }); allocs != 0 {
		t.Errorf("ScanBatch allocates %v times", allocs)
	}
}

func TestLogEntryEventRoundTrip(t *testing.T) {
	ev, _ := proto.Marshal(&streamerv1.ChangeEvent{EventId: "e", Tenant: "t"})
	entry := AppendLogEntryEvent(make([]byte, 0, LogEntryEventSize(len(ev))), ev)
	if len(entry) != LogEntryEventSize(len(ev)) {
		t.Fatalf("LogEntryEventSize = %d, entry is %d bytes", LogEntryEventSize(len(ev)), len(entry))
	}
	var le streamerv1.LogEntry
	if err := proto.Unmarshal(entry, &le); err != nil || le.GetEvent().GetEventId() != "e" {
		t.Fatalf("entry decodes to %v, %v", &le, err)
	}
	if got, ok := LogEntryEvent(entry); !ok || string(got) != string(ev) {
		t.Fatalf("LogEntryEvent = %x, %v", got, ok)
	}
	control, _ := proto.Marshal(&streamerv1.LogEntry{Entry: &streamerv1.LogEntry_GatewayExpired{GatewayExpired: &streamerv1.GatewayExpired{GatewayId: "g"}}})
	if _, ok := LogEntryEvent(control); ok {
		t.Fatal("LogEntryEvent took a control entry for an event")
	}
}
