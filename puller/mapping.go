package puller

import (
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/x/bsonx/bsoncore"

	streamerv1 "github.com/streamerd/streamer/proto/streamer/v1"
)

// DefaultTenantField is the document field that names the tenant when
// Mapping.TenantField is empty.
const DefaultTenantField = "tenant"

// Mapping says where an event's tenant, collection and document id come
// from. Field names are dotted paths into the document ("meta.tenant").
// The zero Mapping reads the tenant from the "tenant" field, the collection
// from the namespace and the id from _id.
type Mapping struct {
	// TenantField names the field holding the tenant (default "tenant"). It
	// is looked up in the full document, then in the pre-image, then in the
	// documentKey (where a shard key puts it, which is how a hard delete
	// without pre-image still finds its tenant). "-" turns the lookup off.
	// A non-string value is rendered like an id (ObjectId as hex, …).
	TenantField string
	// DefaultTenant is the tenant of events whose documents lack the field
	// (default "", the empty tenant of single-tenant deployments). Deletes
	// without a pre-image fall back to it unless the field is in the
	// documentKey: enable pre-images or shard by the tenant field when
	// tenants matter for deletes.
	DefaultTenant string
	// CollectionField, when not empty, names a document field holding the
	// collection to publish under; events whose documents lack it keep the
	// namespace's collection (ns.coll).
	CollectionField string
	// IDField names the field holding the document id (default "_id", taken
	// from the documentKey). Another field is looked up like TenantField;
	// an event where it is found nowhere is skipped with a *SkipError.
	// Ids are rendered as strings: strings as they are, ObjectIds as hex,
	// integers in decimal, anything else as its JSON text (AppendJSON).
	IDField string
}

// Mapper converts raw change events into ChangeEvents. Build it with
// NewMapper; it is safe for concurrent use.
type Mapper struct {
	m                      Mapping
	tenant, collection, id []string // split paths; nil = not looked up
}

// NewMapper returns the Mapper of m, with m's zero fields set to their
// defaults.
func NewMapper(m Mapping) *Mapper {
	if m.TenantField == "" {
		m.TenantField = DefaultTenantField
	}
	if m.IDField == "" {
		m.IDField = "_id"
	}
	mp := &Mapper{m: m, id: strings.Split(m.IDField, ".")}
	if m.TenantField != "-" {
		mp.tenant = strings.Split(m.TenantField, ".")
	}
	if m.CollectionField != "" {
		mp.collection = strings.Split(m.CollectionField, ".")
	}
	return mp
}

// Mapping returns the mapping with its defaults applied.
func (mp *Mapper) Mapping() Mapping { return mp.m }

// Convert maps one change event document, in MongoDB's change event format,
// to a ChangeEvent:
//
//   - operation: insert → CREATE, update and replace → UPDATE, delete → DELETE;
//   - event_id: the resume token's _data string (the token's Extended JSON
//     if it has no string _data);
//   - tenant, collection, document_id: as the Mapping says;
//   - document: fullDocument as JSON (absent for deletes, and for updates
//     whose document was deleted before the lookup); before:
//     fullDocumentBeforeChange as JSON when present;
//   - changed_fields (updates only): the keys of
//     updateDescription.updatedFields, then removedFields, then the fields of
//     truncatedArrays;
//   - timestamp_ms: wallTime when present, else clusterTime seconds × 1000;
//   - cluster_time: clusterTime as seconds << 32 | increment.
//
// Partition and position are left unset. invalidate, drop, dropDatabase and
// rename return an *EndError; other operation types, events without a
// document id and malformed documents return a *SkipError.
func (mp *Mapper) Convert(raw bson.Raw) (*streamerv1.ChangeEvent, error) {
	c, err := mp.convert(raw)
	return c.event, err
}

// change is a parsed change event.
type change struct {
	token       bsoncore.Document // the _id (resume token)
	eventID     string
	op          string
	clusterTime time.Time // zero if absent
	clusterTS   uint64    // clusterTime as seconds<<32 | increment; 0 if absent
	wallTime    time.Time // zero if absent
	nsDB        string
	nsColl      string
	to          string // "db.coll" of a rename
	documentKey bsoncore.Document
	full        bsoncore.Document // nil if absent or null
	before      bsoncore.Document // nil if absent or null
	update      bsoncore.Document // updateDescription, nil if absent

	event *streamerv1.ChangeEvent // set for document changes
}

