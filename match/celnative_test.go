package match

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// celGen generates random expressions of the shapes evaluated natively, and documents
// to evaluate them on.
type celGen struct {
	r *rand.Rand
	// long adds long strings to documents, whose contains calls cost a lot.
	long bool
}

var (
	celGenOperands = []string{"doc.a", "doc.b", "doc.c", `doc["o"].x`, "doc.o.x", "doc.missing", "id"}
	celGenOps      = []string{"==", "!=", "<", "<=", ">", ">="}
	celGenLits     = []string{"1", "0", "-2", "1.5", "2u", `"x"`, `""`, `"é"`, `"xy"`, "true", "false", "null"}
	celGenFuncs    = []string{"startsWith", "endsWith", "contains"}
	celGenArgs     = []string{`""`, `"x"`, `"y"`, `"xy"`, `"é"`, `"\u00e9x"`, `"ab"`, `"abcdefghijkl"`}
	celGenStrings  = []string{`"x"`, `"xy"`, `"yx"`, `"axyb"`, `""`, `"é"`, `"éx"`, `"ab"`, `"abcdefghijklm"`}
	celGenValues   = []string{`0`, `1`, `-0`, `1.5`, `true`, `false`, `null`, `[1,2]`, `["x"]`, `{}`, `{"k":"x"}`}
	celGenIDs      = []string{"x", "", "d1", "xy", "é", "abcdefghijkl"}
)

// leaf is a comparison or a string function call, operands in either order.
func (g *celGen) leaf() string {
	r := g.r
	operand := celGenOperands[r.IntN(len(celGenOperands))]
	if r.IntN(2) == 0 {
		return fmt.Sprintf("%s.%s(%s)", operand, celGenFuncs[r.IntN(len(celGenFuncs))], celGenArgs[r.IntN(len(celGenArgs))])
	}
	lhs, rhs := operand, celGenLits[r.IntN(len(celGenLits))]
	if r.IntN(2) == 0 {
		lhs, rhs = rhs, lhs
	}
	return fmt.Sprintf("%s %s %s", lhs, celGenOps[r.IntN(len(celGenOps))], rhs)
}

// expr is a random tree of &&, || and ! over leaves.
func (g *celGen) expr(depth int) string {
	switch k := g.r.IntN(6); {
	case depth == 0 || k < 2:
		return g.leaf()
	case k == 2:
		return "!(" + g.expr(depth-1) + ")"
	default:
		n := 2 + g.r.IntN(2)
		parts := make([]string, n)
		for i := range parts {
			parts[i] = "(" + g.expr(depth-1) + ")"
		}
		return strings.Join(parts, []string{" && ", " || "}[k%2])
	}
}

func (g *celGen) value() string {
	r := g.r
	switch k := r.IntN(10); {
	case g.long && k == 0:
		// Long strings, ASCII or not, some containing the arguments at the end.
		s := strings.Repeat([]string{"a", "é", "ab"}[r.IntN(3)], r.IntN(1500))
		return fmt.Sprintf("%q", s+[]string{"", "x", "xy", "abcdefghijkl"}[r.IntN(4)])
	case g.long && k == 1:
		return "[" + strings.Repeat("1,", r.IntN(1500)) + "1]"
	case k < 5:
		return celGenStrings[r.IntN(len(celGenStrings))]
	}
	return celGenValues[r.IntN(len(celGenValues))]
}

func (g *celGen) image() image {
	doc, err := ParseDocument([]byte(g.docJSON()))
	if err != nil {
		panic(err)
	}
	return image{doc: doc, id: g.id()}
}

func (g *celGen) docJSON() string {
	r := g.r
	var fields []string
	for _, f := range []string{"a", "b", "c"} {
		if r.IntN(5) > 0 {
			fields = append(fields, fmt.Sprintf("%q: %s", f, g.value()))
		}
	}
	switch r.IntN(3) {
	case 0:
		fields = append(fields, fmt.Sprintf(`"o": {"x": %s}`, g.value()))
	case 1:
		fields = append(fields, fmt.Sprintf(`"o": %s`, g.value()))
	}
	return "{" + strings.Join(fields, ",") + "}"
}

