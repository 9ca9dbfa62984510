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

// TestIntegersBeyond2To53: documents' integers beyond 2^53 keep their
// exact value, and every path (equality index, scan, flat rows, CEL) tells
// 2^53+1 from 2^53, which a float64 cannot.
func TestIntegersBeyond2To53(t *testing.T) {
	eng, err := NewEngine(Config{})
	if err != nil {
		t.Fatal(err)
	}
	docs := map[string]string{
		"lo":  `{"n":9007199254740992}`, // 2^53: exact as a double
		"hi":  `{"n":9007199254740993}`, // 2^53+1: a double rounds it down
		"max": `{"n":9223372036854775807}`,
		"neg": `{"n":-9007199254740993}`,
		"f":   `{"n":9007199254740993.5}`, // not an integer literal: a double
	}
	cases := []struct {
		c    Criterion
		want string
	}{
		{Criterion{Filters: []Filter{{Field: "n", Op: "==", Value: int64(9007199254740993)}}}, "hi"},
		{Criterion{Filters: []Filter{{Field: "n", Op: "==", Value: float64(9007199254740992)}}}, "lo"}, // f is 9007199254740993.5, 2^53+2 as a double
		{Criterion{Filters: []Filter{{Field: "n", Op: ">", Value: int64(9007199254740992)}}}, "f,hi,max"},
		{Criterion{Filters: []Filter{{Field: "n", Op: "<", Value: 0}}}, "neg"},
		{Criterion{Filters: []Filter{{Field: "n", Op: "in", Value: []any{int64(9223372036854775807), 5}}}}, "max"},
		// CEL compares an int with a double as doubles: 2^53 equals 2^53+1.
		{Criterion{CEL: `doc.n == 9007199254740993`}, "hi,lo"},
		{Criterion{CEL: `doc.n > 9007199254740992`}, "f,hi,max"},
	}
	for _, tc := range cases {
		c, err := eng.Compile(tc.c)
		if err != nil {
			t.Fatalf("%+v: %v", tc.c, err)
		}
		var got []string
		for _, id := range []string{"f", "hi", "lo", "max", "neg"} {
			doc, err := ParseDocument([]byte(docs[id]))
			if err != nil {
				t.Fatal(err)
			}
			if c.Match(doc, id) {
				got = append(got, id)
			}
		}
		if strings.Join(got, ",") != tc.want {
			t.Errorf("%+v: Match selects %v, want %s", tc.c, got, tc.want)
		}
		// The index (equality postings, flat rows) agrees.
		ix := NewIndex(eng)
		if err := ix.Add(Subscription{Gateway: "g", ID: "s", Tenant: "t", Collection: "c", Criterion: c}); err != nil {
			t.Fatal(err)
		}
		got = got[:0]
		for _, id := range []string{"f", "hi", "lo", "max", "neg"} {
			doc, _ := ParseDocument([]byte(docs[id]))
			if len(ix.Match(&Event{Tenant: "t", Collection: "c", ID: id, Op: Create, Doc: doc}, nil)) > 0 {
				got = append(got, id)
			}
		}
		if strings.Join(got, ",") != tc.want {
			t.Errorf("%+v: the index selects %v, want %s", tc.c, got, tc.want)
		}
	}
}
