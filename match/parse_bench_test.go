package match

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"
)

// parseDocumentStdlib is ParseDocument's reference: encoding/json into any.
func parseDocumentStdlib(data []byte) (map[string]any, error) {
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		return nil, fmt.Errorf("match: document is not valid JSON: %w", err)
	}
	// Integers beyond 2^53 that a float64 rounds stay exact (exactInt).
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var exact any
	if dec.Decode(&exact) == nil {
		if n, err := normalize(exact); err == nil {
			v = keepExact(v, n)
		}
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%w (got %s)", ErrNotObject, classOf(v))
	}
	return m, nil
}

// keepExact returns v (encoding/json's decoding) with the int64 values of
// n (the same document, normalized from json.Numbers) where n has them.
func keepExact(v, n any) any {
	switch x := n.(type) {
	case int64:
		return x
	case []any:
		a, ok := v.([]any)
		if !ok || len(a) != len(x) {
			return v
		}
		for i := range a {
			a[i] = keepExact(a[i], x[i])
		}
		return a
	case map[string]any:
		m, ok := v.(map[string]any)
		if !ok {
			return v
		}
		for k := range m {
			m[k] = keepExact(m[k], x[k])
		}
		return m
	}
	return v
}

// BenchmarkParseDocument decodes a typical small event document, with ParseDocument
// and with encoding/json for comparison.
func BenchmarkParseDocument(b *testing.B) {
	docs := []struct{ name, doc string }{
		{"event", `{"user":"u17","score":942.13,"region":"r3","n":12345}`},
		{"nested", `{"id":"a1b2","title":"Caf\u00e9 \"menu\"","tags":["x","y","z"],"owner":{"team":"core","level":3,"active":true},"price":-0.5e-3,"note":null}`},
	}
	for _, d := range docs {
		for _, impl := range []struct {
			name  string
			parse func([]byte) (map[string]any, error)
		}{{"impl=ParseDocument", ParseDocument}, {"impl=encoding-json", parseDocumentStdlib}} {
			b.Run(d.name+"/"+impl.name, func(b *testing.B) {
				data := []byte(d.doc)
				b.SetBytes(int64(len(data)))
				b.ReportAllocs()
				for i := 0; i < b.N; i++ {
					if _, err := impl.parse(data); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
