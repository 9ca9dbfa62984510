package service

import (
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"

	"github.com/streamerd/streamer/internal/wire"
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

// deliveryFrame encodes StreamerMessage{delivery: Delivery{cursor, matches}} from
// an outbox entry: the entry's bytes are the Delivery's matches already, and
// become the frame's body as they are (batch must not be modified).
func deliveryFrame(cursor string, batch []byte) rawFrame {
	return rawFrame{head: wire.DeliveryHead(cursor, len(batch)), body: batch}
}
