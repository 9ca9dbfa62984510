package service

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/streamerd/streamer/internal/wire"
	streamerv1 "github.com/streamerd/streamer/proto/streamer/v1"
	"github.com/streamerd/streamer/store"
)

// Ingest.Publish without decoding the events: the node's codec hands the
// request's bytes over as they arrived (rawRequest), each event is read
// with the consumer's wire reader (wire.Event), validated, and appended
// wrapped in a LogEntry around its own bytes. That is what proto.Marshal of
// the decoded event would give a decoder, at the cost of one allocation per
// event instead of a decode and an encode. A partition or position the
// publisher set is cleared (the log sets them) by fields appended after
// the event's bytes, which protobuf's merge rule lets win. A request that
// proto.Unmarshal would reject (malformed bytes, invalid UTF-8) is refused
// as gRPC refuses a request its codec cannot decode.

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
	in, ok := n.ingestRaw(req.data)
	if !ok {
		// What gRPC answers for a request its codec cannot decode, with
		// proto.Unmarshal's reason.
		err := proto.Unmarshal(req.data, &streamerv1.PublishRequest{})
		return nil, status.Errorf(codes.Internal, "grpc: error unmarshalling request: %v", err)
	}
	return n.appendIngested(ctx, in), nil
}

// ingestRaw validates and encodes the events of an encoded PublishRequest;
// ok is false when the request is malformed (proto.Unmarshal would fail).
func (n *Node) ingestRaw(b []byte) (in []ingested, ok bool) {
	var w wire.Event
	ok = true
	wellFormed := wire.EachBytes(b, wire.FieldPublishRequestEvents, func(raw []byte) bool {
		if !w.Decode(raw) {
			ok = false
			return false
		}
		id := string(w.EventID)
		res := &streamerv1.PublishResult{EventId: id}
		in = append(in, ingested{result: res})
		if res.Error = n.validateEvent(eventFields{
			id: id, noCollection: len(w.Collection) == 0, noDocumentID: len(w.DocumentID) == 0,
			op: streamerv1.Operation(w.Op), document: w.Document, before: w.Before,
			nameLens: [4]int{len(w.EventID), len(w.Tenant), len(w.Collection), len(w.DocumentID)},
		}); res.Error != nil {
			return true
		}
		e := &in[len(in)-1]
		e.p = store.PartitionOfBytes(w.Tenant, w.Collection, n.cfg.Partitions)
		if w.Partition != 0 || len(w.Position) > 0 { // rare: set by the log, not by publishers
			raw = w.AppendOverrides(append(make([]byte, 0, len(raw)+16), raw...), 0, "", w.Op)
		}
		e.payload = wire.AppendLogEntryEvent(make([]byte, 0, wire.LogEntryEventSize(len(raw))), raw)
		return true
	})
	if !wellFormed || !ok {
		return nil, false
	}
	return in, true
}
