package service

import (
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
)

// TestCheckJSONObjectAgreesWithEncodingJSON: checkJSONObject accepts
// exactly what encoding/json.Valid accepts and starts with '{', nesting at
// most the limit, on hand-written cases and on random mutations of them.
func TestCheckJSONObjectAgreesWithEncodingJSON(t *testing.T) {
	cases := []string{
		`{}`, ` { } `, `{"a":1}`, `{"a":-0.5e+10,"b":[true,false,null,"x\"\\\/\b\f\n\r\t\u00e9"],"c":{"d":[]}}`,
		`{"a":01}`, `{"a":1.}`, `{"a":.5}`, `{"a":1e}`, `{"a":-}`, `{"a":tru}`, `{"a":"\x"}`, `{"a":"\u12"}`, `{"a":"` + "\x01" + `"}`,
		`{"a":1,}`, `{,}`, `{"a"}`, `{"a":1 "b":2}`, `{"a":1}x`, `{"a":1}{}`, `[]`, `"x"`, `1`, ``, `{`, `{"a":[1,2}`, `{"a":[1,2]]}`,
		`{"a":1e5,"b":1E-5,"c":-0,"d":0.0}`, `{"a":"é ✓"}`, `{"a" : [ 1 , 2 ] }`, `{"":""}`, `{1:2}`, `{"a":NaN}`, `{"a":-01}`,
	}
	check := func(s string) {
		t.Helper()
		want := json.Valid([]byte(s)) && strings.HasPrefix(strings.TrimLeft(s, " \t\r\n"), "{")
		if got, deeper, _ := checkJSONObject([]byte(s), 64); got != want || deeper {
			t.Fatalf("checkJSONObject(%q) = %v (deeper %v), encoding/json says %v", s, got, deeper, want)
		}
	}
	for _, s := range cases {
		check(s)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []byte(`{}[]":,.-+eE0123456789 tfnrul\"x`)
	for range 200_000 {
		b := []byte(cases[rng.IntN(4)])
		for range 1 + rng.IntN(3) {
			switch i := rng.IntN(len(b) + 1); rng.IntN(3) {
			case 0:
				b = append(b[:i], append([]byte{alphabet[rng.IntN(len(alphabet))]}, b[i:]...)...)
			case 1:
				if i < len(b) {
					b = append(b[:i], b[i+1:]...)
				}
			default:
				if i < len(b) {
					b[i] = alphabet[rng.IntN(len(alphabet))]
				}
			}
		}
		check(string(b))
	}
}

func TestCheckJSONObjectDepth(t *testing.T) {
	doc := func(n int) []byte { return []byte(`{"a":` + strings.Repeat("[", n-1) + strings.Repeat("]", n-1) + `}`) }
	if ok, deeper, _ := checkJSONObject(doc(64), 64); !ok || deeper {
		t.Fatalf("64 levels: ok %v deeper %v", ok, deeper)
	}
	if ok, deeper, _ := checkJSONObject(doc(65), 64); ok || !deeper {
		t.Fatalf("65 levels: ok %v deeper %v", ok, deeper)
	}
	// Deeper than the limit but malformed after it: the depth is the reason.
	if ok, deeper, _ := checkJSONObject([]byte(`{"a":[[[[`), 3); ok || !deeper {
		t.Fatalf("deep and truncated: ok %v deeper %v", ok, deeper)
	}
}

func BenchmarkCheckJSONObject(b *testing.B) {
	doc := []byte(`{"s":"` + strings.Repeat("y", 900_000) + `","n":[1,2,3],"o":{"k":"v"}}`)
	b.Run("one-pass", func(b *testing.B) {
		b.SetBytes(int64(len(doc)))
		for b.Loop() {
			checkJSONObject(doc, 64)
		}
	})
	b.Run("encoding-json", func(b *testing.B) { // what it replaced, less the depth scan
		b.SetBytes(int64(len(doc)))
		for b.Loop() {
			_ = json.Valid(doc)
		}
	})
}
