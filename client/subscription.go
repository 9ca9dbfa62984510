package client

import (
	"encoding/json"
	"fmt"
	"math"

	"google.golang.org/protobuf/types/known/structpb"

	streamerv1 "github.com/streamerd/streamer/proto/streamer/v1"
)

// Subscription selects the change events of one tenant's collection that
// the gateway wants delivered. At most one criterion may be set:
// DocumentID, Filters (non-nil) or CEL; none selects every document of the
// collection.
type Subscription struct {
	// ID is chosen by the gateway and unique within it. Required.
	// Subscribing again with an active id replaces that subscription.
	ID string
	// Tenant whose events are selected; empty selects the empty tenant only.
	Tenant string
	// Collection whose events are selected. Required.
	Collection string
	// DocumentID selects exactly this document.
	DocumentID string
	// Filters selects documents matching all these field filters
	// (Firestore where() semantics). A non-nil empty list selects every
	// document.
	Filters []Filter
	// CEL selects documents for which this expression, over `doc` and `id`,
	// is true.
	CEL string
	// Snapshot, when set, asks for the subscription's initial result set:
	// the matching documents as of the subscription's position in the
	// event log arrive first (Delivery.Snapshot pages, the last with End),
	// then every change after that position. Re-subscribes after a
	// reconnect ask for none; after a Resync, subscribe again with a
	// Snapshot to get the current state.
	Snapshot *SnapshotRequest
}

// SnapshotRequest tunes a snapshot.
type SnapshotRequest struct {
	// Limit is the most documents sent (0: the node's limit, which also
	// caps larger values). SnapshotEnd.more tells whether more matched.
	Limit int
	// After skips the documents whose id sorts at or before it: the
	// SnapshotEnd.next_after of an earlier snapshot, to page through a
	// large result set.
	After string
}

// Filter is one Firestore-style field condition. Its JSON form is the one of
// match.Filter: {"field":"a.b","op":"==","value":1}.
type Filter struct {
	// Field is a dotted path into the document.
	Field string `json:"field"`
	// Op is one of "==", "!=", "<", "<=", ">", ">=", "in", "not-in",
	// "array-contains", "array-contains-any".
	Op string `json:"op"`
	// Value is a JSON-like Go value: nil, bool, a number, string, []any or
	// map[string]any. List operators need a list.
	Value any `json:"value"`
}

// proto converts s to its wire form. Input the client can reject by itself
// (no id, several criteria, a value with no JSON form) gives a
// *SubscribeError.
func (s Subscription) proto() (*streamerv1.Subscription, error) {
	bad := func(code streamerv1.ErrorCode, format string, args ...any) error {
		return &SubscribeError{SubscriptionID: s.ID, Code: code, Message: fmt.Sprintf(format, args...)}
	}
	if s.ID == "" {
		return nil, bad(streamerv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "subscription id is required")
	}
	n := 0
	for _, set := range []bool{s.DocumentID != "", s.Filters != nil, s.CEL != ""} {
		if set {
			n++
		}
	}
	if n > 1 {
		return nil, bad(streamerv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT,
			"set at most one of DocumentID, Filters and CEL")
	}
	p := &streamerv1.Subscription{SubscriptionId: s.ID, Tenant: s.Tenant, Collection: s.Collection}
	switch {
	case s.DocumentID != "":
		p.Criterion = &streamerv1.Subscription_DocumentId{DocumentId: s.DocumentID}
	case s.CEL != "":
		p.Criterion = &streamerv1.Subscription_Cel{Cel: s.CEL}
	case s.Filters != nil:
		fs := make([]*streamerv1.FieldFilter, len(s.Filters))
		for i, f := range s.Filters {
			if n, ok := bigInteger(f.Value); ok { // a double would round it: sent exactly
				fs[i] = &streamerv1.FieldFilter{Field: f.Field, Op: f.Op, Integer: &n}
				continue
			}
			v, err := structpb.NewValue(f.Value)
			if err != nil {
				return nil, bad(streamerv1.ErrorCode_ERROR_CODE_INVALID_FILTER,
					"filter %d (field %q): value: %v", i, f.Field, err)
			}
			fs[i] = &streamerv1.FieldFilter{Field: f.Field, Op: f.Op, Value: v}
		}
		p.Criterion = &streamerv1.Subscription_Filters{Filters: &streamerv1.FieldFilters{Filters: fs}}
	}
	if s.Snapshot != nil {
		if s.Snapshot.Limit < 0 || s.Snapshot.Limit > math.MaxInt32 {
			return nil, bad(streamerv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "snapshot limit %d out of range", s.Snapshot.Limit)
		}
		p.Snapshot = &streamerv1.SnapshotRequest{Limit: int32(s.Snapshot.Limit), After: s.Snapshot.After}
	}
	return p, nil
}

// bigInteger returns v as an int64 when it is an integer that a float64
// cannot hold exactly (beyond 2^53), which FieldFilter.integer carries.
func bigInteger(v any) (int64, bool) {
	var n int64
	switch x := v.(type) {
	case int:
		n = int64(x)
	case int64:
		n = x
	case uint64:
		if x > math.MaxInt64 {
			return 0, false
		}
		n = int64(x)
	case json.Number:
		i, err := x.Int64()
		if err != nil {
			return 0, false
		}
		n = i
	default:
		return 0, false
	}
	f := float64(n)
	return n, f >= 9223372036854775808.0 || int64(f) != n
}
