package service

import (
	"context"
	"fmt"
	"unicode/utf8"

	streamerv1 "github.com/streamerd/streamer/proto/streamer/v1"
	"github.com/streamerd/streamer/store"
)

// ingested is one event of a Publish request, validated and encoded: its
// result, and, unless that says rejected, its partition and LogEntry.
type ingested struct {
	result  *streamerv1.PublishResult
	p       int
	payload []byte
}

// appendIngested appends the accepted events of in, each partition's in
// request order, all partitions in one EventLog.AppendMany, and returns
// the response.
func (n *Node) appendIngested(ctx context.Context, in []ingested) *streamerv1.PublishResponse {
	byPartition := map[int][]int{} // partition → indexes in in
	var order []int                // partitions in order of first appearance
	for i := range in {
		if in[i].result.Error != nil {
			continue
		}
		p := in[i].p
		in[i].result.Partition = int32(p)
		if _, seen := byPartition[p]; !seen {
			order = append(order, p)
		}
		byPartition[p] = append(byPartition[p], i)
	}
	// One append per partition, all partitions in one round trip: each
	// keeps the request's order, and partitions are independent.
	appends := make([]store.PartitionAppend, len(order))
	for i, p := range order {
		idx := byPartition[p]
		appends[i] = store.PartitionAppend{P: p, Payloads: make([][]byte, len(idx))}
		for j, k := range idx {
			appends[i].Payloads[j] = in[k].payload
		}
	}
	n.backend.Log.AppendMany(ctx, appends)
	for _, a := range appends {
		for j, k := range byPartition[a.P] {
			if a.Err != nil {
				in[k].result.Error = errorf(streamerv1.ErrorCode_ERROR_CODE_UNAVAILABLE, "streamer: appending to partition %d: %v", a.P, a.Err)
				continue
			}
			in[k].result.Position = a.IDs[j]
		}
	}
	results := make([]*streamerv1.PublishResult, len(in))
	rejected := 0
	for i := range in {
		results[i] = in[i].result
		if results[i].Error != nil {
			rejected++
		}
	}
	if rejected > 0 {
		n.metrics.published.WithLabelValues("rejected").Add(float64(rejected))
	}
	if rejected < len(in) {
		n.metrics.published.WithLabelValues("appended").Add(float64(len(in) - rejected))
	}
	return &streamerv1.PublishResponse{Results: results}
}

// eventFields are the fields of a published event that validation reads.
type eventFields struct {
	id                         string
	noCollection, noDocumentID bool
	op                         streamerv1.Operation
	document, before           []byte
	// nameLens are the lengths of event_id, tenant, collection and
	// document_id.
	nameLens [4]int
}

// eventNames names eventFields.nameLens.
var eventNames = [4]string{"event_id", "tenant", "collection", "document_id"}

func invalidf(format string, args ...any) *streamerv1.Error {
	return errorf(streamerv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "streamer: "+format, args...)
}

// validateEvent returns why an event with fields ev cannot be published, or
// nil.
func (n *Node) validateEvent(ev eventFields) *streamerv1.Error {
	for i, l := range ev.nameLens {
		if l > n.cfg.MaxNameBytes {
			return n.nameTooLong(eventNames[i], l)
		}
	}
	switch {
	case ev.id == "":
		return invalidf("event_id is required")
	case ev.noCollection:
		return invalidf("event %q: collection is required", ev.id)
	case ev.noDocumentID:
		return invalidf("event %q: document_id is required", ev.id)
	}
	switch ev.op {
	case streamerv1.Operation_OPERATION_CREATE, streamerv1.Operation_OPERATION_UPDATE:
		// Matching reads the document after the change; without it no
		// subscription, not even one by id, could tell the event applies.
		if len(ev.document) == 0 {
			return invalidf("event %q: %v requires document (the document after the change); only OPERATION_DELETE may omit it", ev.id, ev.op)
		}
	case streamerv1.Operation_OPERATION_DELETE:
	default:
		return invalidf("event %q: operation must be OPERATION_CREATE, OPERATION_UPDATE or OPERATION_DELETE, got %v", ev.id, ev.op)
	}
	for _, f := range []struct {
		name string
		data []byte
	}{{"document", ev.document}, {"before", ev.before}} {
		if len(f.data) > n.cfg.MaxDocumentBytes {
			return errorf(streamerv1.ErrorCode_ERROR_CODE_TOO_LARGE,
				"streamer: event %q: %s is %d bytes, the limit is %d bytes", ev.id, f.name, len(f.data), n.cfg.MaxDocumentBytes)
		}
		if !utf8.Valid(f.data) {
			return invalidf("event %q: %s is not valid UTF-8 (at byte %d): JSON text must be UTF-8", ev.id, f.name, invalidUTF8At(f.data))
		}
		if len(f.data) == 0 {
			continue
		}
		if ok, deeper, at := checkJSONObject(f.data, n.cfg.MaxDocumentDepth); deeper {
			return errorf(streamerv1.ErrorCode_ERROR_CODE_TOO_LARGE,
				"streamer: event %q: %s nests deeper than the limit of %d levels (--max-document-depth) at byte %d", ev.id, f.name, n.cfg.MaxDocumentDepth, at)
		} else if !ok {
			return invalidf("event %q: %s must be one JSON object (invalid at byte %d)", ev.id, f.name, at)
		}
	}
	return nil
}

// invalidUTF8At returns the offset of the first byte of data that is not
// part of valid UTF-8, or -1.
func invalidUTF8At(data []byte) int {
	for i := 0; i < len(data); {
		r, n := utf8.DecodeRune(data[i:])
		if r == utf8.RuneError && n <= 1 {
			return i
		}
		i += n
	}
	return -1
}

// nameTooLong is the Error for a name of length l over the limit.
func (n *Node) nameTooLong(field string, l int) *streamerv1.Error {
	return errorf(streamerv1.ErrorCode_ERROR_CODE_TOO_LARGE, "streamer: %s is %d bytes, the limit is %d (--max-name-bytes)", field, l, n.cfg.MaxNameBytes)
}

// errorf builds a protocol Error.
func errorf(code streamerv1.ErrorCode, format string, args ...any) *streamerv1.Error {
	return &streamerv1.Error{Code: code, Message: fmt.Sprintf(format, args...)}
}
