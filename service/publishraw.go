package service

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	streamerv1 "github.com/streamerd/streamer/proto/streamer/v1"
	"github.com/streamerd/streamer/store"
)

// Ingest.Publish without decoding the events: the node's codec hands the
// request's bytes over as they arrived (rawRequest), each event is read
// with the consumer's wire reader (wireEvent), validated like a decoded
// one, and appended wrapped in a LogEntry around its own bytes. That is
// what proto.Marshal of the decoded event would give a decoder, at the
// cost of one allocation per event instead of a decode and an encode.
// Anything unusual (malformed bytes, invalid UTF-8, an event that sets
// partition or position, which Publish clears) goes through
// proto.Unmarshal and Publish instead, so the results are Publish's.

// fieldPublishRequestEvents is PublishRequest.events.
const fieldPublishRequestEvents = 1

// rawRequest is a request message as received, for the node's codec to fill
// (rawCodec.Unmarshal).
type rawRequest struct{ data []byte }

// ingestServiceDesc is Ingest's service description with Publish served by
// publishRawHandler. Registering it needs the node's codec
// (grpcServerOptions).
var ingestServiceDesc = func() grpc.ServiceDesc {
	d := streamerv1.Ingest_ServiceDesc
	d.Methods = []grpc.MethodDesc{{MethodName: "Publish", Handler: publishRawHandler}}
	return d
}()

// publishRawHandler is the generated Publish handler, with a rawRequest.
func publishRawHandler(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	in := new(rawRequest)
	if err := dec(in); err != nil {
		return nil, err
	}
	s := srv.(*ingestService)
	if interceptor == nil {
		return s.publishRaw(ctx, in)
	}
	info := &grpc.UnaryServerInfo{Server: srv, FullMethod: streamerv1.Ingest_Publish_FullMethodName}
	return interceptor(ctx, in, info, func(ctx context.Context, req any) (any, error) {
		return s.publishRaw(ctx, req.(*rawRequest))
	})
}

// publishRaw is Publish of the encoded PublishRequest req.
func (s *ingestService) publishRaw(ctx context.Context, req *rawRequest) (*streamerv1.PublishResponse, error) {
	n := s.n
	if n.draining.Load() {
		return nil, status.Error(codes.Unavailable, "streamer: node is shutting down")
	}
	if in, ok := n.ingestRaw(req.data); ok {
		return n.appendIngested(ctx, in), nil
	}
	var decoded streamerv1.PublishRequest
	if err := proto.Unmarshal(req.data, &decoded); err != nil {
		// What gRPC answers for a request its codec cannot decode.
		return nil, status.Errorf(codes.Internal, "grpc: error unmarshalling request: %v", err)
	}
	return s.Publish(ctx, &decoded)
}

// ingestRaw validates and encodes the events of an encoded PublishRequest;
// ok is false when it declines the request (see above).
func (n *Node) ingestRaw(b []byte) (in []ingested, ok bool) {
	var w wireEvent
	ok = true
	wellFormed := eachBytes(b, fieldPublishRequestEvents, func(raw []byte) bool {
		if !w.decode(raw) || w.partition != 0 || len(w.position) > 0 {
			ok = false
			return false
		}
		id := string(w.eventID)
		res := &streamerv1.PublishResult{EventId: id}
		in = append(in, ingested{result: res})
		if res.Error = n.validateEvent(eventFields{
			id: id, noCollection: len(w.collection) == 0, noDocumentID: len(w.documentID) == 0,
			op: streamerv1.Operation(w.op), document: w.document, before: w.before,
		}); res.Error != nil {
			return true
		}
		e := &in[len(in)-1]
		e.p = store.PartitionOfBytes(w.tenant, w.collection, n.cfg.Partitions)
		e.payload = protowire.AppendBytes(protowire.AppendTag(
			make([]byte, 0, protowire.SizeTag(fieldLogEntryEvent)+protowire.SizeBytes(len(raw))),
			fieldLogEntryEvent, protowire.BytesType), raw)
		return true
	})
	if !wellFormed || !ok {
		return nil, false
	}
	return in, true
}
