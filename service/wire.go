package service

import (
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/streamerd/streamer/match"
)

// The consumer's hot path reads event-log entries and writes outbox batches
// with protowire instead of proto.Unmarshal and proto.Marshal: it reads only
// the ChangeEvent fields that matching needs and forwards the event's bytes
// as they were published (wireEvent), and it encodes outbox batches around
// those bytes (router). The rules below are protobuf's, so that any decoder
// reads the result exactly as it would read what proto.Marshal made of the
// decoded event.

// Field numbers of LogEntry (log.proto), ChangeEvent and EventMatch
// (streamer.proto) that the hot path reads or writes; rawcodec.go has the
// others.
const (
	fieldLogEntryEvent             = 1  // LogEntry.event; 2, 3 and 4 are the control entries of its oneof
	fieldLogEntryLastOneof         = 4  // LogEntry.gateway_expired
	fieldEventID                   = 1  // ChangeEvent.event_id
	fieldEventTenant               = 2  // ChangeEvent.tenant
	fieldEventCollection           = 3  // ChangeEvent.collection
	fieldEventDocumentID           = 4  // ChangeEvent.document_id
	fieldEventOperation            = 5  // ChangeEvent.operation
	fieldEventDocument             = 6  // ChangeEvent.document
	fieldEventBefore               = 7  // ChangeEvent.before
	fieldEventChangedFields        = 8  // ChangeEvent.changed_fields
	fieldEventPartition            = 10 // ChangeEvent.partition
	fieldEventPosition             = 11 // ChangeEvent.position
	fieldEventMatchOperation       = 2  // EventMatch.operation
	fieldEventMatchSubscriptionIDs = 3  // EventMatch.subscription_ids
)

// consumeTag is protowire.ConsumeTag with proto.Unmarshal's bound on field
// numbers (protowire accepts numbers up to MaxInt32, proto.Unmarshal only
// up to MaxValidNumber).
func consumeTag(b []byte) (protowire.Number, protowire.Type, int) {
	num, typ, n := protowire.ConsumeTag(b)
	if n >= 0 && num > protowire.MaxValidNumber {
		return 0, 0, -1
	}
	return num, typ, n
}

// eachBytes calls fn with every value of field num in the encoded message b
// that has the bytes wire type, in order, skipping every other field (as
// proto.Unmarshal keeps them as unknown). It stops when fn returns false,
// and returns false when b is malformed.
func eachBytes(b []byte, num protowire.Number, fn func([]byte) bool) bool {
	for len(b) > 0 {
		n, typ, l := consumeTag(b)
		if l < 0 {
			return false
		}
		b = b[l:]
		if n != num || typ != protowire.BytesType {
			if l = protowire.ConsumeFieldValue(n, typ, b); l < 0 {
				return false
			}
			b = b[l:]
			continue
		}
		v, l := protowire.ConsumeBytes(b)
		if l < 0 {
			return false
		}
		b = b[l:]
		if !fn(v) {
			return true
		}
	}
	return true
}

// logEntryEvent returns the ChangeEvent bytes of an encoded LogEntry whose
// content is one event. ok is false for everything else: control entries,
// malformed bytes, and the odd encodings where protobuf would merge or
// replace oneof members (an entry field appearing twice). The caller
// decodes those with proto.Unmarshal. Like proto.Unmarshal, it skips
// unknown fields and fields whose wire type does not match their
// declaration.
func logEntryEvent(b []byte) (event []byte, ok bool) {
	for len(b) > 0 {
		num, typ, n := consumeTag(b)
		if n < 0 {
			return nil, false
		}
		b = b[n:]
		if typ == protowire.BytesType && num >= fieldLogEntryEvent && num <= fieldLogEntryLastOneof {
			if num != fieldLogEntryEvent || ok {
				return nil, false
			}
			if event, n = protowire.ConsumeBytes(b); n < 0 {
				return nil, false
			}
			ok = true
		} else if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
			return nil, false
		}
		b = b[n:]
	}
	return event, ok
}

// wireEvent is an encoded ChangeEvent with the fields the consumer needs
// read from it. Byte slices alias raw; a wireEvent is reused from event to
// event, so that decoding allocates nothing.
type wireEvent struct {
	raw []byte // the ChangeEvent as encoded in the log entry

	// Values as proto.Unmarshal would decode them: for a field that occurs
	// several times, the last occurrence (changed_fields: all of them, in
	// order); empty or 0 when absent.
	eventID, tenant, collection, documentID []byte
	op                                      int32 // a streamerv1.Operation, possibly out of range
	document, before                        []byte
	changed                                 [][]byte
	partition                               int32
	position                                []byte

	buf  []byte   // scratch of matchEvent
	strs []string // backing of the match.Event's Changed
}

