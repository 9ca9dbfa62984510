package service

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	streamerv1 "github.com/streamerd/streamer/proto/streamer/v1"
	"github.com/streamerd/streamer/store"
)

// PartitionOf returns the event-log partition of a tenant's collection among
// p partitions: FNV-1a (32 bit) of tenant + "/" + collection, modulo p. Every
// event and subscription of one tenant's collection lands in the same
// partition, which orders them. p must be positive.
func PartitionOf(tenant, collection string, p int) int {
	h := fnv.New32a()
	h.Write([]byte(tenant))
	h.Write([]byte{'/'})
	h.Write([]byte(collection))
	return int(h.Sum32() % uint32(p))
}

// Publish validates each event and appends the valid ones, as LogEntry
// payloads, to their partitions in request order (all partitions in one
// EventLog.AppendMany). Each event gets its own
// result; a rejected event does not stop the others. While the node shuts
// down it fails with codes.Unavailable.
func (s *ingestService) Publish(ctx context.Context, req *streamerv1.PublishRequest) (*streamerv1.PublishResponse, error) {
	n := s.n
	if n.draining.Load() {
		return nil, status.Error(codes.Unavailable, "streamer: node is shutting down")
	}
	events := req.GetEvents()
	results := make([]*streamerv1.PublishResult, len(events))
	type pending struct {
		index   int
		payload []byte
	}
	byPartition := map[int][]pending{}
	var order []int // partitions in order of first appearance
	for i, ev := range events {
		res := &streamerv1.PublishResult{EventId: ev.GetEventId()}
		results[i] = res
		if e := n.validateEvent(ev); e != nil {
			res.Error = e
			continue
		}
		p := PartitionOf(ev.GetTenant(), ev.GetCollection(), n.cfg.Partitions)
		res.Partition = int32(p)
		ev.Partition, ev.Position = 0, "" // set by the log, ignored on publish
		payload, err := proto.Marshal(&streamerv1.LogEntry{Entry: &streamerv1.LogEntry_Event{Event: ev}})
		if err != nil {
			res.Error = errorf(streamerv1.ErrorCode_ERROR_CODE_INTERNAL, "streamer: encoding event: %v", err)
			continue
		}
		if _, seen := byPartition[p]; !seen {
			order = append(order, p)
		}
		byPartition[p] = append(byPartition[p], pending{i, payload})
	}
	// One append per partition, all partitions in one round trip: each
	// keeps the request's order, and partitions are independent.
	appends := make([]store.PartitionAppend, len(order))
	for i, p := range order {
		batch := byPartition[p]
		appends[i] = store.PartitionAppend{P: p, Payloads: make([][]byte, len(batch))}
		for j, b := range batch {
			appends[i].Payloads[j] = b.payload
		}
	}
	n.backend.Log.AppendMany(ctx, appends)
	for _, a := range appends {
		for j, b := range byPartition[a.P] {
			if a.Err != nil {
				results[b.index].Error = errorf(streamerv1.ErrorCode_ERROR_CODE_UNAVAILABLE, "streamer: appending to partition %d: %v", a.P, a.Err)
				continue
			}
			results[b.index].Position = a.IDs[j]
		}
	}
	for _, r := range results {
		if r.Error != nil {
			n.metrics.published.WithLabelValues("rejected").Inc()
		} else {
			n.metrics.published.WithLabelValues("appended").Inc()
		}
	}
	return &streamerv1.PublishResponse{Results: results}, nil
}

// validateEvent returns why ev cannot be published, or nil.
func (n *Node) validateEvent(ev *streamerv1.ChangeEvent) *streamerv1.Error {
	invalid := func(format string, args ...any) *streamerv1.Error {
		return errorf(streamerv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "streamer: "+format, args...)
	}
	switch {
	case ev == nil:
		return invalid("event is null")
	case ev.GetEventId() == "":
		return invalid("event_id is required")
	case ev.GetCollection() == "":
		return invalid("event %q: collection is required", ev.GetEventId())
	case ev.GetDocumentId() == "":
		return invalid("event %q: document_id is required", ev.GetEventId())
	}
	switch ev.GetOperation() {
	case streamerv1.Operation_OPERATION_CREATE, streamerv1.Operation_OPERATION_UPDATE, streamerv1.Operation_OPERATION_DELETE:
	default:
		return invalid("event %q: operation must be OPERATION_CREATE, OPERATION_UPDATE or OPERATION_DELETE, got %v", ev.GetEventId(), ev.GetOperation())
	}
	for _, f := range []struct {
		name string
		data []byte
	}{{"document", ev.GetDocument()}, {"before", ev.GetBefore()}} {
		if len(f.data) > n.cfg.MaxDocumentBytes {
			return errorf(streamerv1.ErrorCode_ERROR_CODE_TOO_LARGE,
				"streamer: event %q: %s is %d bytes, the limit is %d bytes", ev.GetEventId(), f.name, len(f.data), n.cfg.MaxDocumentBytes)
		}
		if len(f.data) > 0 && !isJSONObject(f.data) {
			return invalid("event %q: %s must be one JSON object", ev.GetEventId(), f.name)
		}
	}
	return nil
}

// isJSONObject reports whether data is exactly one valid JSON object.
func isJSONObject(data []byte) bool {
	if !json.Valid(data) {
		return false
	}
	for _, c := range data {
		switch c {
		case ' ', '\t', '\n', '\r':
			continue
		}
		return c == '{'
	}
	return false
}

// errorf builds a protocol Error.
func errorf(code streamerv1.ErrorCode, format string, args ...any) *streamerv1.Error {
	return &streamerv1.Error{Code: code, Message: fmt.Sprintf(format, args...)}
}
