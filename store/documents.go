package store

import (
	"context"
	"errors"
)

// ErrSnapshotUnavailable is returned (wrapped) by Documents.Query when the
// source cannot answer for the collection asked (its documents are not all
// known); the message says why.
var ErrSnapshotUnavailable = errors.New("store: snapshot unavailable")

// Document is one document of a snapshot: its latest version.
type Document struct {
	// ID is the document id.
	ID string
	// Data is the document, a JSON object. The caller must not modify it.
	Data []byte
	// TimestampMs is the commit time of its last change (Unix ms; 0 when
	// unknown), EventID that change's event id ("" when unknown).
	TimestampMs int64
	EventID     string
}

// DocumentQuery selects documents of one tenant's collection.
type DocumentQuery struct {
	Tenant, Collection string
	// DocumentID, when set, selects that document only (a document-id
	// criterion): a source looks it up instead of scanning.
	DocumentID string
	// Keep reports whether a document belongs to the result (the
	// subscription's criterion). Nil keeps every document. It is called
	// with the source's lock held: it must not call the source.
	Keep func(id string, data []byte) bool
	// Conditions are necessary conditions of Keep (match.Compiled's
	// Conditions): a source that can narrow its scan with them may; Keep
	// still decides.
	Conditions []Condition
	// After: only documents after this cursor (a DocumentPage.Next of the
	// same source). Empty: from the first.
	After string
	// Limit is the most documents returned, at least 1.
	Limit int
}

// Condition is a necessary condition on one field (see match.Condition):
// Path, by segments; Op one of ==, <, <=, >, >=, in, array-contains,
// array-contains-any; Value a JSON-like value (nil, bool, float64,
// string, []any, map[string]any), a []any for in and array-contains-any.
type Condition struct {
	Path  []string
	Op    string
	Value any
}

// DocumentPage is the answer to a DocumentQuery.
type DocumentPage struct {
	// Documents kept, in the source's id order (memory: bytewise), at most
	// Limit.
	Documents []Document
	// More reports that Keep kept more documents after the last one
	// returned; Next is then the cursor to pass as After for them.
	More bool
	Next string
	// ClusterTime is the source's commit position the documents reflect
	// when the source is a database read at one (ChangeEvent.cluster_time:
	// events at or before it are in the documents); 0 for a source
	// maintained from the event log, which reflects exactly the events
	// before the query.
	ClusterTime uint64
}

// Documents is a source of snapshots: the latest version of every document
// of a collection, as of the position where the caller reads it. A
// partition's consumer calls Query while applying a subscription's
// control entry, so that the result reflects exactly the events before that
// entry. The memory implementation (store/memory.Documents) is maintained
// by the consumers from the event log they apply (DocumentWriter).
type Documents interface {
	// Query returns the documents q selects. A collection the source cannot
	// answer for is an error wrapping ErrSnapshotUnavailable; ctx.Err()
	// (possibly wrapped) when ctx is done first.
	Query(ctx context.Context, q DocumentQuery) (DocumentPage, error)
}

// DocumentWriter is how a source maintained from the event log learns its
// changes: the partition consumers call Put for every create and update and
// Delete for every delete, in log order per collection.
type DocumentWriter interface {
	// Put records doc as the latest version of its document. doc.Data is
	// kept, not copied: the caller must not modify it afterwards.
	Put(tenant, collection string, doc Document)
	// Delete records that the document id is gone.
	Delete(tenant, collection, id string)
}
