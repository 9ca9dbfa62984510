package puller

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"math"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/bson/primitive"
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func mustDecimal(t testing.TB, s string) primitive.Decimal128 {
	t.Helper()
	d, err := primitive.ParseDecimal128(s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestAppendJSONTypes(t *testing.T) {
	oid, _ := primitive.ObjectIDFromHex("65a1b2c3d4e5f60718293a4b")
	date := time.Date(2024, 5, 1, 12, 30, 45, 123_000_000, time.UTC)
	uuid := []byte{0x12, 0x34, 0x56, 0x78, 0x12, 0x34, 0x56, 0x78, 0x12, 0x34, 0x56, 0x78, 0x12, 0x34, 0x56, 0x78}
	tests := []struct {
		name  string
		value any
		want  string
	}{
		{"double", 1.5, `1.5`},
		{"integral double", 3.0, `3`},
		{"tiny double", 1e-7, `1e-7`},
		{"huge double", 1e21, `1e+21`},
		{"negative zero", math.Copysign(0, -1), `-0`},
		{"NaN", math.NaN(), `"NaN"`},
		{"+Inf", math.Inf(1), `"Infinity"`},
		{"-Inf", math.Inf(-1), `"-Infinity"`},
		{"string", "héllo \"w\"\n\t\\ \x01 \u2028", `"héllo \"w\"\n\t\\ \u0001 \u2028"`},
		{"invalid UTF-8", "a\xffb", `"a\ufffdb"`},
		{"embedded document", bson.D{{Key: "b", Value: int32(1)}, {Key: "a", Value: bson.D{}}}, `{"b":1,"a":{}}`},
		{"array", bson.A{int32(1), "x", bson.A{}, nil}, `[1,"x",[],null]`},
		{"binary", primitive.Binary{Subtype: 0, Data: []byte("hi!")}, `"aGkh"`},
		{"binary UUID", primitive.Binary{Subtype: 4, Data: uuid}, `"EjRWeBI0VngSNFZ4EjRWeA=="`},
		{"binary old subtype 2", primitive.Binary{Subtype: 2, Data: []byte("xyz")}, `"eHl6"`},
		{"undefined", primitive.Undefined{}, `null`},
		{"ObjectId", oid, `"65a1b2c3d4e5f60718293a4b"`},
		{"true", true, `true`},
		{"false", false, `false`},
		{"DateTime", primitive.NewDateTimeFromTime(date), `"2024-05-01T12:30:45.123Z"`},
		{"DateTime before 1970", primitive.NewDateTimeFromTime(time.Date(1969, 7, 20, 20, 17, 0, 0, time.UTC)), `"1969-07-20T20:17:00.000Z"`},
		{"DateTime past year 9999", primitive.DateTime(253402300800000), `253402300800000`},
		{"null", nil, `null`},
		{"regular expression", primitive.Regex{Pattern: `^a"b`, Options: "i"}, `{"$regularExpression":{"pattern":"^a\"b","options":"i"}}`},
		{"DBPointer", primitive.DBPointer{DB: "db.coll", Pointer: oid}, `{"$dbPointer":{"$ref":"db.coll","$id":"65a1b2c3d4e5f60718293a4b"}}`},
		{"JavaScript", primitive.JavaScript("function(){return 1}"), `{"$code":"function(){return 1}"}`},
		{"symbol", primitive.Symbol("sym"), `"sym"`},
		{"JavaScript with scope", primitive.CodeWithScope{Code: "x", Scope: bson.D{{Key: "y", Value: int64(2)}}}, `{"$code":"x","$scope":{"y":2}}`},
		{"int32", int32(-7), `-7`},
		{"Timestamp", primitive.Timestamp{T: 1666193824, I: 3}, `{"$timestamp":{"t":1666193824,"i":3}}`},
		{"int64", int64(9007199254740993), `9007199254740993`},
		{"Decimal128", mustDecimal(t, "1.50"), `"1.50"`},
		{"Decimal128 NaN", mustDecimal(t, "NaN"), `"NaN"`},
		{"Decimal128 -Infinity", mustDecimal(t, "-Infinity"), `"-Infinity"`},
		{"MinKey", primitive.MinKey{}, `{"$minKey":1}`},
		{"MaxKey", primitive.MaxKey{}, `{"$maxKey":1}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			raw, err := bson.Marshal(bson.D{{Key: "v", Value: tc.value}})
			if err != nil {
				t.Fatal(err)
			}
			got, err := AppendJSON(nil, raw)
			if err != nil {
				t.Fatalf("AppendJSON: %v", err)
			}
			if want := `{"v":` + tc.want + `}`; string(got) != want {
				t.Errorf("AppendJSON = %s, want %s", got, want)
			}
			if !json.Valid(got) {
				t.Errorf("AppendJSON produced invalid JSON: %s", got)
			}
		})
	}
}

func TestAppendJSONAppends(t *testing.T) {
	raw, _ := bson.Marshal(bson.D{{Key: "a", Value: int32(1)}})
	got, err := AppendJSON([]byte("prefix:"), raw)
	if err != nil || string(got) != `prefix:{"a":1}` {
		t.Fatalf("AppendJSON = %q, %v", got, err)
	}
}

func TestAppendJSONMalformed(t *testing.T) {
	good, _ := bson.Marshal(bson.D{{Key: "a", Value: "xyz"}})
	deep := bson.D{{Key: "x", Value: int32(1)}}
	for range maxDepth + 1 {
		deep = bson.D{{Key: "d", Value: deep}}
	}
	tooDeep, err := bson.Marshal(deep)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		doc  []byte
	}{
		{"empty", nil},
		{"short", []byte{5, 0, 0}},
		{"length past the end", append([]byte{99, 0, 0, 0}, good[4:]...)},
		{"missing terminator", append(append([]byte{}, good[:len(good)-1]...), 1)},
		{"truncated string", func() []byte { b := append([]byte{}, good...); b[7] = 100; return b }()},
		{"unknown type", func() []byte { b := append([]byte{}, good...); b[4] = 0x30; return b }()},
		{"nested too deep", tooDeep},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := AppendJSON([]byte("keep"), tc.doc)
			if !errors.Is(err, ErrMalformedBSON) {
				t.Fatalf("AppendJSON error = %v, want ErrMalformedBSON", err)
			}
			if string(out) != "keep" {
				t.Errorf("dst changed on error: %q", out)
			}
		})
	}
}

// FuzzAppendJSON checks that any input either converts to valid JSON or
// fails with ErrMalformedBSON, never panics.
func FuzzAppendJSON(f *testing.F) {
	oid, _ := primitive.ObjectIDFromHex("65a1b2c3d4e5f60718293a4b")
	seed, _ := bson.Marshal(bson.D{
		{Key: "s", Value: "x"}, {Key: "d", Value: 1.5}, {Key: "o", Value: oid}, {Key: "a", Value: bson.A{int32(1), int64(2)}},
		{Key: "t", Value: primitive.Timestamp{T: 1, I: 2}}, {Key: "r", Value: primitive.Regex{Pattern: "a", Options: "i"}},
		{Key: "c", Value: primitive.CodeWithScope{Code: "x", Scope: bson.D{{Key: "y", Value: true}}}},
	})
	f.Add(seed)
	for _, src := range cannedEvents {
		var raw bson.Raw
		if bson.UnmarshalExtJSON([]byte(src), false, &raw) == nil {
			f.Add([]byte(raw))
		}
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		out, err := AppendJSON(nil, doc)
		if err != nil {
			if !errors.Is(err, ErrMalformedBSON) {
				t.Fatalf("error %v does not wrap ErrMalformedBSON", err)
			}
			return
		}
		if !json.Valid(out) {
			t.Fatalf("invalid JSON %q from %x", out, doc)
		}
	})
}

// FuzzConvert checks that any input converts, or fails with a *SkipError or
// *EndError, never panics, and that converted documents are JSON objects.
func FuzzConvert(f *testing.F) {
	for _, src := range cannedEvents {
		var raw bson.Raw
		if bson.UnmarshalExtJSON([]byte(src), false, &raw) == nil {
			f.Add([]byte(raw))
		}
	}
	mp := NewMapper(Mapping{})
	f.Fuzz(func(t *testing.T, doc []byte) {
		ev, err := mp.Convert(doc)
		if err != nil {
			if !errors.Is(err, ErrSkipped) && !errors.Is(err, ErrStreamEnded) {
				t.Fatalf("unexpected error type %T: %v", err, err)
			}
			return
		}
		for _, b := range [][]byte{ev.GetDocument(), ev.GetBefore()} {
			if len(b) > 0 && (!json.Valid(b) || b[0] != '{') {
				t.Fatalf("not a JSON object: %q", b)
			}
		}
		if ev.GetDocumentId() == "" || ev.GetCollection() == "" || ev.GetEventId() == "" {
			t.Fatalf("incomplete event %v", ev)
		}
	})
}
