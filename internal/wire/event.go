package wire

import (
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/streamerd/streamer/match"
)

// Event is an encoded ChangeEvent with the fields the node needs read from
// it. Byte slices alias Raw; an Event is reused from event to event, so that
// decoding allocates nothing.
type Event struct {
	Raw []byte // the ChangeEvent as encoded

	// Values as proto.Unmarshal would decode them: for a field that occurs
	// several times, the last occurrence (Changed: all of them, in order);
	// empty or 0 when absent.
	EventID, Tenant, Collection, DocumentID []byte
	Op                                      int32 // a streamerv1.Operation, possibly out of range
	Document, Before                        []byte
	Changed                                 [][]byte
	Partition                               int32
	Position                                []byte
	TimestampMs                             int64
	ClusterTime                             uint64

	buf  []byte   // scratch of MatchEvent
	strs []string // backing of the match.Event's Changed
}

// Decode reads raw into e. It returns false when proto.Unmarshal would fail
// on it: malformed wire data, or a string field (event_id, tenant,
// collection, document_id, changed_fields, position) that is not valid
// UTF-8.
func (e *Event) Decode(raw []byte) bool {
	*e = Event{Raw: raw, Changed: e.Changed[:0], buf: e.buf, strs: e.strs}
	for b := raw; len(b) > 0; {
		num, typ, n := ConsumeTag(b)
		if n < 0 {
			return false
		}
		b = b[n:]
		switch {
		case typ == protowire.BytesType && isEventBytesField(num):
			v, n := protowire.ConsumeBytes(b)
			if n < 0 || !e.setBytes(num, v) {
				return false
			}
			b = b[n:]
		case typ == protowire.VarintType && (num == FieldEventOperation || num == FieldEventPartition || num == FieldEventTimestamp || num == FieldEventClusterTime):
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return false
			}
			b = b[n:]
			// Operation and partition are int32s (an enum is one):
			// proto.Unmarshal truncates alike.
			switch num {
			case FieldEventOperation:
				e.Op = int32(v)
			case FieldEventPartition:
				e.Partition = int32(v)
			case FieldEventClusterTime:
				e.ClusterTime = v
			default:
				e.TimestampMs = int64(v)
			}
		default: // unknown fields, and mistyped ones, which proto.Unmarshal keeps as unknown
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
	case FieldEventID, FieldEventTenant, FieldEventCollection, FieldEventDocumentID,
		FieldEventDocument, FieldEventBefore, FieldEventChangedFields, FieldEventPosition:
		return true
	}
	return false
}

// setBytes stores the value v of the string or bytes field num; false when
// num is a string field and v is not valid UTF-8.
func (e *Event) setBytes(num protowire.Number, v []byte) bool {
	switch num {
	case FieldEventDocument:
		e.Document = v
		return true
	case FieldEventBefore:
		e.Before = v
		return true
	}
	if !utf8.Valid(v) {
		return false
	}
	switch num {
	case FieldEventID:
		e.EventID = v
	case FieldEventTenant:
		e.Tenant = v
	case FieldEventCollection:
		e.Collection = v
	case FieldEventDocumentID:
		e.DocumentID = v
	case FieldEventChangedFields:
		e.Changed = append(e.Changed, v)
	case FieldEventPosition:
		e.Position = v
	}
	return true
}

// MatchEvent returns the event for matching, with Op unchecked (the
// publisher's operation as a match.Op). Its strings share one allocation;
// its Changed is overwritten by the next call.
func (e *Event) MatchEvent() match.Event {
	e.buf = append(append(append(e.buf[:0], e.Tenant...), e.Collection...), e.DocumentID...)
	for _, f := range e.Changed {
		e.buf = append(e.buf, f...)
	}
	s := string(e.buf)
	next := func(n int) string { v := s[:n]; s = s[n:]; return v }
	ev := match.Event{Tenant: next(len(e.Tenant)), Collection: next(len(e.Collection)), ID: next(len(e.DocumentID)),
		Op: match.Op(e.Op)}
	if len(e.Changed) > 0 { // else nil: unknown, as proto.Unmarshal leaves it
		e.strs = e.strs[:0]
		for _, f := range e.Changed {
			e.strs = append(e.strs, next(len(f)))
		}
		ev.Changed = e.strs
	}
	return ev
}

// AppendOverrides appends to b the fields that turn the event into the one
// the node delivers: partition, position and operation set by the node. By
// protobuf's merge rule the last occurrence of a scalar field wins, so Raw
// followed by these fields decodes as Raw with them replaced; a field is
// appended whenever its value differs from Raw's, explicit zero included
// (Raw may carry a publisher-set partition that 0 must override).
func (e *Event) AppendOverrides(b []byte, partition int32, position string, op int32) []byte {
	if partition != e.Partition {
		b = protowire.AppendTag(b, FieldEventPartition, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(int64(partition))) // negative int32s take 10 bytes, as in proto.Marshal
	}
	if position != string(e.Position) {
		b = protowire.AppendTag(b, FieldEventPosition, protowire.BytesType)
		b = protowire.AppendString(b, position)
	}
	if op != e.Op {
		b = protowire.AppendTag(b, FieldEventOperation, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(int64(op)))
	}
	return b
}
