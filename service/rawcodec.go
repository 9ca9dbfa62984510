package service

import (
	"errors"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
)

// rawFrame is an already encoded StreamerMessage, head then body. The
// node's server codec sends it as it is, without joining the two; every
// other value goes through the protobuf codec.
type rawFrame struct{ head, body []byte }

// bytes returns the frame in one slice.
func (f rawFrame) bytes() []byte { return append(f.head[:len(f.head):len(f.head)], f.body...) }

// rawCodec is the node's gRPC server codec: protobuf, plus rawFrame
// pass-through on the way out and rawRequest on the way in.
type rawCodec struct{ proto encoding.CodecV2 }

func (c rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	if f, ok := v.(rawFrame); ok {
		return mem.BufferSlice{mem.SliceBuffer(f.head), mem.SliceBuffer(f.body)}, nil
	}
	return c.proto.Marshal(v)
}

func (c rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	if r, ok := v.(*rawRequest); ok {
		r.data = data.Materialize()
		return nil
	}
	return c.proto.Unmarshal(data, v)
}

func (c rawCodec) Name() string { return c.proto.Name() }

// Field numbers of the messages a delivery frame is made of (streamer.proto).
const (
	fieldStreamerMessageDelivery = 3 // StreamerMessage.delivery
	fieldDeliveryCursor          = 1 // Delivery.cursor
	fieldDeliveryMatches         = 2 // Delivery.matches (= OutboxBatch.matches)
	fieldEventMatchEvent         = 1 // EventMatch.event
	fieldEventTimestamp          = 9 // ChangeEvent.timestamp_ms
)

// deliveryFrame encodes StreamerMessage{delivery: Delivery{cursor, matches}} from
// an outbox entry: the entry's bytes are the Delivery's matches already, and
// become the frame's body as they are (batch must not be modified).
func deliveryFrame(cursor string, batch []byte) rawFrame {
	inner := protowire.SizeTag(fieldDeliveryCursor) + protowire.SizeBytes(len(cursor)) + len(batch)
	b := make([]byte, 0, protowire.SizeTag(fieldStreamerMessageDelivery)+protowire.SizeVarint(uint64(inner))+
		protowire.SizeTag(fieldDeliveryCursor)+protowire.SizeBytes(len(cursor)))
	b = protowire.AppendTag(b, fieldStreamerMessageDelivery, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(inner))
	b = protowire.AppendTag(b, fieldDeliveryCursor, protowire.BytesType)
	b = protowire.AppendString(b, cursor)
	return rawFrame{head: b, body: batch}
}

var errMalformedBatch = errors.New("malformed outbox batch")

// scanBatch walks an encoded OutboxBatch without decoding it: it returns the
// number of matches and calls stamp with each match's event timestamp_ms (0 when
// unset). It allocates nothing.
func scanBatch(batch []byte, stamp func(ms int64)) (matches int, err error) {
	wellFormed := eachBytes(batch, fieldDeliveryMatches, func(em []byte) bool {
		matches++
		var ts int64
		if ts, err = eventTimestamp(em); err != nil {
			return false
		}
		stamp(ts)
		return true
	})
	if err == nil && !wellFormed {
		err = errMalformedBatch
	}
	return matches, err
}

// eventTimestamp finds EventMatch.event.timestamp_ms in an encoded EventMatch.
func eventTimestamp(em []byte) (int64, error) {
	var ts int64
	for len(em) > 0 {
		num, typ, n := protowire.ConsumeTag(em)
		if n < 0 {
			return 0, errMalformedBatch
		}
		em = em[n:]
		if num == fieldEventMatchEvent && typ == protowire.BytesType {
			ev, n := protowire.ConsumeBytes(em)
			if n < 0 {
				return 0, errMalformedBatch
			}
			em = em[n:]
			for len(ev) > 0 {
				num, typ, n := protowire.ConsumeTag(ev)
				if n < 0 {
					return 0, errMalformedBatch
				}
				ev = ev[n:]
				if num == fieldEventTimestamp && typ == protowire.VarintType {
					v, n := protowire.ConsumeVarint(ev)
					if n < 0 {
						return 0, errMalformedBatch
					}
					ts = int64(v)
					ev = ev[n:]
					continue
				}
				if n = protowire.ConsumeFieldValue(num, typ, ev); n < 0 {
					return 0, errMalformedBatch
				}
				ev = ev[n:]
			}
			continue
		}
		if n = protowire.ConsumeFieldValue(num, typ, em); n < 0 {
			return 0, errMalformedBatch
		}
		em = em[n:]
	}
	return ts, nil
}