// decode reads raw. It returns false when proto.Unmarshal would fail on it:
// malformed wire data, or a string field (event_id, tenant, collection,
// document_id, changed_fields, position) that is not valid UTF-8.
func (w *wireEvent) decode(raw []byte) bool {
	*w = wireEvent{raw: raw, changed: w.changed[:0], buf: w.buf, strs: w.strs}
	for b := raw; len(b) > 0; {
		num, typ, n := consumeTag(b)
		if n < 0 {
			return false
		}
		b = b[n:]
		switch {
		case typ == protowire.BytesType && isEventBytesField(num):
			v, n := protowire.ConsumeBytes(b)
			if n < 0 || !w.setBytes(num, v) {
				return false
			}
			b = b[n:]
		case typ == protowire.VarintType && (num == fieldEventOperation || num == fieldEventPartition):
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return false
			}
			b = b[n:]
			// Both are int32s (an enum is one): proto.Unmarshal truncates alike.
			if num == fieldEventOperation {
				w.op = int32(v)
			} else {
				w.partition = int32(v)
			}
		default: // timestamp_ms, unknown fields, and mistyped ones, which proto.Unmarshal keeps as unknown
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return false
			}
			b = b[n:]
		}
	}
	return true
}

// isEventBytesField reports whether num is a ChangeEvent field of type
// string or bytes.
func isEventBytesField(num protowire.Number) bool {
	switch num {
	case fieldEventID, fieldEventTenant, fieldEventCollection, fieldEventDocumentID,
		fieldEventDocument, fieldEventBefore, fieldEventChangedFields, fieldEventPosition:
		return true
	}
	return false
}

// setBytes stores the value v of the string or bytes field num; false when
// num is a string field and v is not valid UTF-8.
func (w *wireEvent) setBytes(num protowire.Number, v []byte) bool {
	switch num {
	case fieldEventDocument:
		w.document = v
		return true
	case fieldEventBefore:
		w.before = v
		return true
	}
	if !utf8.Valid(v) {
		return false
	}
	switch num {
	case fieldEventID:
		w.eventID = v
	case fieldEventTenant:
		w.tenant = v
	case fieldEventCollection:
		w.collection = v
	case fieldEventDocumentID:
		w.documentID = v
	case fieldEventChangedFields:
		w.changed = append(w.changed, v)
	case fieldEventPosition:
		w.position = v
	}
	return true
}

// matchEvent returns the event for matching, with Op unchecked (the
// publisher's operation as a match.Op). Its strings share one allocation;
// its Changed is overwritten by the next call.
func (w *wireEvent) matchEvent() match.Event {
	w.buf = append(append(append(w.buf[:0], w.tenant...), w.collection...), w.documentID...)
	for _, f := range w.changed {
		w.buf = append(w.buf, f...)
	}
	s := string(w.buf)
	next := func(n int) string { v := s[:n]; s = s[n:]; return v }
	ev := match.Event{Tenant: next(len(w.tenant)), Collection: next(len(w.collection)), ID: next(len(w.documentID)),
		Op: match.Op(w.op)}
	if len(w.changed) > 0 { // else nil: unknown, as proto.Unmarshal leaves it
		w.strs = w.strs[:0]
		for _, f := range w.changed {
			w.strs = append(w.strs, next(len(f)))
		}
		ev.Changed = w.strs
	}
	return ev
}

// appendOverrides appends to b the fields that turn the event into the one
// the node delivers: partition, position and operation set by the node. By
// protobuf's merge rule the last occurrence of a scalar field wins, so raw
// followed by these fields decodes as raw with them replaced; a field is
// appended whenever its value differs from raw's, explicit zero included
// (raw may carry a publisher-set partition that 0 must override).
func (w *wireEvent) appendOverrides(b []byte, partition int32, position string, op int32) []byte {
	if partition != w.partition {
		b = protowire.AppendTag(b, fieldEventPartition, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(int64(partition))) // negative int32s take 10 bytes, as in proto.Marshal
	}
	if position != string(w.position) {
		b = protowire.AppendTag(b, fieldEventPosition, protowire.BytesType)
		b = protowire.AppendString(b, position)
	}
	if op != w.op {
		b = protowire.AppendTag(b, fieldEventOperation, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(int64(op)))
	}
	return b
}
