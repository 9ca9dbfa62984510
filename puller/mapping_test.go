package puller

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/bson"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	streamerv1 "github.com/streamerd/streamer/proto/streamer/v1"
)

// Canned change events, in the shape of MongoDB's documented change event
// format (https://www.mongodb.com/docs/manual/reference/change-events/),
// written as Extended JSON.
var cannedEvents = map[string]string{
	"insert": `{
	  "_id": {"_data": "8263501A9C000000012B022C0100296E5A1004AB1154ACACD849A48C61756D70D3B21F463C6F7065726174696F6E54797065003C696E736572740046646F63756D656E744B657900463C5F6964003C6F626A656374496400645019A078BE67426D7CF4D2000004"},
	  "operationType": "insert",
	  "clusterTime": {"$timestamp": {"t": 1666193824, "i": 1}},
	  "wallTime": {"$date": "2022-10-19T15:37:04.604Z"},
	  "ns": {"db": "engineering", "coll": "users"},
	  "documentKey": {"_id": {"$oid": "599af247bb69cd89961c986d"}},
	  "fullDocument": {"_id": {"$oid": "599af247bb69cd89961c986d"}, "tenant": "acme", "userName": "alice123", "name": "Alice", "age": {"$numberInt": "34"}}
	}`,
	"update": `{
	  "_id": {"_data": "8263501B01000000012B022C0100296E5A1004AB1154ACACD849A48C61756D70D3B21F463C6F7065726174696F6E54797065003C7570646174650046646F63756D656E744B657900463C5F6964003C6F626A656374496400645019A078BE67426D7CF4D2000004"},
	  "operationType": "update",
	  "clusterTime": {"$timestamp": {"t": 1666193925, "i": 1}},
	  "wallTime": {"$date": "2022-10-19T15:38:45.604Z"},
	  "ns": {"db": "engineering", "coll": "users"},
	  "documentKey": {"_id": {"$oid": "599af247bb69cd89961c986d"}},
	  "updateDescription": {
	    "updatedFields": {"email": "alice@10gen.com", "address.city": "Oslo"},
	    "removedFields": ["phoneNumber"],
	    "truncatedArrays": [{"field": "vacation_time", "newSize": {"$numberInt": "36"}}]
	  },
	  "fullDocument": {"_id": {"$oid": "599af247bb69cd89961c986d"}, "tenant": "acme", "userName": "alice123", "email": "alice@10gen.com", "address": {"city": "Oslo"}, "vacation_time": []},
	  "fullDocumentBeforeChange": {"_id": {"$oid": "599af247bb69cd89961c986d"}, "tenant": "acme", "userName": "alice123", "phoneNumber": "555"}
	}`,
	"update without post-image": `{
	  "_id": {"_data": "8263501B02"},
	  "operationType": "update",
	  "clusterTime": {"$timestamp": {"t": 1666193926, "i": 3}},
	  "ns": {"db": "engineering", "coll": "users"},
	  "documentKey": {"_id": "alice"},
	  "updateDescription": {"updatedFields": {"a": {"$numberInt": "1"}}, "removedFields": []},
	  "fullDocument": null
	}`,
	"replace": `{
	  "_id": {"_data": "8263501B5E"},
	  "operationType": "replace",
	  "clusterTime": {"$timestamp": {"t": 1666194014, "i": 2}},
	  "wallTime": {"$date": "2022-10-19T15:40:14.100Z"},
	  "ns": {"db": "engineering", "coll": "users"},
	  "documentKey": {"_id": {"$oid": "599af247bb69cd89961c986d"}},
	  "fullDocument": {"_id": {"$oid": "599af247bb69cd89961c986d"}, "tenant": "acme", "userName": "alice123", "name": "Alice"}
	}`,
	"delete": `{
	  "_id": {"_data": "8263501B9E"},
	  "operationType": "delete",
	  "clusterTime": {"$timestamp": {"t": 1666194078, "i": 1}},
	  "wallTime": {"$date": "2022-10-19T15:41:18.000Z"},
	  "ns": {"db": "engineering", "coll": "users"},
	  "documentKey": {"_id": {"$oid": "599af247bb69cd89961c986d"}}
	}`,
	"delete with pre-image": `{
	  "_id": {"_data": "8263501B9F"},
	  "operationType": "delete",
	  "clusterTime": {"$timestamp": {"t": 1666194079, "i": 1}},
	  "ns": {"db": "engineering", "coll": "users"},
	  "documentKey": {"_id": {"$numberLong": "42"}},
	  "fullDocumentBeforeChange": {"_id": {"$numberLong": "42"}, "tenant": "globex", "name": "Bob"}
	}`,
	"delete with tenant in shard key": `{
	  "_id": {"_data": "8263501BA0"},
	  "operationType": "delete",
	  "clusterTime": {"$timestamp": {"t": 1666194080, "i": 1}},
	  "ns": {"db": "engineering", "coll": "users"},
	  "documentKey": {"tenant": "initech", "_id": {"$numberInt": "7"}}
	}`,
	"drop": `{
	  "_id": {"_data": "8263501C00"},
	  "operationType": "drop",
	  "clusterTime": {"$timestamp": {"t": 1666194176, "i": 1}},
	  "wallTime": {"$date": "2022-10-19T15:42:56.000Z"},
	  "ns": {"db": "engineering", "coll": "users"}
	}`,
	"rename": `{
	  "_id": {"_data": "8263501C01"},
	  "operationType": "rename",
	  "clusterTime": {"$timestamp": {"t": 1666194177, "i": 1}},
	  "ns": {"db": "engineering", "coll": "users"},
	  "to": {"db": "engineering", "coll": "people"}
	}`,
	"dropDatabase": `{
	  "_id": {"_data": "8263501C02"},
	  "operationType": "dropDatabase",
	  "clusterTime": {"$timestamp": {"t": 1666194178, "i": 1}},
	  "ns": {"db": "engineering"}
	}`,
	"invalidate": `{
	  "_id": {"_data": "8263501C03"},
	  "operationType": "invalidate",
	  "clusterTime": {"$timestamp": {"t": 1666194179, "i": 1}},
	  "wallTime": {"$date": "2022-10-19T15:42:59.000Z"}
	}`,
	"createIndexes": `{
	  "_id": {"_data": "8263501C04"},
	  "operationType": "createIndexes",
	  "clusterTime": {"$timestamp": {"t": 1666194180, "i": 1}},
	  "ns": {"db": "engineering", "coll": "users"},
	  "operationDescription": {"indexes": [{"v": {"$numberInt": "2"}, "key": {"name": {"$numberInt": "1"}}, "name": "name_1"}]}
	}`,
}