// parse reads the fields of a change event that the mapping uses.
func parse(raw []byte) (change, error) {
	var c change
	docOrNil := func(v bsoncore.Value) bsoncore.Document {
		if v.Type == bson.TypeEmbeddedDocument {
			return bsoncore.Document(v.Data)
		}
		return nil
	}
	str := func(v bsoncore.Value) string {
		if b, ok := stringBytes(v.Data); ok && v.Type == bson.TypeString {
			return string(b)
		}
		return ""
	}
	err := forEach(raw, func(key []byte, v bsoncore.Value) error {
		switch string(key) {
		case "_id":
			c.token = docOrNil(v)
		case "operationType":
			c.op = str(v)
		case "clusterTime":
			if t, i, ok := v.TimestampOK(); ok {
				c.clusterTime = time.Unix(int64(t), 0)
				c.clusterTS = uint64(t)<<32 | uint64(i)
			}
		case "wallTime":
			if ms, ok := v.DateTimeOK(); ok {
				c.wallTime = time.UnixMilli(ms)
			}
		case "ns":
			if d := docOrNil(v); d != nil {
				c.nsDB, c.nsColl = str(d.Lookup("db")), str(d.Lookup("coll"))
			}
		case "to":
			if d := docOrNil(v); d != nil {
				c.to = str(d.Lookup("db")) + "." + str(d.Lookup("coll"))
			}
		case "documentKey":
			c.documentKey = docOrNil(v)
		case "fullDocument":
			c.full = docOrNil(v)
		case "fullDocumentBeforeChange":
			c.before = docOrNil(v)
		case "updateDescription":
			c.update = docOrNil(v)
		}
		return nil
	})
	if err != nil {
		return c, err
	}
	if c.token == nil {
		return c, malformed("change event without a resume token (_id)")
	}
	if err := c.token.Validate(); err != nil {
		return c, malformed("resume token: %v", err)
	}
	if data, ok := c.token.Lookup("_data").StringValueOK(); ok {
		c.eventID = data
	} else {
		c.eventID = c.token.String()
	}
	return c, nil
}

// time returns the event's commit time: wallTime, else clusterTime.
func (c *change) time() time.Time {
	if !c.wallTime.IsZero() {
		return c.wallTime
	}
	return c.clusterTime
}

// operation maps the change's operationType to a document operation, or
// returns the *EndError or *SkipError of the other types.
func (c *change) operation() (streamerv1.Operation, error) {
	switch c.op {
	case "insert":
		return streamerv1.Operation_OPERATION_CREATE, nil
	case "update", "replace":
		return streamerv1.Operation_OPERATION_UPDATE, nil
	case "delete":
		return streamerv1.Operation_OPERATION_DELETE, nil
	case "invalidate", "drop", "dropDatabase", "rename":
		e := &EndError{Operation: c.op, EventID: c.eventID, ClusterTime: c.time()}
		switch c.op {
		case "drop", "rename":
			e.Namespace = c.nsDB + "." + c.nsColl
		case "dropDatabase":
			e.Namespace = c.nsDB
		}
		if c.op == "rename" {
			e.To = c.to
		}
		return 0, e
	default:
		return 0, &SkipError{Operation: c.op, EventID: c.eventID, Reason: "not a document change (only insert, update, replace and delete are published)"}
	}
}

