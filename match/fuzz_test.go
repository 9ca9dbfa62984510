package match

import (
	"encoding/json"
	"testing"
)

// FuzzCompileFilters feeds arbitrary filter lists and documents through compilation,
// evaluation and the index: nothing may panic, and the index must agree with direct
// evaluation.
func FuzzCompileFilters(f *testing.F) {
	f.Add(`[["a", "==", 1]]`, `{"a": 1}`)
	f.Add(`[{"field": "a.b", "op": "in", "value": [1, "x", null]}]`, `{"a": {"b": "x"}}`)
	f.Add(`[["tags", "array-contains-any", [[1], {"k": null}]]]`, `{"tags": [[1]]}`)
	f.Add(`[["`+"`a.b`"+`", "not-in", [true]], ["c", ">=", "é"]]`, `{"a.b": false, "c": "z"}`)
	f.Add(`[["x", "<", {"a": [1, 2]}]]`, `{"x": {"a": [1]}}`)
	e, err := NewEngine(Config{})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, filters, docJSON string) {
		var fs []Filter
		if json.Unmarshal([]byte(filters), &fs) != nil {
			return
		}
		c, err := e.Compile(Criterion{Filters: fs})
		if err != nil {
			return
		}
		doc, err := ParseDocument([]byte(docJSON))
		if err != nil {
			return
		}
		direct := c.Match(doc, "id")
		ix := NewIndex(e)
		if err := ix.Add(Subscription{Gateway: "g", ID: "s", Tenant: "t", Collection: "c", Criterion: c}); err != nil {
			t.Fatal(err)
		}
		got := ix.Match(&Event{Tenant: "t", Collection: "c", ID: "id", Op: Create, Doc: doc}, nil)
		if (len(got) == 1) != direct {
			t.Fatalf("index says %v, direct evaluation says %v", got, direct)
		}
	})
}

// FuzzCompileCEL compiles and evaluates arbitrary expressions: errors are fine, panics
// and matches of expressions that do not type-check to bool are not.
func FuzzCompileCEL(f *testing.F) {
	f.Add(`doc.a == 1 && doc.b.startsWith("x")`, `{"a": 1, "b": "xy"}`)
	f.Add(`doc.items.all(x, doc.items.exists(y, y == x))`, `{"items": [1, 2, 3]}`)
	f.Add(`id == "k" || has(doc.z)`, `{"z": null}`)
	f.Add(`doc["a.b"] == null`, `{"a.b": null}`)
	f.Add(`') || true || ('`, `{}`)
	e, err := NewEngine(Config{CELCostLimit: 10_000})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, expr, docJSON string) {
		c, err := e.Compile(Criterion{CEL: expr})
		if err != nil {
			return
		}
		doc, err := ParseDocument([]byte(docJSON))
		if err != nil {
			doc = map[string]any{}
		}
		direct := c.Match(doc, "k")
		ix := NewIndex(e)
		ix.Add(Subscription{Gateway: "g", ID: "s", Tenant: "t", Collection: "c", Criterion: c})
		got := ix.Match(&Event{Tenant: "t", Collection: "c", ID: "k", Op: Update, Doc: doc}, nil)
		if (len(got) == 1) != direct {
			t.Fatalf("index says %v, direct evaluation says %v", got, direct)
		}
	})
}