// canned returns the canned change event called name as BSON.
func canned(t testing.TB, name string) bson.Raw {
	t.Helper()
	src, ok := cannedEvents[name]
	if !ok {
		t.Fatalf("no canned event %q", name)
	}
	var raw bson.Raw
	if err := bson.UnmarshalExtJSON([]byte(src), false, &raw); err != nil {
		t.Fatalf("canned event %q: %v", name, err)
	}
	return raw
}

func TestConvertOperations(t *testing.T) {
	tests := []struct {
		name    string
		mapping Mapping
		want    string // protojson of the expected ChangeEvent
	}{
		{"insert", Mapping{}, `{
			"eventId": "8263501A9C000000012B022C0100296E5A1004AB1154ACACD849A48C61756D70D3B21F463C6F7065726174696F6E54797065003C696E736572740046646F63756D656E744B657900463C5F6964003C6F626A656374496400645019A078BE67426D7CF4D2000004",
			"tenant": "acme", "collection": "users", "documentId": "599af247bb69cd89961c986d", "operation": "OPERATION_CREATE",
			"document": "` + b64(`{"_id":"599af247bb69cd89961c986d","tenant":"acme","userName":"alice123","name":"Alice","age":34}`) + `",
			"timestampMs": "1666193824604", "clusterTime": "7156247982877179905"}`},
		{"update", Mapping{}, `{
			"eventId": "8263501B01000000012B022C0100296E5A1004AB1154ACACD849A48C61756D70D3B21F463C6F7065726174696F6E54797065003C7570646174650046646F63756D656E744B657900463C5F6964003C6F626A656374496400645019A078BE67426D7CF4D2000004",
			"tenant": "acme", "collection": "users", "documentId": "599af247bb69cd89961c986d", "operation": "OPERATION_UPDATE",
			"document": "` + b64(`{"_id":"599af247bb69cd89961c986d","tenant":"acme","userName":"alice123","email":"alice@10gen.com","address":{"city":"Oslo"},"vacation_time":[]}`) + `",
			"before": "` + b64(`{"_id":"599af247bb69cd89961c986d","tenant":"acme","userName":"alice123","phoneNumber":"555"}`) + `",
			"changedFields": ["email", "address.city", "phoneNumber", "vacation_time"],
			"timestampMs": "1666193925604", "clusterTime": "7156248416668876801"}`},
		{"replace", Mapping{}, `{
			"eventId": "8263501B5E", "tenant": "acme", "collection": "users", "documentId": "599af247bb69cd89961c986d", "operation": "OPERATION_UPDATE",
			"document": "` + b64(`{"_id":"599af247bb69cd89961c986d","tenant":"acme","userName":"alice123","name":"Alice"}`) + `",
			"timestampMs": "1666194014100", "clusterTime": "7156248798920966146"}`},
		{"delete", Mapping{DefaultTenant: "acme"}, `{
			"eventId": "8263501B9E", "tenant": "acme", "collection": "users", "documentId": "599af247bb69cd89961c986d", "operation": "OPERATION_DELETE",
			"timestampMs": "1666194078000", "clusterTime": "7156249073798873089"}`},
		{"delete with pre-image", Mapping{}, `{
			"eventId": "8263501B9F", "tenant": "globex", "collection": "users", "documentId": "42", "operation": "OPERATION_DELETE",
			"before": "` + b64(`{"_id":42,"tenant":"globex","name":"Bob"}`) + `",
			"timestampMs": "1666194079000", "clusterTime": "7156249078093840385"}`},
		{"delete with tenant in shard key", Mapping{DefaultTenant: "nobody"}, `{
			"eventId": "8263501BA0", "tenant": "initech", "collection": "users", "documentId": "7", "operation": "OPERATION_DELETE",
			"timestampMs": "1666194080000", "clusterTime": "7156249082388807681"}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := NewMapper(tc.mapping).Convert(canned(t, tc.name))
			if err != nil {
				t.Fatalf("Convert: %v", err)
			}
			want := &streamerv1.ChangeEvent{}
			if err := protojson.Unmarshal([]byte(tc.want), want); err != nil {
				t.Fatalf("bad expectation: %v", err)
			}
			if !proto.Equal(got, want) {
				t.Errorf("Convert:\n got  %v\n want %v\n got document %s\n got before %s", got, want, got.GetDocument(), got.GetBefore())
			}
		})
	}
}

func TestConvertMapping(t *testing.T) {
	// One insert whose document offers every kind of field the mapping can use.
	src := `{
	  "_id": {"_data": "01"}, "operationType": "insert",
	  "clusterTime": {"$timestamp": {"t": 1700000000, "i": 1}},
	  "ns": {"db": "shop", "coll": "raw_orders"},
	  "documentKey": {"_id": {"$oid": "65a000000000000000000001"}},
	  "fullDocument": {"_id": {"$oid": "65a000000000000000000001"}, "tenant": "acme", "org": {"$oid": "65a0000000000000000000ff"},
	    "meta": {"tenant": "nested", "kind": "orders"}, "sku": {"$numberLong": "9007199254740993"}, "slug": "o-1",
	    "compound": {"a": {"$numberInt": "1"}, "b": "x"}}
	}`
	var raw bson.Raw
	if err := bson.UnmarshalExtJSON([]byte(src), false, &raw); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name             string
		mapping          Mapping
		tenant, coll, id string
		wantSkip         bool
	}{
		{"defaults", Mapping{}, "acme", "raw_orders", "65a000000000000000000001", false},
		{"tenant from ObjectId field", Mapping{TenantField: "org"}, "65a0000000000000000000ff", "raw_orders", "65a000000000000000000001", false},
		{"tenant from nested field", Mapping{TenantField: "meta.tenant"}, "nested", "raw_orders", "65a000000000000000000001", false},
		{"tenant lookup off", Mapping{TenantField: "-", DefaultTenant: "static"}, "static", "raw_orders", "65a000000000000000000001", false},
		{"missing tenant field takes the default", Mapping{TenantField: "nope", DefaultTenant: "dflt"}, "dflt", "raw_orders", "65a000000000000000000001", false},
		{"collection from a field", Mapping{CollectionField: "meta.kind"}, "acme", "orders", "65a000000000000000000001", false},
		{"missing collection field keeps the namespace", Mapping{CollectionField: "nope"}, "acme", "raw_orders", "65a000000000000000000001", false},
		{"id from a string field", Mapping{IDField: "slug"}, "acme", "raw_orders", "o-1", false},
		{"id from an int64 field keeps every digit", Mapping{IDField: "sku"}, "acme", "raw_orders", "9007199254740993", false},
		{"id from a document is its JSON", Mapping{IDField: "compound"}, "acme", "raw_orders", `{"a":1,"b":"x"}`, false},
		{"missing id field skips the event", Mapping{IDField: "nope"}, "", "", "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ev, err := NewMapper(tc.mapping).Convert(raw)
			if tc.wantSkip {
				var skip *SkipError
				if !errors.As(err, &skip) || !errors.Is(err, ErrSkipped) || skip.Reason == "" {
					t.Fatalf("Convert = %v, %v; want a *SkipError", ev, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Convert: %v", err)
			}
			if ev.GetTenant() != tc.tenant || ev.GetCollection() != tc.coll || ev.GetDocumentId() != tc.id {
				t.Errorf("tenant, collection, id = %q, %q, %q; want %q, %q, %q", ev.GetTenant(), ev.GetCollection(), ev.GetDocumentId(), tc.tenant, tc.coll, tc.id)
			}
			if ev.GetTimestampMs() != 1700000000000 {
				t.Errorf("timestamp_ms = %d, want clusterTime seconds × 1000", ev.GetTimestampMs())
			}
		})
	}
}

func TestConvertEndingEvents(t *testing.T) {
	tests := []struct {
		name, namespace, to, advice string
	}{
		{"drop", "engineering.users", "", "resumes after the drop"},
		{"rename", "engineering.users", "engineering.people", "resumes after the rename"},
		{"dropDatabase", "engineering", "", "--start-from-now"},
		{"invalidate", "", "", "--start-from-now"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ev, err := NewMapper(Mapping{}).Convert(canned(t, tc.name))
			var end *EndError
			if !errors.As(err, &end) || !errors.Is(err, ErrStreamEnded) {
				t.Fatalf("Convert = %v, %v; want an *EndError", ev, err)
			}
			if end.Operation != tc.name || end.Namespace != tc.namespace || end.To != tc.to || end.EventID == "" || end.ClusterTime.IsZero() {
				t.Errorf("EndError = %+v", end)
			}
			if msg := err.Error(); !strings.Contains(msg, tc.advice) || !strings.Contains(msg, "resync") {
				t.Errorf("message %q does not say what to do (%q, resync)", msg, tc.advice)
			}
		})
	}
}

func TestConvertSkips(t *testing.T) {
	t.Run("DDL event", func(t *testing.T) {
		_, err := NewMapper(Mapping{}).Convert(canned(t, "createIndexes"))
		var skip *SkipError
		if !errors.As(err, &skip) || skip.Operation != "createIndexes" || skip.EventID != "8263501C04" || skip.Err != nil {
			t.Fatalf("Convert error = %v; want a *SkipError for createIndexes", err)
		}
	})
	t.Run("malformed full document", func(t *testing.T) {
		raw := canned(t, "insert")
		doc := raw.Lookup("fullDocument").Document()
		bad := slices.Clone([]byte(raw))
		// Corrupt the type byte of the first element of fullDocument.
		i := strings.Index(string(bad), string(doc))
		bad[i+4] = 0x42
		_, err := NewMapper(Mapping{}).Convert(bad)
		if !errors.Is(err, ErrSkipped) || !errors.Is(err, ErrMalformedBSON) {
			t.Fatalf("Convert error = %v; want a *SkipError wrapping ErrMalformedBSON", err)
		}
	})
	t.Run("update of a document deleted before the lookup", func(t *testing.T) {
		_, err := NewMapper(Mapping{}).Convert(canned(t, "update without post-image"))
		var skip *SkipError
		if !errors.As(err, &skip) || skip.Err != nil || !strings.Contains(skip.Reason, "deleted before the update") {
			t.Fatalf("Convert error = %v; want a *SkipError by design", err)
		}
	})
	t.Run("no resume token", func(t *testing.T) {
		raw, _ := bson.Marshal(bson.D{{Key: "operationType", Value: "insert"}})
		if _, err := NewMapper(Mapping{}).Convert(raw); !errors.Is(err, ErrMalformedBSON) {
			t.Fatalf("Convert error = %v; want ErrMalformedBSON", err)
		}
	})
}

func TestConnectMongo(t *testing.T) {
	tests := []struct {
		name, uri, db, wantDB, wantErr string
	}{
		{"database from the URI", "mongodb://127.0.0.1:1/shop?serverSelectionTimeoutMS=50", "", "shop", ""},
		{"explicit database wins", "mongodb://127.0.0.1:1/shop", "crm", "crm", ""},
		{"no database", "mongodb://127.0.0.1:1", "", "", "no database to watch"},
		{"not a MongoDB URI", "http://127.0.0.1:1/shop", "", "", "MongoDB URI"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w, client, err := ConnectMongo(t.Context(), tc.uri, tc.db, []string{"orders"})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ConnectMongo error = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer client.Disconnect(context.Background())
			if w.Database() != tc.wantDB {
				t.Errorf("database = %q, want %q", w.Database(), tc.wantDB)
			}
		})
	}
}
