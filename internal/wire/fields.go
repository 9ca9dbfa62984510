package wire

import "google.golang.org/protobuf/encoding/protowire"

// Field numbers of the messages the codec reads or writes
// (proto/streamer/v1/*.proto). fields_test.go checks each against the
// generated descriptors.
const (
	// LogEntry (log.proto): event is the first member of the entry oneof,
	// gateway_expired its last.
	FieldLogEntryEvent     protowire.Number = 1
	FieldLogEntryLastOneof protowire.Number = 4

	// ChangeEvent (streamer.proto).
	FieldEventID            protowire.Number = 1
	FieldEventTenant        protowire.Number = 2
	FieldEventCollection    protowire.Number = 3
	FieldEventDocumentID    protowire.Number = 4
	FieldEventOperation     protowire.Number = 5
	FieldEventDocument      protowire.Number = 6
	FieldEventBefore        protowire.Number = 7
	FieldEventChangedFields protowire.Number = 8
	FieldEventTimestamp     protowire.Number = 9
	FieldEventPartition     protowire.Number = 10
	FieldEventPosition      protowire.Number = 11
	FieldEventClusterTime   protowire.Number = 12

	// EventMatch.
	FieldEventMatchEvent           protowire.Number = 1
	FieldEventMatchOperation       protowire.Number = 2
	FieldEventMatchSubscriptionIDs protowire.Number = 3

	// Delivery, and OutboxBatch (log.proto), whose matches field has the
	// same number so that an outbox entry is a Delivery's matches as it is.
	FieldDeliveryCursor      protowire.Number = 1
	FieldDeliveryMatches     protowire.Number = 2
	FieldOutboxBatchMatches  protowire.Number = 2
	FieldOutboxBatchEnded    protowire.Number = 3
	FieldOutboxBatchSnapshot protowire.Number = 4

	// StreamerMessage.delivery, and PublishRequest.events.
	FieldStreamerMessageDelivery protowire.Number = 3
	FieldPublishRequestEvents    protowire.Number = 1
)
