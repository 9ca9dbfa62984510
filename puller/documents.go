package puller

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/bson/primitive"
	"go.mongodb.org/mongo-driver/mongo"
	"go.mongodb.org/mongo-driver/mongo/options"
	"go.mongodb.org/mongo-driver/x/bsonx/bsoncore"

	"github.com/streamerd/streamer/store"
)

// DefaultMaxScan is the most documents a Documents query examines when
// Documents.MaxScan is 0.
const DefaultMaxScan = 100_000

// Documents is the snapshot source of a MongoDB database (store.Documents):
// the documents of the collections the puller watches, each with the
// tenant, id and JSON form the puller gives its change events (Mapping,
// AppendJSON).
//
// A query asks MongoDB for a superset of the documents it wants (the
// tenant, the id, and the criterion's conditions translated so that no
// document the criterion selects is left out, whatever the BSON types
// behind its JSON form), by ascending id field, and decides each document
// in Go with the criterion itself: the result is exactly what the match
// engine selects. CEL criteria push down the equalities they imply and
// are otherwise a scan; a query examines at most MaxScan documents.
//
// With SnapshotReads the query reads in a snapshot session (read concern
// "snapshot", MongoDB 5.0 and later) and reports the snapshot's
// atClusterTime as the page's ClusterTime: the events after it, and only
// those, follow the snapshot (the puller stamps each event's cluster time).
// Without it (servers without snapshot reads) the page has no cluster time
// and events committed between the read and the subscription's position
// may be delivered although the documents have them already.
type Documents struct {
	db            *mongo.Database
	mp            *Mapper
	MaxScan       int
	SnapshotReads bool

	// noDecimal is set once the server refused Decimal128 or symbol in
	// $type (it has no such values, so no document holds one: the filters
	// leave them out).
	noDecimal atomic.Bool
}

var _ store.Documents = (*Documents)(nil)

// NewDocuments returns the snapshot source of database db, whose documents
// map to tenants, collections and ids as m says, with snapshot reads on.
func NewDocuments(db *mongo.Database, m Mapping) *Documents {
	return &Documents{db: db, mp: NewMapper(m), SnapshotReads: true}
}

// Query implements store.Documents. Documents come in the id field's
// order in MongoDB; Next is the last one's id, and After must be one (ids
// of one BSON type: strings, ObjectIds or integers).
func (d *Documents) Query(ctx context.Context, q store.DocumentQuery) (store.DocumentPage, error) {
	if q.Limit < 1 {
		return store.DocumentPage{}, fmt.Errorf("%w: limit %d, want at least 1", store.ErrInvalid, q.Limit)
	}
	if d.mp.collection != nil {
		return store.DocumentPage{}, fmt.Errorf("%w: the puller takes collections from the field %s, so a collection's documents are not one MongoDB collection's", store.ErrSnapshotUnavailable, d.mp.m.CollectionField)
	}
	filter, none := d.filter(q, !d.noDecimal.Load())
	if none {
		return store.DocumentPage{}, nil
	}
	maxScan := d.MaxScan
	if maxScan <= 0 {
		maxScan = DefaultMaxScan
	}
	var page store.DocumentPage
	read := func(ctx context.Context) error {
		page = store.DocumentPage{}
		opts := options.Find().SetSort(bson.D{{Key: d.mp.m.IDField, Value: 1}}).SetBatchSize(1000)
		cur, err := d.db.Collection(q.Collection).Find(ctx, filter, opts)
		if err != nil && noDecimal(err) && !d.noDecimal.Swap(true) {
			filter, _ = d.filter(q, false)
			cur, err = d.db.Collection(q.Collection).Find(ctx, filter, opts)
		}
		if err != nil {
			return err
		}
		defer cur.Close(context.WithoutCancel(ctx))
		scanned := 0
		for cur.Next(ctx) {
			if scanned++; scanned > maxScan {
				return fmt.Errorf("%w: more than %d documents of %s examined before %d matched: narrow the criterion (field filters on indexed fields), or lower the snapshot limit",
					store.ErrSnapshotUnavailable, maxScan, q.Collection, q.Limit)
			}
			doc, ok, err := d.document(q, cur.Current)
			if err != nil || !ok {
				continue // a document the puller would skip too
			}
			if len(page.Documents) == q.Limit {
				page.More, page.Next = true, page.Documents[len(page.Documents)-1].ID
				return nil
			}
			page.Documents = append(page.Documents, doc)
		}
		return cur.Err()
	}
	if !d.SnapshotReads {
		if err := read(ctx); err != nil {
			return store.DocumentPage{}, fmt.Errorf("puller: reading %s: %w", q.Collection, err)
		}
		return page, nil
	}
	sess, err := d.db.Client().StartSession(options.Session().SetSnapshot(true))
	if err != nil {
		return store.DocumentPage{}, fmt.Errorf("puller: starting a snapshot session: %w", err)
	}
	defer sess.EndSession(context.WithoutCancel(ctx))
	if err := mongo.WithSession(ctx, sess, func(sc mongo.SessionContext) error { return read(sc) }); err != nil {
		return store.DocumentPage{}, fmt.Errorf("puller: reading %s at a snapshot (read concern snapshot needs MongoDB 5.0 or later): %w", q.Collection, err)
	}
	page.ClusterTime = snapshotTime(sess)
	if page.ClusterTime == 0 {
		return store.DocumentPage{}, fmt.Errorf("%w: MongoDB did not say at which cluster time it read %s (atClusterTime)", store.ErrSnapshotUnavailable, q.Collection)
	}
	return page, nil
}

