package wire

import "google.golang.org/protobuf/encoding/protowire"

// An outbox entry is an encoded OutboxBatch: its matches field repeated,
// each an EventMatch whose event is a ChangeEvent's bytes as read from the
// log followed by the node's overrides (Event.AppendOverrides). Encoded
// batches concatenate into one, and a batch is a Delivery's matches as it
// is.

// EventMatchSize is the encoded size of an EventMatch whose event is
// eventLen bytes, with operation op (a match.Op) and subscription ids.
func EventMatchSize(eventLen int, op int32, ids []string) int {
	n := protowire.SizeTag(FieldEventMatchEvent) + protowire.SizeBytes(eventLen)
	if op != 0 { // proto3 omits the zero value
		n += protowire.SizeTag(FieldEventMatchOperation) + protowire.SizeVarint(uint64(op))
	}
	for _, id := range ids {
		n += protowire.SizeTag(FieldEventMatchSubscriptionIDs) + protowire.SizeBytes(len(id))
	}
	return n
}

// BatchMatchSize is the encoded size of one match of an OutboxBatch whose
// EventMatch is matchSize bytes (EventMatchSize).
func BatchMatchSize(matchSize int) int {
	return protowire.SizeTag(FieldOutboxBatchMatches) + protowire.SizeBytes(matchSize)
}

// AppendBatchMatch appends one match to an encoded OutboxBatch: the
// EventMatch whose event is event followed by tail, with operation op and
// subscription ids. matchSize must be EventMatchSize(len(event)+len(tail),
// op, ids).
func AppendBatchMatch(b []byte, matchSize int, event, tail []byte, op int32, ids []string) []byte {
	b = protowire.AppendTag(b, FieldOutboxBatchMatches, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(matchSize))
	b = protowire.AppendTag(b, FieldEventMatchEvent, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(len(event)+len(tail)))
	b = append(append(b, event...), tail...)
	if op != 0 {
		b = protowire.AppendTag(b, FieldEventMatchOperation, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(op))
	}
	for _, id := range ids {
		b = protowire.AppendTag(b, FieldEventMatchSubscriptionIDs, protowire.BytesType)
		b = protowire.AppendString(b, id)
	}
	return b
}

// DeliveryHead returns the bytes that, followed by an encoded OutboxBatch
// of batchLen bytes, make StreamerMessage{delivery: Delivery{cursor,
// matches}}: the batch is the frame's body as it is.
func DeliveryHead(cursor string, batchLen int) []byte {
	inner := protowire.SizeTag(FieldDeliveryCursor) + protowire.SizeBytes(len(cursor)) + batchLen
	b := make([]byte, 0, protowire.SizeTag(FieldStreamerMessageDelivery)+protowire.SizeVarint(uint64(inner))+
		protowire.SizeTag(FieldDeliveryCursor)+protowire.SizeBytes(len(cursor)))
	b = protowire.AppendTag(b, FieldStreamerMessageDelivery, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(inner))
	b = protowire.AppendTag(b, FieldDeliveryCursor, protowire.BytesType)
	return protowire.AppendString(b, cursor)
}
