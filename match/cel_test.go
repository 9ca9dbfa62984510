package match

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
)

func TestCELEvaluation(t *testing.T) {
	e := newTestEngine(t)
	d := mustDoc(t, `{"a": 1, "s": "open", "tags": ["x", "y"], "o": {"p": {"q": true}}, "nul": null}`)
	for _, tc := range []struct {
		expr string
		want bool
	}{
		{`doc.a == 1`, true}, // double vs int literal: cross-type numeric equality
		{`doc.a == 1.0`, true},
		{`doc.a > 0 && doc.s == "open"`, true},
		{`doc.a > 0 && doc.s == "closed"`, false},
		{`doc.s.startsWith("op")`, true},
		{`"y" in doc.tags`, true},
		{`doc.tags.exists(t, t == "z")`, false},
		{`doc.o.p.q == true`, true},
		{`has(doc.missing)`, false},
		{`!has(doc.missing) && doc.nul == null`, true},
		{`id == "doc-1"`, true},
		{`id == "other"`, false},
		{`doc.missing == 1`, false},              // evaluation error: no match
		{`doc.s > 1`, false},                     // type error at run time: no match
		{`doc.missing == 1 || doc.a == 1`, true}, // CEL's commutative ||
	} {
		t.Run(tc.expr, func(t *testing.T) {
			c, err := e.Compile(Criterion{CEL: tc.expr})
			if err != nil {
				t.Fatal(err)
			}
			if got := c.Match(d, "doc-1"); got != tc.want {
				t.Fatalf("%s = %v, want %v", tc.expr, got, tc.want)
			}
		})
	}
}

func TestCELValidation(t *testing.T) {
	e, err := NewEngine(Config{MaxCELBytes: 64})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ expr, want string }{
		{`doc.a`, "must evaluate to bool"},
		{`doc.a + 1`, "must evaluate to bool"},
		{`"x"`, "must evaluate to bool"},
		{`doc.a ==`, "Syntax error"},
		{`nope == 1`, "undeclared reference"},
		{`doc.a == 1 && ` + strings.Repeat("x", 64), "limit is 64"},
	} {
		_, err := e.Compile(Criterion{CEL: tc.expr})
		if !errors.Is(err, ErrInvalidCEL) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Compile(%q) = %v, want ErrInvalidCEL containing %q", tc.expr, err, tc.want)
		}
	}
	if _, err := e.Compile(Criterion{CEL: strings.Repeat("x", 65)}); !errors.Is(err, ErrTooLong) {
		t.Errorf("long expression: %v, want ErrTooLong", err)
	}
	if _, err := e.Compile(Criterion{CEL: strings.Repeat(" ", 60) + "true"}); err != nil {
		t.Errorf("64-byte expression refused: %v", err)
	}
	def := newTestEngine(t)
	long := "doc.a == '" + strings.Repeat("x", 4096) + "'"
	if _, err := def.Compile(Criterion{CEL: long}); err == nil || !strings.Contains(err.Error(), "limit is 4096") {
		t.Errorf("default limit: %v", err)
	}
}

// TestCELWorstCaseRefused: expressions whose cost on a document at the size
// limit can only be stopped are refused at compile time, with the estimate;
// those linear in the document pass.
func TestCELWorstCaseRefused(t *testing.T) {
	e := newTestEngine(t)
	for _, expr := range []string{
		`doc.l.all(i, (doc.s + doc.s + doc.s + doc.s + doc.s + doc.s + doc.s + doc.s).size() > 0)`,
		`doc.a.exists(x, doc.b.exists(y, x == y))`,
		`doc.a.map(x, x + x).size() > 0`,
	} {
		_, err := e.Compile(Criterion{CEL: expr})
		if !errors.Is(err, ErrTooExpensive) || !errors.Is(err, ErrInvalidCEL) ||
			!strings.Contains(err.Error(), "estimated cost on a document of 1048576 bytes is ") ||
			!strings.Contains(err.Error(), "over the limit of 100,000,000") {
			t.Errorf("Compile(%q) = %v, want ErrTooExpensive with the estimate", expr, err)
		}
	}
	for _, expr := range []string{
		`doc.name == "x"`, `doc.title.contains("abc")`, `doc.tags.exists(t, t == "x")`, `"x" in doc.tags`,
		`doc.items.filter(i, i.price > 10).size() > 2`, `doc.s.matches("^[a-z]+@[a-z]+\\.com$")`, `(doc.s + doc.s).size() > 0`,
	} {
		if _, err := e.Compile(Criterion{CEL: expr}); err != nil {
			t.Errorf("Compile(%q) = %v, want it accepted", expr, err)
		}
	}
	// The estimate scales with the document size limit: 256-byte documents
	// hold lists of at most 128 items.
	small, err := NewEngine(Config{MaxDocumentBytes: 256})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := small.Compile(Criterion{CEL: `doc.a.exists(x, doc.b.exists(y, x == y))`}); err != nil {
		t.Errorf("with 256-byte documents: %v", err)
	}
}

// noWorstCase turns off the compile-time refusal, to exercise the runtime
// limit with expressions it refuses.
const noWorstCase = math.MaxUint64

func TestCELCostLimitStopsPathologicalExpression(t *testing.T) {
	e, err := NewEngine(Config{CELCostLimit: 10_000, CELWorstCaseLimit: noWorstCase})
	if err != nil {
		t.Fatal(err)
	}
	d := map[string]any{"items": numbers(1000)}
	wantStoppedAtCostLimit(t, e, `doc.items.all(x, doc.items.all(y, x == y || true))`, d)
	cheap, _ := e.Compile(Criterion{CEL: `doc.items.size() == 1000`})
	if !cheap.Match(d, "") {
		t.Fatal("a cheap expression on the same document did not match")
	}
}