func (g *celGen) id() string {
	if g.long && g.r.IntN(4) == 0 {
		return strings.Repeat("x", g.r.IntN(3000))
	}
	return celGenIDs[g.r.IntN(len(celGenIDs))]
}

// TestCELNativeAgreesWithInterpreter checks that the native evaluation returns exactly
// what cel-go's interpreter returns — match and error — for random expressions over
// random documents: comparisons and string functions (on missing fields, on values of
// every type), combined with &&, || and !.
func TestCELNativeAgreesWithInterpreter(t *testing.T) {
	e := newTestEngine(t)
	g := &celGen{r: rand.New(rand.NewPCG(7, 7))}
	native, errors := 0, 0
	n := sampled(t, 4000)
	for i := 0; i < n; i++ {
		expr := g.expr(1 + i%3)
		c, err := e.Compile(Criterion{CEL: expr})
		if err != nil {
			continue // e.g. 2u < "x" does not type-check
		}
		if !c.cel.isNative {
			t.Fatalf("%s: not evaluated natively", expr)
		}
		interpreted := interpretedProgram(t, e, expr)
		native++
		for k := 0; k < 20; k++ {
			img := g.image()
			gotOK, gotFail := c.cel.evalNative(&img)
			wantOK, wantFail := interpreted.evalInterpreted(&img)
			if gotOK != wantOK || gotFail != wantFail {
				t.Fatalf("%s on %v (id %q): native (match %v, error %v), CEL (match %v, error %v)",
					expr, img.doc, img.id, gotOK, gotFail, wantOK, wantFail)
			}
			if wantFail {
				errors++
			}
		}
	}
	t.Logf("%d expressions, %d failed evaluations", native, errors)
	if native < 3*n/4 || errors < native {
		t.Fatalf("only %d expressions compiled, %d evaluations failed", native, errors)
	}
}

// TestCELNativeCostLimit checks native evaluation against the interpreter under small
// cost limits, with long strings and lists as contains receivers: where the
// interpreter stops at its limit, the native evaluation must hand over to it.
func TestCELNativeCostLimit(t *testing.T) {
	g := &celGen{r: rand.New(rand.NewPCG(8, 8)), long: true}
	overBudget, withinBudget := 0, 0
	n := sampled(t, 1500)
	for _, limit := range []uint64{20, 60, 150, 1000} {
		e, err := NewEngine(Config{CELCostLimit: limit})
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < n; i++ {
			expr := g.expr(1 + i%3)
			c, err := e.Compile(Criterion{CEL: expr})
			if err != nil {
				continue
			}
			interpreted := interpretedProgram(t, e, expr)
			for k := 0; k < 20; k++ {
				img := g.image()
				var gotOK, gotFail bool
				if c.cel.isNative {
					run := nativeRun{img: &img, budget: c.cel.budget}
					switch v := c.cel.native.eval(&run); {
					case v == celOverBudget:
						overBudget++
					case c.cel.budget != noBudget && run.cost > 0:
						withinBudget++
					}
					gotOK, gotFail = c.cel.evalNative(&img)
				} else {
					gotOK, gotFail = c.cel.evalInterpreted(&img)
				}
				wantOK, wantFail := interpreted.evalInterpreted(&img)
				if gotOK != wantOK || gotFail != wantFail {
					t.Fatalf("limit %d: %s on %v (id %q): native (match %v, error %v), CEL (match %v, error %v)",
						limit, expr, img.doc, img.id, gotOK, gotFail, wantOK, wantFail)
				}
			}
		}
	}
	t.Logf("%d evaluations over budget, %d with contains within budget", overBudget, withinBudget)
	if floor := 100 * n / 1500; overBudget < floor || withinBudget < floor {
		t.Fatalf("%d evaluations over budget, %d with contains within budget", overBudget, withinBudget)
	}
}

