package match

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
)

// documentSeeds are inputs where a JSON parser is easy to get wrong.
var documentSeeds = []string{
	// Valid objects.
	`{}`, ` {} `, "\t{\n\"a\"\r:\t1 }\n", `{"user":"u17","score":942.13,"region":"r3","n":12345}`,
	`{"a":{"b":[1,[2,{"c":null}],true,false,"x"]},"d":[]}`, `{"a":1,"a":2}`, `{"a":{"x":1},"a":[2]}`,
	`{"":""}`, `{"a.b":1,"é":"\u00e9","\u0000":0}`,
	// Escapes, surrogates and UTF-8.
	`{"s":"\"\\\/\b\f\n\r\t"}`, `{"s":"\u0041\u00e9\u20AC\uFFFF\ufffd"}`,
	`{"s":"\ud83d\ude00"}`, `{"s":"\uD83D\uDE00x"}`, `{"s":"\ud83d"}`, `{"s":"\ude00"}`,
	`{"s":"\ud83dx"}`, `{"s":"\ud83d\u0041"}`, `{"s":"\ude00\ud83d\ude00"}`, `{"s":"\ud83d\ud83d\ude00"}`,
	`{"s":"\ud83d\"}`, `{"s":"\ud83d\u"}`, `{"s":"\ud83d\uzzzz"}`, `{"s":"\u12"}`, `{"s":"\u12G4"}`,
	"{\"s\":\"\xff\"}", "{\"s\":\"a\xc3\"}", "{\"s\":\"\xed\xa0\x80\"}", "{\"s\":\"\xe2\x82\"}",
	"{\"s\":\"\xf0\x9f\x98\x80\"}", "{\"\xff\":1,\"\xfe\":2}", "{\"s\":\"\xc0\xaf\"}",
	`{"s":"\x"}`, `{"s":"\'"}`, "{\"s\":\"\t\"}", "{\"s\":\"\x00\"}", "{\"s\":\"\x7f\"}",
	`{"s":"abc`, `{"s":"abc\`, `{"s":"\u00e9\`,
	// Numbers.
	`{"n":0}`, `{"n":-0}`, `{"n":-0.0}`, `{"n":0e5}`, `{"n":1.5e-3}`, `{"n":1E+2}`, `{"n":1e400}`,
	`{"n":-1e400}`, `{"n":1e-400}`, `{"n":4.9e-324}`, `{"n":2.5e-324}`, `{"n":1.7976931348623157e308}`,
	`{"n":1.7976931348623159e308}`, `{"n":9007199254740993}`, `{"n":123456789012345}`,
	`{"n":1234567890123456}`, `{"n":0.1}`, `{"n":942.13}`, `{"n":1e22}`, `{"n":1e23}`, `{"n":123456789012345e22}`,
	`{"n":0.000000000000000000000001}`, `{"n":9761185058718763e5}`, `{"n":976118505871876.3e6}`, `{"n":1e-22}`, `{"n":8.589973e9}`, `{"n":1e0000000000000000000001}`,
	`{"n":01}`, `{"n":00}`, `{"n":-}`, `{"n":-a}`, `{"n":+1}`, `{"n":.5}`, `{"n":1.}`, `{"n":1.e5}`,
	`{"n":1e}`, `{"n":1e+}`, `{"n":0x10}`, `{"n":1_000}`, `{"n":NaN}`, `{"n":Infinity}`, `{"n":-01}`,
	// Literals, structure, trailing garbage.
	`{"t":true,"f":false,"z":null}`, `{"t":tru}`, `{"t":truex}`, `{"t":True}`, `{"z":nul}`,
	`{"a":1,}`, `{,}`, `{"a"}`, `{"a":}`, `{"a" 1}`, `{a:1}`, `{'a':1}`, `{"a":1 "b":2}`, `[1,]`, `[,1]`,
	`{"a":[1 2]}`, `{"a":[1,,2]}`, `{} {}`, `{}x`, `{} `, "{}\x00", "\ufeff{}", `{"a":1}}`, `{"a":[1]]}`,
	``, ` `, `{`, `}`, `{"a":`, `{"a":[`, `[`, `"x"`, `1`, `-0`, `null`, `true`, `[]`, `[1e400]`,
	`"\ud83d"`, `1e400`, `{"a":/* c */1}`,
}

// TestParseDocumentMatchesEncodingJSON checks the seeds and deep nesting against
// encoding/json.
func TestParseDocumentMatchesEncodingJSON(t *testing.T) {
	for _, in := range documentSeeds {
		checkAgainstEncodingJSON(t, []byte(in))
	}
	for _, depth := range []int{maxJSONDepth - 1, maxJSONDepth, maxJSONDepth + 1, 100_000} {
		for _, open := range []string{"[", `{"a":`} {
			body := `{"x":` + strings.Repeat(open, depth-1) + "1" + strings.Repeat(map[string]string{"[": "]", `{"a":`: "}"}[open], depth-1) + "}"
			checkAgainstEncodingJSON(t, []byte(body))
		}
	}
}

func TestParseDocument(t *testing.T) {
	for _, bad := range []string{``, `[]`, `"x"`, `1`, `null`, `{"a":}`, `{} {}`, `{"n":1e400}`, `[1e400]`} {
		_, err := ParseDocument([]byte(bad))
		if err == nil {
			t.Errorf("ParseDocument(%q) accepted", bad)
			continue
		}
		if !errors.Is(err, ErrNotObject) && !strings.Contains(err.Error(), "not valid JSON") {
			t.Errorf("ParseDocument(%q): %v, want ErrNotObject or a message saying not valid JSON", bad, err)
		}
	}
	if _, err := ParseDocument([]byte(`[1]`)); !errors.Is(err, ErrNotObject) {
		t.Errorf("array: %v, want ErrNotObject", err)
	}
	nested := func(depth int) []byte {
		return []byte(`{"a":` + strings.Repeat("[", depth-1) + strings.Repeat("]", depth-1) + "}")
	}
	if _, err := ParseDocument(nested(maxJSONDepth)); err != nil {
		t.Errorf("depth %d: %v", maxJSONDepth, err)
	}
	if _, err := ParseDocument(nested(maxJSONDepth + 1)); err == nil || !strings.Contains(err.Error(), "depth") {
		t.Errorf("depth %d: %v, want an error about the depth", maxJSONDepth+1, err)
	}
	d, err := ParseDocument([]byte(`{"n":-0,"s":"\ud83d\ude00\ud83d","a":1,"a":[2]}`))
	if err != nil {
		t.Fatal(err)
	}
	if n := d["n"].(float64); n != 0 || !math.Signbit(n) {
		t.Errorf("-0 decoded as %v", n)
	}
	if s := d["s"]; s != "😀\ufffd" {
		t.Errorf("surrogates decoded as %q", s)
	}
	if a := d["a"].([]any); len(a) != 1 || a[0] != 2.0 {
		t.Errorf("duplicate key: %v, want the last value", d["a"])
	}
}

// FuzzParseDocument checks that ParseDocument accepts exactly what encoding/json
// accepts and decodes it to the same values.
func FuzzParseDocument(f *testing.F) {
	for _, s := range documentSeeds {
		f.Add([]byte(s))
	}
	f.Add([]byte(`{"a":` + strings.Repeat("[", maxJSONDepth) + strings.Repeat("]", maxJSONDepth) + "}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		checkAgainstEncodingJSON(t, data)
	})
}

func checkAgainstEncodingJSON(t *testing.T, data []byte) {
	t.Helper()
	got, gotErr := ParseDocument(data)
	want, wantErr := parseDocumentStdlib(data)
	// Into a map that held another document: the same result and error.
	reused := map[string]any{"stale": 1.0, "a": "old"}
	into, intoErr := ParseDocumentInto(reused, data)
	if (intoErr == nil) != (gotErr == nil) || intoErr != nil && intoErr.Error() != gotErr.Error() {
		t.Fatalf("%q: ParseDocumentInto error %v, ParseDocument error %v", data, intoErr, gotErr)
	}
	if intoErr == nil && (!reflect.DeepEqual(into, got) || reflect.ValueOf(into).UnsafePointer() != reflect.ValueOf(reused).UnsafePointer()) {
		t.Fatalf("%q: ParseDocumentInto gave %#v (same map: %v), ParseDocument %#v", data, into,
			reflect.ValueOf(into).UnsafePointer() == reflect.ValueOf(reused).UnsafePointer(), got)
	}
	switch {
	case (gotErr == nil) != (wantErr == nil):
		t.Fatalf("%q: ParseDocument error %v, encoding/json error %v", data, gotErr, wantErr)
	case errors.Is(gotErr, ErrNotObject) != errors.Is(wantErr, ErrNotObject):
		t.Fatalf("%q: ParseDocument error %v, encoding/json error %v", data, gotErr, wantErr)
	case gotErr != nil:
		if !errors.Is(gotErr, ErrNotObject) && !strings.Contains(gotErr.Error(), "match: document is not valid JSON") {
			t.Fatalf("%q: error %q does not say the document is not valid JSON", data, gotErr)
		}
	default:
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%q: not DeepEqual\nParseDocument: %#v\nencoding/json: %#v", data, got, want)
		}
		if err := sameJSON(got, want); err != nil {
			t.Fatalf("%q: %v\nParseDocument: %#v\nencoding/json: %#v", data, err, got, want)
		}
	}
}

// sameJSON compares decoded JSON values more strictly than reflect.DeepEqual: -0 and
// 0 differ.
func sameJSON(a, b any) error {
	switch x := a.(type) {
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return fmt.Errorf("%#v != %#v", a, b)
		}
		for k, v := range x {
			w, ok := y[k]
			if !ok {
				return fmt.Errorf("key %q missing", k)
			}
			if err := sameJSON(v, w); err != nil {
				return fmt.Errorf("%q: %w", k, err)
			}
		}
		return nil
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return fmt.Errorf("%#v != %#v", a, b)
		}
		for i := range x {
			if err := sameJSON(x[i], y[i]); err != nil {
				return fmt.Errorf("[%d]: %w", i, err)
			}
		}
		return nil
	case float64:
		if y, ok := b.(float64); !ok || math.Float64bits(x) != math.Float64bits(y) {
			return fmt.Errorf("%v (%T) != %v", a, a, b)
		}
		return nil
	case string, bool, nil, int64:
		if a != b {
			return fmt.Errorf("%#v != %#v", a, b)
		}
		return nil
	}
	return fmt.Errorf("unexpected type %T", a)
}