func (mp *Mapper) convert(raw []byte) (change, error) {
	c, err := parse(raw)
	if err != nil {
		return c, &SkipError{Operation: c.op, EventID: c.eventID, Reason: "the change event is malformed", Err: err}
	}
	op, err := c.operation()
	if err != nil {
		return c, err
	}
	skip := func(reason string, err error) (change, error) {
		return c, &SkipError{Operation: c.op, EventID: c.eventID, Reason: reason, Err: err}
	}

	ev := &streamerv1.ChangeEvent{EventId: c.eventID, Operation: op, Collection: c.nsColl, ClusterTime: c.clusterTS}
	if t := c.time(); !t.IsZero() {
		ev.TimestampMs = t.UnixMilli()
	}
	sources := [3]bsoncore.Document{c.full, c.before, c.documentKey}

	idSources := sources[:]
	if mp.m.IDField == "_id" {
		idSources = sources[2:] // documentKey._id, always there for CRUD events
	}
	id, found, err := lookupString(mp.id, idSources)
	switch {
	case err != nil:
		return skip("its document id is malformed", err)
	case !found || id == "":
		return skip("no document id in field "+mp.m.IDField, nil)
	}
	ev.DocumentId = id

	ev.Tenant = mp.m.DefaultTenant
	if mp.tenant != nil {
		t, found, err := lookupString(mp.tenant, sources[:])
		if err != nil {
			return skip("its tenant field is malformed", err)
		}
		if found {
			ev.Tenant = t
		}
	}
	if mp.collection != nil {
		coll, found, err := lookupString(mp.collection, sources[:])
		if err != nil {
			return skip("its collection field is malformed", err)
		}
		if found && coll != "" {
			ev.Collection = coll
		}
	}
	if ev.Collection == "" {
		return skip("no collection in its namespace", nil)
	}

	if c.full != nil && op != streamerv1.Operation_OPERATION_DELETE {
		if ev.Document, err = AppendJSON(make([]byte, 0, len(c.full)), bson.Raw(c.full)); err != nil {
			return skip("its fullDocument is malformed", err)
		}
	}
	if op == streamerv1.Operation_OPERATION_UPDATE && ev.Document == nil {
		// updateLookup found no document: it was deleted after this change,
		// and its delete event follows. Without a document no subscription
		// could match the update (the node refuses such events).
		return skip("its document was deleted before the update could be looked up (fullDocument is null); its delete event follows", nil)
	}
	if c.before != nil {
		if ev.Before, err = AppendJSON(make([]byte, 0, len(c.before)), bson.Raw(c.before)); err != nil {
			return skip("its fullDocumentBeforeChange is malformed", err)
		}
	}
	if c.op == "update" && c.update != nil {
		if ev.ChangedFields, err = changedFields(c.update); err != nil {
			return skip("its updateDescription is malformed", err)
		}
	}
	c.event = ev
	return c, nil
}

// lookupString finds path in the first of docs that has it (not null) and
// renders it with scalarString. A field name containing dots is also tried
// literally, the way a documentKey names a dotted shard key.
func lookupString(path []string, docs []bsoncore.Document) (string, bool, error) {
	for _, d := range docs {
		if d == nil {
			continue
		}
		v, err := d.LookupErr(path...)
		if err != nil && len(path) > 1 {
			v, err = d.LookupErr(strings.Join(path, "."))
		}
		if err != nil {
			continue
		}
		s, ok, err := scalarString(v)
		if err != nil {
			return "", false, err
		}
		if ok {
			return s, true, nil
		}
	}
	return "", false, nil
}

// changedFields lists the paths an update set or removed: the keys of
// updatedFields, then removedFields, then the truncatedArrays[].field not
// listed already. (MongoDB never lists a path both as updated and removed.)
func changedFields(desc bsoncore.Document) ([]string, error) {
	var out []string
	add := func(s string) {
		if s != "" {
			out = append(out, s)
		}
	}
	addNew := func(s string) {
		for _, o := range out {
			if o == s {
				return
			}
		}
		add(s)
	}
	err := forEach(desc, func(key []byte, v bsoncore.Value) error {
		switch string(key) {
		case "updatedFields":
			if v.Type != bson.TypeEmbeddedDocument {
				return nil
			}
			return forEach(v.Data, func(k []byte, _ bsoncore.Value) error {
				add(string(k))
				return nil
			})
		case "removedFields":
			if v.Type != bson.TypeArray {
				return nil
			}
			return forEach(v.Data, func(_ []byte, f bsoncore.Value) error {
				if s, ok := stringBytes(f.Data); ok && f.Type == bson.TypeString {
					add(string(s))
				}
				return nil
			})
		case "truncatedArrays":
			if v.Type != bson.TypeArray {
				return nil
			}
			return forEach(v.Data, func(_ []byte, t bsoncore.Value) error {
				if d, ok := t.DocumentOK(); ok {
					if s, ok := d.Lookup("field").StringValueOK(); ok {
						addNew(s)
					}
				}
				return nil
			})
		}
		return nil
	})
	return out, err
}