func TestCELNativeShapes(t *testing.T) {
	e := newTestEngine(t)
	for expr, want := range map[string]bool{
		`doc.a == 1`:                                true,
		`1 < doc.a && id != "x"`:                    true,
		`doc.a.b >= "m" && doc["c"] < 2.5`:          true,
		`doc.a == 1 || doc.b == 2`:                  true,
		`!(doc.a == 1)`:                             true,
		`doc.s.startsWith("x")`:                     true,
		`doc.score > 942.5 && id.endsWith("3")`:     true,
		`!doc["t"].contains("x") || !(doc.n < 2)`:   true,
		`has(doc.a)`:                                false,
		`doc.a == doc.b`:                            false,
		`doc.a == 9007199254740993`:                 false,
		`doc.s.startsWith(doc.t)`:                   false,
		`"abc".contains(doc.s)`:                     false,
		`doc.s.matches("x")`:                        false,
		`size(doc.s) > 1`:                           false,
		`doc.a == 1 && true`:                        false,
		`doc.s.startsWith("x") ? doc.a == 1 : true`: false,
		`doc.l.exists(id, id.startsWith("x"))`:      false,
	} {
		c, err := e.Compile(Criterion{CEL: expr})
		if err != nil {
			t.Fatalf("%s: %v", expr, err)
		}
		if c.cel.isNative != want {
			t.Errorf("%s: native = %v, want %v", expr, c.cel.isNative, want)
		}
	}
}

// interpretedProgram compiles expr for cel-go's interpreter, bypassing the native path.
func interpretedProgram(t *testing.T, e *Engine, expr string) *celProgram {
	t.Helper()
	checked, iss := e.env.Compile(expr)
	if iss.Err() != nil {
		t.Fatal(iss.Err())
	}
	prg, err := e.program(checked, e.costTracked(checked))
	if err != nil {
		t.Fatal(err)
	}
	return &celProgram{eng: e, prg: prg}
}

// FuzzCELNative compares the native evaluation of arbitrary expressions with the
// interpreter's, on arbitrary documents and ids, under a small cost limit so that long
// contains receivers hand over to the interpreter.
func FuzzCELNative(f *testing.F) {
	f.Add(`doc.score > 942.5 && id.endsWith("3")`, `{"score": 943}`, "x3")
	f.Add(`!doc.s.contains("ab") || doc.o.x.startsWith("é")`, `{"s": "xaby", "o": {"x": "éa"}}`, "")
	f.Add(`doc.s.contains("abcdefghijk") && !(doc.n <= 2)`, `{"s": ["a", "b"], "n": "x"}`, "id")
	f.Add(`doc["a"].endsWith("") || id.startsWith("\u00e9") && doc.b != null`, `{"a": null, "b": 1}`, "é")
	g := &celGen{r: rand.New(rand.NewPCG(9, 9)), long: true}
	for range 40 {
		f.Add(g.expr(2), g.docJSON(), g.id())
	}
	e, err := NewEngine(Config{CELCostLimit: 200})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, expr, docJSON, id string) {
		c, err := e.Compile(Criterion{CEL: expr})
		if err != nil || !c.cel.isNative {
			return
		}
		doc, err := ParseDocument([]byte(docJSON))
		if err != nil {
			return
		}
		img := image{doc: doc, id: id}
		gotOK, gotFail := c.cel.evalNative(&img)
		wantOK, wantFail := interpretedProgram(t, e, expr).evalInterpreted(&img)
		if gotOK != wantOK || gotFail != wantFail {
			t.Fatalf("%s on %v (id %q): native (match %v, error %v), CEL (match %v, error %v)",
				expr, doc, id, gotOK, gotFail, wantOK, wantFail)
		}
	})
}
