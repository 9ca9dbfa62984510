package service

import (
	"testing"

	"google.golang.org/protobuf/proto"

	streamerv1 "github.com/streamerd/streamer/proto/streamer/v1"
)

// TestDeliveryFrameIsTheDeliveryItEncodes pins the outbox format trick: an
// encoded OutboxBatch plus a cursor is exactly StreamerMessage{Delivery}.
func TestDeliveryFrameIsTheDeliveryItEncodes(t *testing.T) {
	batch := &streamerv1.OutboxBatch{Matches: []*streamerv1.EventMatch{
		{Event: &streamerv1.ChangeEvent{EventId: "e1", TimestampMs: 1700000000123, Document: []byte(`{"a":1}`)}, Operation: opCreate, SubscriptionIds: []string{"s1", "s2"}},
		{Event: &streamerv1.ChangeEvent{EventId: "e2"}, Operation: opUpdate, SubscriptionIds: []string{"s3"}},
	}}
	payload, err := proto.Marshal(batch)
	if err != nil {
		t.Fatal(err)
	}
	var got streamerv1.StreamerMessage
	if err := proto.Unmarshal(deliveryFrame("17-3", payload).bytes(), &got); err != nil {
		t.Fatal(err)
	}
	want := &streamerv1.StreamerMessage{Msg: &streamerv1.StreamerMessage_Delivery{Delivery: &streamerv1.Delivery{Cursor: "17-3", Matches: batch.Matches}}}
	if !proto.Equal(&got, want) {
		t.Fatalf("frame decodes to %v, want %v", &got, want)
	}
}