// noDecimal reports whether err is a server's refusal of Decimal128 or
// symbol in a $type query (FerretDB: "Unknown type name alias: decimal").
func noDecimal(err error) bool {
	var se mongo.ServerError
	if !errors.As(err, &se) {
		return false
	}
	msg := err.Error()
	return strings.Contains(msg, "decimal") || strings.Contains(msg, "symbol") || strings.Contains(msg, "Type code 19") || strings.Contains(msg, "Type code 14")
}

// snapshotTime returns the atClusterTime of a snapshot session's reads as
// a cluster time (seconds << 32 | increment), 0 when unknown. The driver
// keeps it in its unstable session API only.
func snapshotTime(sess mongo.Session) uint64 {
	//lint:ignore SA1019 the only place the driver exposes a snapshot read's atClusterTime
	xs, ok := sess.(mongo.XSession)
	if !ok || xs.ClientSession() == nil || xs.ClientSession().SnapshotTime == nil {
		return 0
	}
	ts := xs.ClientSession().SnapshotTime
	return uint64(ts.T)<<32 | uint64(ts.I)
}

// document maps one raw document as the puller maps change events, and
// reports whether q selects it.
func (d *Documents) document(q store.DocumentQuery, raw bson.Raw) (store.Document, bool, error) {
	docs := []bsoncore.Document{bsoncore.Document(raw)}
	tenant := d.mp.m.DefaultTenant
	if d.mp.tenant != nil {
		t, found, err := lookupString(d.mp.tenant, docs)
		if err != nil {
			return store.Document{}, false, err
		}
		if found {
			tenant = t
		}
	}
	if tenant != q.Tenant {
		return store.Document{}, false, nil
	}
	id, found, err := lookupString(d.mp.id, docs)
	if err != nil || !found || id == "" || (q.DocumentID != "" && id != q.DocumentID) {
		return store.Document{}, false, err
	}
	data, err := AppendJSON(make([]byte, 0, len(raw)), raw)
	if err != nil {
		return store.Document{}, false, err
	}
	if q.Keep != nil && !q.Keep(id, data) {
		return store.Document{}, false, nil
	}
	return store.Document{ID: id, Data: data}, true, nil
}

