package wire

import (
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	streamerv1 "github.com/streamerd/streamer/proto/streamer/v1"
)

// TestFieldNumbersAreTheDescriptors checks every field number of the codec
// against the generated code, and the kind the codec reads it as.
func TestFieldNumbersAreTheDescriptors(t *testing.T) {
	for _, tc := range []struct {
		msg   proto.Message
		field protoreflect.Name
		num   protowire.Number
		kind  protoreflect.Kind
	}{
		{&streamerv1.LogEntry{}, "event", FieldLogEntryEvent, protoreflect.MessageKind},
		{&streamerv1.LogEntry{}, "gateway_expired", FieldLogEntryLastOneof, protoreflect.MessageKind},
		{&streamerv1.ChangeEvent{}, "event_id", FieldEventID, protoreflect.StringKind},
		{&streamerv1.ChangeEvent{}, "tenant", FieldEventTenant, protoreflect.StringKind},
		{&streamerv1.ChangeEvent{}, "collection", FieldEventCollection, protoreflect.StringKind},
		{&streamerv1.ChangeEvent{}, "document_id", FieldEventDocumentID, protoreflect.StringKind},
		{&streamerv1.ChangeEvent{}, "operation", FieldEventOperation, protoreflect.EnumKind},
		{&streamerv1.ChangeEvent{}, "document", FieldEventDocument, protoreflect.BytesKind},
		{&streamerv1.ChangeEvent{}, "before", FieldEventBefore, protoreflect.BytesKind},
		{&streamerv1.ChangeEvent{}, "changed_fields", FieldEventChangedFields, protoreflect.StringKind},
		{&streamerv1.ChangeEvent{}, "timestamp_ms", FieldEventTimestamp, protoreflect.Int64Kind},
		{&streamerv1.ChangeEvent{}, "partition", FieldEventPartition, protoreflect.Int32Kind},
		{&streamerv1.ChangeEvent{}, "position", FieldEventPosition, protoreflect.StringKind},
		{&streamerv1.ChangeEvent{}, "cluster_time", FieldEventClusterTime, protoreflect.Uint64Kind},
		{&streamerv1.EventMatch{}, "event", FieldEventMatchEvent, protoreflect.MessageKind},
		{&streamerv1.EventMatch{}, "operation", FieldEventMatchOperation, protoreflect.EnumKind},
		{&streamerv1.EventMatch{}, "subscription_ids", FieldEventMatchSubscriptionIDs, protoreflect.StringKind},
		{&streamerv1.Delivery{}, "cursor", FieldDeliveryCursor, protoreflect.StringKind},
		{&streamerv1.Delivery{}, "matches", FieldDeliveryMatches, protoreflect.MessageKind},
		{&streamerv1.OutboxBatch{}, "matches", FieldOutboxBatchMatches, protoreflect.MessageKind},
		{&streamerv1.OutboxBatch{}, "ended", FieldOutboxBatchEnded, protoreflect.MessageKind},
		{&streamerv1.Delivery{}, "ended", FieldOutboxBatchEnded, protoreflect.MessageKind},
		{&streamerv1.OutboxBatch{}, "snapshot", FieldOutboxBatchSnapshot, protoreflect.MessageKind},
		{&streamerv1.Delivery{}, "snapshot", FieldOutboxBatchSnapshot, protoreflect.MessageKind},
		{&streamerv1.StreamerMessage{}, "delivery", FieldStreamerMessageDelivery, protoreflect.MessageKind},
		{&streamerv1.PublishRequest{}, "events", FieldPublishRequestEvents, protoreflect.MessageKind},
	} {
		md := tc.msg.ProtoReflect().Descriptor()
		fd := md.Fields().ByName(tc.field)
		if fd == nil {
			t.Errorf("%s has no field %s", md.FullName(), tc.field)
			continue
		}
		if fd.Number() != tc.num || fd.Kind() != tc.kind {
			t.Errorf("%s.%s is number %d, %v; the codec uses %d, %v", md.FullName(), tc.field, fd.Number(), fd.Kind(), tc.num, tc.kind)
		}
	}

	// The LogEntry oneof is event and the control entries, numbered
	// FieldLogEntryEvent..FieldLogEntryLastOneof: LogEntryEvent relies on it.
	oneof := (&streamerv1.LogEntry{}).ProtoReflect().Descriptor().Oneofs().ByName("entry")
	if n := oneof.Fields().Len(); n != int(FieldLogEntryLastOneof-FieldLogEntryEvent+1) {
		t.Errorf("LogEntry.entry has %d members, the codec expects %d", n, FieldLogEntryLastOneof-FieldLogEntryEvent+1)
	}
	for i := range oneof.Fields().Len() {
		if num := oneof.Fields().Get(i).Number(); num < FieldLogEntryEvent || num > FieldLogEntryLastOneof {
			t.Errorf("LogEntry.entry member %s is number %d, outside the codec's range", oneof.Fields().Get(i).Name(), num)
		}
	}
}
