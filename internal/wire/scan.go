package wire

import (
	"errors"

	"google.golang.org/protobuf/encoding/protowire"
)

// ConsumeTag is protowire.ConsumeTag with proto.Unmarshal's bound on field
// numbers (protowire accepts numbers up to MaxInt32, proto.Unmarshal only
// up to MaxValidNumber).
func ConsumeTag(b []byte) (protowire.Number, protowire.Type, int) {
	num, typ, n := protowire.ConsumeTag(b)
	if n >= 0 && num > protowire.MaxValidNumber {
		return 0, 0, -1
	}
	return num, typ, n
}

// EachBytes calls fn with every value of field num in the encoded message b
// that has the bytes wire type, in order, skipping every other field (as
// proto.Unmarshal keeps them as unknown). It stops when fn returns false,
// and returns false when b is malformed.
func EachBytes(b []byte, num protowire.Number, fn func([]byte) bool) bool {
	for len(b) > 0 {
		n, typ, l := ConsumeTag(b)
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

// LogEntryEvent returns the ChangeEvent bytes of an encoded LogEntry whose
// content is one event. ok is false for everything else: control entries,
// malformed bytes, and the odd encodings where protobuf would merge or
// replace oneof members (an entry field appearing twice). The caller
// decodes those with proto.Unmarshal. Like proto.Unmarshal, it skips
// unknown fields and fields whose wire type does not match their
// declaration.
func LogEntryEvent(b []byte) (event []byte, ok bool) {
	for len(b) > 0 {
		num, typ, n := ConsumeTag(b)
		if n < 0 {
			return nil, false
		}
		b = b[n:]
		if typ == protowire.BytesType && num >= FieldLogEntryEvent && num <= FieldLogEntryLastOneof {
			if num != FieldLogEntryEvent || ok {
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

// AppendLogEntryEvent appends the LogEntry whose content is the encoded
// ChangeEvent event.
func AppendLogEntryEvent(b, event []byte) []byte {
	b = protowire.AppendTag(b, FieldLogEntryEvent, protowire.BytesType)
	return protowire.AppendBytes(b, event)
}

// LogEntryEventSize is the encoded size of AppendLogEntryEvent's entry.
func LogEntryEventSize(eventLen int) int {
	return protowire.SizeTag(FieldLogEntryEvent) + protowire.SizeBytes(eventLen)
}

// ErrMalformedBatch says that an outbox entry is not an encoded OutboxBatch.
var ErrMalformedBatch = errors.New("malformed outbox batch")

// ScanBatch walks an encoded OutboxBatch without decoding it: it returns the
// number of matches and of notices (ended subscriptions and snapshot
// pages), and calls stamp with each match's event timestamp_ms (0 when
// unset). It allocates nothing.
func ScanBatch(batch []byte, stamp func(ms int64)) (matches, notices int, err error) {
	wellFormed := EachBytes(batch, FieldOutboxBatchMatches, func(em []byte) bool {
		matches++
		var ts int64
		if ts, err = eventTimestamp(em); err != nil {
			return false
		}
		stamp(ts)
		return true
	})
	if err == nil && !wellFormed {
		err = ErrMalformedBatch
	}
	if err == nil {
		EachBytes(batch, FieldOutboxBatchEnded, func([]byte) bool { notices++; return true })
		EachBytes(batch, FieldOutboxBatchSnapshot, func([]byte) bool { notices++; return true })
	}
	return matches, notices, err
}

// eventTimestamp finds EventMatch.event.timestamp_ms in an encoded
// EventMatch (the last of each, as proto.Unmarshal would keep them).
func eventTimestamp(em []byte) (int64, error) {
	var ts int64
	var err error
	ok := EachBytes(em, FieldEventMatchEvent, func(ev []byte) bool {
		ts, err = lastVarint(ev, FieldEventTimestamp, ts)
		return err == nil
	})
	if err == nil && !ok {
		err = ErrMalformedBatch
	}
	return ts, err
}

// lastVarint returns the value of the last occurrence of varint field num
// in the encoded message b, or v when it has none.
func lastVarint(b []byte, num protowire.Number, v int64) (int64, error) {
	for len(b) > 0 {
		n, typ, l := protowire.ConsumeTag(b)
		if l < 0 {
			return 0, ErrMalformedBatch
		}
		b = b[l:]
		if n == num && typ == protowire.VarintType {
			u, l := protowire.ConsumeVarint(b)
			if l < 0 {
				return 0, ErrMalformedBatch
			}
			v, b = int64(u), b[l:]
			continue
		}
		if l = protowire.ConsumeFieldValue(n, typ, b); l < 0 {
			return 0, ErrMalformedBatch
		}
		b = b[l:]
	}
	return v, nil
}