// filter returns the MongoDB filter of a superset of the documents q
// selects; none reports that q selects none (another tenant than the
// static one).
func (d *Documents) filter(q store.DocumentQuery, decimal bool) (filter bson.D, none bool) {
	m := d.mp.m
	var and bson.A
	switch {
	case d.mp.tenant == nil:
		if q.Tenant != m.DefaultTenant {
			return nil, true
		}
	default:
		if tf, ok := fieldPath(d.mp.tenant); ok {
			alts := renderedAlternatives(tf, q.Tenant, decimal)
			if q.Tenant == m.DefaultTenant { // documents without the field
				alts = append(alts, bson.D{{Key: tf, Value: nil}})
			}
			and = append(and, bson.D{{Key: "$or", Value: alts}})
		}
	}
	idf, idOK := fieldPath(d.mp.id)
	if q.DocumentID != "" && idOK {
		and = append(and, bson.D{{Key: "$or", Value: renderedAlternatives(idf, q.DocumentID, decimal)}})
	}
	if q.After != "" && idOK {
		and = append(and, bson.D{{Key: "$or", Value: afterAlternatives(idf, q.After)}})
	}
	for _, c := range q.Conditions {
		if f, ok := conditionFilter(c, decimal); ok {
			and = append(and, f)
		}
	}
	if len(and) == 0 {
		return bson.D{}, false
	}
	return bson.D{{Key: "$and", Value: and}}, false
}

// fieldPath joins a path for a MongoDB query; false when a segment cannot
// be named in one (empty, with a dot, or starting with $).
func fieldPath(path []string) (string, bool) {
	if len(path) == 0 {
		return "", false
	}
	for _, s := range path {
		if s == "" || strings.Contains(s, ".") || strings.HasPrefix(s, "$") {
			return "", false
		}
	}
	return strings.Join(path, "."), true
}

