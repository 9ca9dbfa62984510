package puller

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/bson/primitive"
	"go.mongodb.org/mongo-driver/mongo"
	"go.mongodb.org/mongo-driver/mongo/integration/mtest"
	"go.mongodb.org/mongo-driver/mongo/options"

	"github.com/streamerd/streamer/internal/testbin"
	"github.com/streamerd/streamer/match"
	"github.com/streamerd/streamer/store"
	"github.com/streamerd/streamer/store/storetest"
)

// ferret connects to a FerretDB server started for the test (a MongoDB
// wire protocol server: MongoDB itself cannot run here).
func ferret(t *testing.T) *mongo.Client {
	t.Helper()
	uri := testbin.FerretDB(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := mongo.Connect(ctx, options.Client().ApplyURI(uri))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Disconnect(context.Background()) })
	if err := c.Ping(ctx, nil); err != nil {
		t.Fatalf("FerretDB at %s: %v", uri, err)
	}
	return c
}

// mongoWriter writes the suite's documents into MongoDB, with their tenant
// in the "tenant" field and their id as _id.
type mongoWriter struct {
	t  *testing.T
	db *mongo.Database
}

func (w mongoWriter) Put(tenant, collection string, doc store.Document) {
	var d bson.D
	if err := bson.UnmarshalExtJSON(doc.Data, false, &d); err != nil {
		w.t.Fatal(err)
	}
	d = append(bson.D{{Key: "_id", Value: doc.ID}, {Key: "tenant", Value: tenant}}, d...)
	_, err := w.db.Collection(collection).ReplaceOne(context.Background(), bson.D{{Key: "_id", Value: doc.ID}, {Key: "tenant", Value: tenant}}, d, options.Replace().SetUpsert(true))
	if err != nil {
		w.t.Fatal(err)
	}
}

func (w mongoWriter) Delete(tenant, collection, id string) {
	if _, err := w.db.Collection(collection).DeleteOne(context.Background(), bson.D{{Key: "_id", Value: id}, {Key: "tenant", Value: tenant}}); err != nil {
		w.t.Fatal(err)
	}
}

var dbSeq atomic.Uint64

// TestDocumentsConformanceOnFerretDB runs the store.Documents conformance
// suite on a real MongoDB wire server (FerretDB, SQLite backend). FerretDB
// has no snapshot reads: SnapshotReads is off here and tested with the
// driver's mock deployment (TestDocumentsSnapshotRead). A document id is
// unique per collection in MongoDB, so the suite's tenants use distinct
// collections or ids... except where it writes the same id under two
// tenants: the writer keys documents by tenant and id, and the collection's
// _id must stay unique, so tenants live in separate databases there.
func TestDocumentsConformanceOnFerretDB(t *testing.T) {
	c := ferret(t)
	storetest.RunDocuments(t, storetest.DocumentsOptions{}, func(t *testing.T) (store.Documents, store.DocumentWriter) {
		db := c.Database(fmt.Sprintf("conf%d", dbSeq.Add(1)))
		d := NewDocuments(db, Mapping{})
		d.SnapshotReads = false
		return d, mongoWriter{t: t, db: db}
	})
}

