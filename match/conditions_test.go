package match

import (
	"fmt"
	"strings"
	"testing"
)

// TestConditionsAreNecessary: every document a criterion selects satisfies
// each of its conditions (each evaluated as the filter it states), and the
// conditions state what they should.
func TestConditionsAreNecessary(t *testing.T) {
	eng, err := NewEngine(Config{})
	if err != nil {
		t.Fatal(err)
	}
	docs := []string{
		`{"status":"hot","n":5,"tags":["a","b"],"o":{"x":1},"flag":true}`,
		`{"status":"cold","n":50,"tags":["c"],"o":{"x":2},"flag":false}`,
		`{"status":"hot","n":500,"tags":[],"o":{"x":"1"},"z":null}`,
		`{"n":"5","tags":"a","o":[1]}`,
		`{"status":["hot"],"n":-1.5}`,
		`{}`,
	}
	criteria := []struct {
		c    Criterion
		want string // the conditions, rendered
	}{
		{Criterion{Filters: []Filter{{Field: "status", Op: "==", Value: "hot"}}}, `status == hot`},
		{Criterion{Filters: []Filter{{Field: "status", Op: "==", Value: "hot"}, {Field: "n", Op: ">", Value: 10}}}, `status == hot; n > 10`},
		{Criterion{Filters: []Filter{{Field: "n", Op: "<=", Value: 50}, {Field: "status", Op: "!=", Value: "cold"}}}, `n <= 50`},
		{Criterion{Filters: []Filter{{Field: "o.x", Op: "in", Value: []any{1, "1"}}}}, `o.x in [1 1]`},
		{Criterion{Filters: []Filter{{Field: "tags", Op: "array-contains", Value: "a"}}}, `tags array-contains a`},
		{Criterion{Filters: []Filter{{Field: "tags", Op: "array-contains-any", Value: []any{"a", "c"}}}}, `tags array-contains-any [a c]`},
		{Criterion{Filters: []Filter{{Field: "status", Op: "not-in", Value: []any{"cold"}}}}, ``},
		{Criterion{Filters: []Filter{{Field: "z", Op: "==", Value: nil}}}, `z == <nil>`},
		{Criterion{CEL: `doc.status == "hot" && doc.n > 10.0`}, `status in [hot]`},
		{Criterion{CEL: `doc.flag == true || doc.n < 0.0`}, ``},
		{Criterion{CEL: `doc.status == "hot" || doc.status == "cold"`}, ``},
		{Criterion{CEL: `doc["o"].x == 1.0 && doc.flag`}, `o.x in [1]`},
		{Criterion{DocumentID: "d1"}, ``},
		{Criterion{}, ``},
	}
	for _, tc := range criteria {
		c, err := eng.Compile(tc.c)
		if err != nil {
			t.Fatalf("%+v: %v", tc.c, err)
		}
		conds := c.Conditions()
		var got []string
		for _, cd := range conds {
			got = append(got, fmt.Sprintf("%s %s %v", strings.Join(cd.Path, "."), cd.Op, cd.Value))
		}
		if strings.Join(got, "; ") != tc.want {
			t.Errorf("%+v: conditions %q, want %q", tc.c, strings.Join(got, "; "), tc.want)
		}
		for _, d := range docs {
			doc, err := ParseDocument([]byte(d))
			if err != nil {
				t.Fatal(err)
			}
			if !c.Match(doc, "d1") {
				continue
			}
			for _, cd := range conds {
				f, err := eng.Compile(Criterion{Filters: []Filter{{Field: strings.Join(cd.Path, "."), Op: cd.Op, Value: cd.Value}}})
				if err != nil {
					t.Fatalf("condition %+v does not compile: %v", cd, err)
				}
				if !f.Match(doc, "d1") {
					t.Errorf("%+v selects %s, which fails its condition %+v", tc.c, d, cd)
				}
			}
		}
	}
	if c, _ := eng.Compile(Criterion{DocumentID: "d1"}); c.DocumentID() != "d1" {
		t.Errorf("DocumentID() = %q", c.DocumentID())
	}
}