// renderedAlternatives matches the BSON values that lookupString renders
// as s (tenant and id fields): the string, an ObjectId, an integer; other
// types by type.
func renderedAlternatives(field, s string, decimal bool) bson.A {
	in := bson.A{s}
	if oid, err := primitive.ObjectIDFromHex(s); err == nil && oid.Hex() == s {
		in = append(in, oid)
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil && strconv.FormatInt(n, 10) == s {
		in = append(in, n)
	}
	return bson.A{
		bson.D{{Key: field, Value: bson.D{{Key: "$in", Value: in}}}},
		bson.D{{Key: field, Value: bson.D{{Key: "$type", Value: withDecimal(bson.A{"double", "date", "bool", "binData", "object", "array"}, decimal)}}}},
	}
}

// afterAlternatives selects the ids after the cursor after, an id as
// lookupString renders it, for ids of one BSON type.
func afterAlternatives(field, after string) bson.A {
	alts := bson.A{bson.D{{Key: field, Value: bson.D{{Key: "$gt", Value: after}}}}}
	if oid, err := primitive.ObjectIDFromHex(after); err == nil && oid.Hex() == after {
		alts = append(alts, bson.D{{Key: field, Value: bson.D{{Key: "$gt", Value: oid}}}})
	}
	if n, err := strconv.ParseInt(after, 10, 64); err == nil && strconv.FormatInt(n, 10) == after {
		alts = append(alts, bson.D{{Key: field, Value: bson.D{{Key: "$gt", Value: n}}}})
	}
	return alts
}

// maxExact is the bound below which a float64 and an int64 agree: a number
// filter at or beyond it is not pushed down (MongoDB compares int64 values
// exactly, the match engine as float64).
const maxExact = 1 << 53

// Years 0000 to 9999 in ms since the epoch: AppendJSON renders dates
// outside them as numbers.
const (
	minDateMs = -62167219200000
	maxDateMs = 253402300799999
)

// stringTypes are the BSON types AppendJSON renders as JSON strings besides
// strings: no query value can name all of them, so a condition on a string
// matches them by type.
var stringTypes = bson.A{"objectId", "date", "binData"}

// withDecimal returns types with the BSON types some servers lack
// (Decimal128, and the deprecated symbol) added when decimal is set.
func withDecimal(types bson.A, decimal bool) bson.A {
	if !decimal {
		return types
	}
	return append(types[:len(types):len(types)], "decimal", "symbol")
}

// equalAlternatives returns the BSON values MongoDB compares equal to the
// JSON value v as AppendJSON renders them, and the BSON types that may
// render as v but are not listed; ok is false when v is pushed down as no
// condition at all (arrays, objects: MongoDB compares documents by key
// order, the match engine does not).
func equalAlternatives(v any, decimal bool) (in bson.A, types bson.A, ok bool) {
	switch x := v.(type) {
	case nil:
		return bson.A{nil}, nil, true // null, undefined and missing: a superset
	case bool:
		return bson.A{x}, nil, true
	case float64:
		if math.Abs(x) >= maxExact {
			return nil, nil, false
		}
		in = bson.A{x}
		if x == math.Trunc(x) && (x < minDateMs || x > maxDateMs) {
			in = append(in, primitive.NewDateTimeFromTime(time.UnixMilli(int64(x))))
		}
		return in, nil, true
	case string:
		in = bson.A{x}
		types = withDecimal(stringTypes, decimal)
		switch x {
		case "NaN": // NaN equals nothing in a query: matched by type
			types = append(types[:len(types):len(types)], "double")
		case "Infinity":
			in = append(in, math.Inf(1))
		case "-Infinity":
			in = append(in, math.Inf(-1))
		}
		return in, types, true
	}
	return nil, nil, false
}

// conditionFilter translates a condition into a MongoDB filter that every
// document satisfying it satisfies (ok false: no usable filter).
func conditionFilter(c store.Condition, decimal bool) (bson.D, bool) {
	field, ok := fieldPath(c.Path)
	if !ok {
		return nil, false
	}
	values := []any{c.Value}
	switch c.Op {
	case "in", "array-contains-any":
		list, isList := c.Value.([]any)
		if !isList {
			return nil, false
		}
		values = list
	}
	switch c.Op {
	case "==", "in", "array-contains", "array-contains-any":
		// MongoDB's equality on an array field matches an element too: a
		// superset of == and exactly array-contains.
		var in, types bson.A
		for _, v := range values {
			vin, vtypes, ok := equalAlternatives(v, decimal)
			if !ok {
				return nil, false
			}
			in = append(in, vin...)
			for _, ty := range vtypes {
				if !slices.Contains(types, ty) {
					types = append(types, ty)
				}
			}
		}
		return anyOf(field, bson.D{{Key: "$in", Value: in}}, types), true
	case "<", "<=", ">", ">=":
		op := map[string]string{"<": "$lt", "<=": "$lte", ">": "$gt", ">=": "$gte"}[c.Op]
		switch x := c.Value.(type) {
		case float64:
			if math.Abs(x) >= maxExact {
				return nil, false
			}
			// Dates outside years 0000-9999 render as numbers.
			return anyOf(field, bson.D{{Key: op, Value: x}}, bson.A{"date"}), true
		case string:
			// Doubles NaN and ±Inf render as strings: matched by type.
			return anyOf(field, bson.D{{Key: op, Value: x}}, append(withDecimal(stringTypes, decimal), "double")), true
		case bool:
			return bson.D{{Key: field, Value: bson.D{{Key: op, Value: x}}}}, true
		}
	}
	return nil, false
}

// anyOf is {$or: [{field: cond}, {field: {$type: types}}]}, or {$or:
// [{field: cond}]} without types.
func anyOf(field string, cond bson.D, types bson.A) bson.D {
	alts := bson.A{bson.D{{Key: field, Value: cond}}}
	if len(types) > 0 {
		alts = append(alts, bson.D{{Key: field, Value: bson.D{{Key: "$type", Value: types}}}})
	}
	return bson.D{{Key: "$or", Value: alts}}
}