// TestCELCostChargesDocumentStringsBySize: operations on document fields
// (dyn to the checker) are charged by size, as on typed values. The
// expression below concatenates a 100 kB field eight times per item of a
// 200-item list: it used to cost 5,603 and run for half a second and more;
// it now stops within the default budget at its first item.
func TestCELCostChargesDocumentStringsBySize(t *testing.T) {
	e, err := NewEngine(Config{CELWorstCaseLimit: noWorstCase})
	if err != nil {
		t.Fatal(err)
	}
	d := map[string]any{"s": strings.Repeat("x", 100_000), "l": numbers(200)}
	wantStoppedAtCostLimit(t, e, `doc.l.all(i, (doc.s + doc.s + doc.s + doc.s + doc.s + doc.s + doc.s + doc.s).size() > 0)`, d)
	// The same operations on small strings stay well within the budget.
	small, _ := e.Compile(Criterion{CEL: `doc.t + doc.t == "abab" && doc.t.startsWith("a") && doc.t in ["ab"]`})
	if !small.Match(map[string]any{"t": "ab"}, "") {
		t.Fatal("a cheap string expression did not match")
	}
}

// numbers returns the list 0, 1, …, n-1 as a document holds it.
func numbers(n int) []any {
	l := make([]any, n)
	for i := range l {
		l[i] = float64(i)
	}
	return l
}

// wantStoppedAtCostLimit fails unless the CEL expression does not match
// doc, with one evaluation error counted: the cost limit stopped it.
func wantStoppedAtCostLimit(t *testing.T, e *Engine, expr string, doc map[string]any) {
	t.Helper()
	c, err := e.Compile(Criterion{CEL: expr})
	if err != nil {
		t.Fatal(err)
	}
	before := e.Stats().CELEvalErrors
	if c.Match(doc, "") {
		t.Fatal("an expression over the cost limit matched: it ran to its end instead of stopping at the limit")
	}
	if got := e.Stats().CELEvalErrors - before; got != 1 {
		t.Fatalf("eval errors counted: %d, want 1 (stopped by the cost limit)", got)
	}
}

func TestCELEvalErrorsAreCounted(t *testing.T) {
	e := newTestEngine(t)
	c, _ := e.Compile(Criterion{CEL: `doc.missing > 1`})
	for i := 0; i < 3; i++ {
		if c.Match(map[string]any{}, "") {
			t.Fatal("matched")
		}
	}
	if st := e.Stats(); st.CELEvalErrors != 3 || st.CELEvals != 3 {
		t.Fatalf("stats %+v, want 3 evals and 3 errors", st)
	}
}

func TestCELCache(t *testing.T) {
	e, err := NewEngine(Config{CELCacheSize: 2})
	if err != nil {
		t.Fatal(err)
	}
	c1, _ := e.Compile(Criterion{CEL: `doc.a == 1`})
	c2, _ := e.Compile(Criterion{CEL: `doc.a==1`})
	if c1.cel != c2.cel {
		t.Error("identical expressions do not share a program")
	}
	if st := e.Stats(); st.CELCacheMisses != 1 || st.CELCacheHits != 1 || st.CELCacheLen != 1 {
		t.Errorf("after two compilations: %+v", st)
	}
	for i := 0; i < 3; i++ {
		if _, err := e.Compile(Criterion{CEL: fmt.Sprintf("doc.b == %d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	if st := e.Stats(); st.CELCacheLen != 2 || st.CELCacheEvictions != 2 {
		t.Errorf("cache of 2 after 4 programs: %+v", st)
	}
	// A subscription keeps its program after eviction.
	if !c1.Match(map[string]any{"a": 1.0}, "") {
		t.Error("evicted program no longer evaluates")
	}
	if _, err := e.Compile(Criterion{CEL: `doc.a ==`}); err == nil {
		t.Error("invalid expression compiled")
	}
}

func TestCELEqualityConjuncts(t *testing.T) {
	e := newTestEngine(t)
	for _, tc := range []struct {
		expr string
		want []string // canonical paths of indexable conjuncts
	}{
		{`doc.status == "open"`, []string{`"status"`}},
		{`doc.status == "open" && doc.n > 3`, []string{`"status"`}},
		{`doc.n > 3 && (doc.a.b == 1 && "x" == doc.c)`, []string{`"a"."b"`, `"c"`}},
		{`doc["x.y"] == true`, []string{`"x.y"`}},
		{`doc.a == null`, []string{`"a"`}},
		{`doc.a == 1 || doc.b == 2`, nil},
		{`!(doc.a == 1)`, nil},
		{`doc.a == doc.b`, nil},
		{`doc.a == [1]`, nil},
		{`[1].exists(doc, doc == 1)`, nil},
		{`id == "x"`, nil},
	} {
		c, err := e.Compile(Criterion{CEL: tc.expr})
		if err != nil {
			t.Fatalf("%s: %v", tc.expr, err)
		}
		var got []string
		for _, q := range c.eq {
			got = append(got, canonicalPath(q.path))
		}
		if strings.Join(got, " ") != strings.Join(tc.want, " ") {
			t.Errorf("%s: indexable conjuncts %q, want %q", tc.expr, got, tc.want)
		}
	}
}