// TestDocumentsMatchTheEngineOnFerretDB: for field filters of every
// operator and CEL expressions, over documents of every BSON type that
// renders as each JSON type, a query selects exactly the documents the
// match engine selects (MongoDB narrows the scan with the translated
// conditions, which must leave none of them out), and the translation
// narrows the scan for selective conditions.
func TestDocumentsMatchTheEngineOnFerretDB(t *testing.T) {
	c := ferret(t)
	db := c.Database("engine")
	rng := rand.New(rand.NewPCG(7, 11))
	pick := func(vs ...any) any { return vs[rng.IntN(len(vs))] }
	when := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	var docs []any
	for i := range 400 {
		d := bson.D{{Key: "_id", Value: fmt.Sprintf("d%03d", i)}, {Key: "tenant", Value: pick("acme", "acme", "globex")}}
		add := func(k string, v any) {
			if v != "<missing>" {
				d = append(d, bson.E{Key: k, Value: v})
			}
		}
		add("status", pick("hot", "cold", int32(1), nil, "<missing>", bson.A{"hot"}, true))
		add("n", pick(int32(5), int64(5), 5.0, 4.5, int64(1<<53+1), "5", nil, "<missing>", int32(-3), 100.0))
		add("tags", pick(bson.A{"a", "b"}, bson.A{"c"}, bson.A{}, "a", "<missing>", bson.A{int32(1), "a"}))
		add("o", pick(bson.D{{Key: "x", Value: int32(1)}}, bson.D{{Key: "x", Value: "1"}}, bson.D{}, "<missing>", bson.A{bson.D{{Key: "x", Value: int32(1)}}}))
		add("when", pick(primitive.NewDateTimeFromTime(when), primitive.NewDateTimeFromTime(when.AddDate(1, 0, 0)), "2024-05-01T12:00:00.000Z", "<missing>"))
		add("ref", pick(primitive.ObjectID{0x65, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, "650102030405060708090a0b", "<missing>"))
		add("z", pick(nil, "<missing>", int32(0)))
		docs = append(docs, d)
	}
	if _, err := db.Collection("c").InsertMany(context.Background(), docs); err != nil {
		t.Fatal(err)
	}
	eng, err := match.NewEngine(match.Config{})
	if err != nil {
		t.Fatal(err)
	}
	f := func(field, op string, v any) match.Filter {
		return match.Filter{Field: field, Op: match.Operator(op), Value: v}
	}
	criteria := []match.Criterion{
		{Filters: []match.Filter{f("status", "==", "hot")}},
		{Filters: []match.Filter{f("status", "==", true)}},
		{Filters: []match.Filter{f("status", "in", []any{"hot", "cold", 1})}},
		{Filters: []match.Filter{f("status", "!=", "hot")}},
		{Filters: []match.Filter{f("status", "not-in", []any{"hot", nil})}},
		{Filters: []match.Filter{f("n", "==", 5)}},
		{Filters: []match.Filter{f("n", "==", "5")}},
		{Filters: []match.Filter{f("n", "<", 5)}},
		{Filters: []match.Filter{f("n", "<=", 5)}},
		{Filters: []match.Filter{f("n", ">", 4.5)}},
		{Filters: []match.Filter{f("n", ">=", float64(1<<53))}},
		{Filters: []match.Filter{f("n", ">", "4")}},
		{Filters: []match.Filter{f("tags", "array-contains", "a")}},
		{Filters: []match.Filter{f("tags", "array-contains-any", []any{"c", 1})}},
		{Filters: []match.Filter{f("o.x", "==", 1)}},
		{Filters: []match.Filter{f("o.x", "in", []any{1, "1"})}},
		{Filters: []match.Filter{f("o", "==", map[string]any{"x": 1})}},
		{Filters: []match.Filter{f("when", "==", "2024-05-01T12:00:00.000Z")}},
		{Filters: []match.Filter{f("when", ">", "2024-06")}},
		{Filters: []match.Filter{f("ref", "==", "650102030405060708090a0b")}},
		{Filters: []match.Filter{f("z", "==", nil)}},
		{Filters: []match.Filter{f("status", "==", "hot"), f("n", ">=", 5)}},
		{CEL: `doc.status == "hot" && doc.n > 3.0`},
		{CEL: `doc.o.x == 1.0 || doc.z == 0.0`},
		{CEL: `"a" in doc.tags`},
		{DocumentID: "d007"},
		{},
	}
	for _, tenant := range []string{"acme", "globex", "nobody"} {
		for _, cr := range criteria {
			compiled, err := eng.Compile(cr)
			if err != nil {
				t.Fatalf("%+v: %v", cr, err)
			}
			keep := func(id string, data []byte) bool {
				doc, err := match.ParseDocument(data)
				return err == nil && compiled.Match(doc, id)
			}
			var want []string
			for _, d := range docs {
				raw, _ := bson.Marshal(d)
				out, ok, err := NewDocuments(db, Mapping{}).document(store.DocumentQuery{Tenant: tenant, DocumentID: compiled.DocumentID(), Keep: keep}, raw)
				if err != nil {
					t.Fatal(err)
				}
				if ok {
					want = append(want, out.ID)
				}
			}
			src := NewDocuments(db, Mapping{})
			src.SnapshotReads = false
			examined := 0
			page, err := src.Query(context.Background(), store.DocumentQuery{Tenant: tenant, Collection: "c", DocumentID: compiled.DocumentID(),
				Keep:       func(id string, data []byte) bool { examined++; return keep(id, data) },
				Conditions: conditions(compiled.Conditions()), Limit: 1000})
			if err != nil {
				t.Fatalf("%s %+v: %v", tenant, cr, err)
			}
			var got []string
			for _, d := range page.Documents {
				got = append(got, d.ID)
			}
			if !slices.Equal(got, want) {
				t.Errorf("%s %+v: MongoDB query selects %d documents %v,\nthe match engine %d %v", tenant, cr, len(got), got, len(want), want)
			}
			if len(cr.Filters) == 1 && cr.Filters[0].Field == "status" && cr.Filters[0].Op == "==" && examined >= len(docs)/2 {
				t.Errorf("%s %+v: %d documents examined of %d: the condition did not narrow the scan", tenant, cr, examined, len(docs))
			}
		}
	}
}

func conditions(cs []match.Condition) []store.Condition {
	out := make([]store.Condition, len(cs))
	for i, c := range cs {
		out[i] = store.Condition{Path: c.Path, Op: string(c.Op), Value: c.Value}
	}
	return out
}

// TestDocumentsSnapshotRead: with snapshot reads (FerretDB has none: the
// driver's mock deployment answers here) the query runs at read concern
// "snapshot" and the page carries the snapshot's atClusterTime, the way
// the puller stamps events (seconds << 32 | increment); the mapping of the
// documents is the puller's.
func TestDocumentsSnapshotRead(t *testing.T) {
	mt := mockT(t)
	mt.Run("snapshot", func(mt *mtest.T) {
		reply := mtest.CreateCursorResponse(0, testDB+".orders", mtest.FirstBatch,
			bson.D{{Key: "_id", Value: int32(2)}, {Key: "tenant", Value: "acme"}, {Key: "n", Value: int32(2)}},
			bson.D{{Key: "_id", Value: int32(3)}, {Key: "tenant", Value: "globex"}, {Key: "n", Value: int32(3)}},
		)
		cursor := reply[1].Value.(bson.D)
		reply[1].Value = append(cursor, bson.E{Key: "atClusterTime", Value: primitive.Timestamp{T: 1700000000, I: 7}})
		mt.AddMockResponses(reply)
		src := NewDocuments(mt.Client.Database(testDB), Mapping{})
		page, err := src.Query(context.Background(), store.DocumentQuery{Tenant: "acme", Collection: "orders", Limit: 10})
		if err != nil {
			mt.Fatal(err)
		}
		if len(page.Documents) != 1 || page.Documents[0].ID != "2" || string(page.Documents[0].Data) != `{"_id":2,"tenant":"acme","n":2}` {
			mt.Fatalf("documents %+v", page.Documents)
		}
		if page.ClusterTime != 1700000000<<32|7 {
			mt.Fatalf("ClusterTime = %d", page.ClusterTime)
		}
		find := mt.GetStartedEvent()
		if find == nil || find.CommandName != "find" {
			mt.Fatalf("command %+v", find)
		}
		if level, _ := find.Command.Lookup("readConcern", "level").StringValueOK(); level != "snapshot" {
			mt.Fatalf("find without readConcern snapshot: %s", find.Command)
		}
	})
	mt.Run("no cluster time reported", func(mt *mtest.T) {
		mt.AddMockResponses(mtest.CreateCursorResponse(0, testDB+".orders", mtest.FirstBatch))
		_, err := NewDocuments(mt.Client.Database(testDB), Mapping{}).Query(context.Background(), store.DocumentQuery{Tenant: "acme", Collection: "orders", Limit: 10})
		if !errors.Is(err, store.ErrSnapshotUnavailable) || !strings.Contains(err.Error(), "atClusterTime") {
			mt.Fatalf("got %v", err)
		}
	})
	mt.Run("collections from a field", func(mt *mtest.T) {
		_, err := NewDocuments(mt.Client.Database(testDB), Mapping{CollectionField: "kind"}).Query(context.Background(), store.DocumentQuery{Collection: "orders", Limit: 10})
		if !errors.Is(err, store.ErrSnapshotUnavailable) {
			mt.Fatalf("got %v", err)
		}
	})
}
