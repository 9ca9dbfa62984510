package match

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// TestCELNativeAgreesWithInterpreter checks that the native evaluation of comparison
// conjunctions returns exactly what cel-go's interpreter returns — match and error —
// for random expressions over random documents.
func TestCELNativeAgreesWithInterpreter(t *testing.T) {
	e := newTestEngine(t)
	r := rand.New(rand.NewPCG(7, 7))
	operands := []string{"doc.a", "doc.b", "doc.c", `doc["o"].x`, "doc.o.x", "doc.missing", "id"}
	ops := []string{"==", "!=", "<", "<=", ">", ">="}
	lits := []string{"1", "0", "-2", "1.5", "2u", `"x"`, `""`, `"é"`, "true", "false", "null"}
	native := 0
	for i := 0; i < 3000; i++ {
		n := 1 + r.IntN(3)
		parts := make([]string, n)
		for j := range parts {
			lhs, rhs := operands[r.IntN(len(operands))], lits[r.IntN(len(lits))]
			if r.IntN(2) == 0 {
				lhs, rhs = rhs, lhs
			}
			parts[j] = fmt.Sprintf("%s %s %s", lhs, ops[r.IntN(len(ops))], rhs)
		}
		expr := strings.Join(parts, " && ")
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
			img := image{doc: randDoc(r), id: []string{"x", "", "d1"}[r.IntN(3)]}
			gotOK, gotFail := evalNative(c.cel.native, &img)
			wantOK, wantFail := interpreted.evalInterpreted(&img)
			if gotOK != wantOK || gotFail != wantFail {
				t.Fatalf("%s on %v (id %q): native (match %v, error %v), CEL (match %v, error %v)",
					expr, img.doc, img.id, gotOK, gotFail, wantOK, wantFail)
			}
		}
	}
	if native < 1000 {
		t.Fatalf("only %d expressions compiled", native)
	}
}

func TestCELNativeShapes(t *testing.T) {
	e := newTestEngine(t)
	for expr, want := range map[string]bool{
		`doc.a == 1`:                       true,
		`1 < doc.a && id != "x"`:           true,
		`doc.a.b >= "m" && doc["c"] < 2.5`: true,
		`doc.a == 1 || doc.b == 2`:         false,
		`has(doc.a)`:                       false,
		`doc.a == doc.b`:                   false,
		`doc.s.startsWith("x")`:            false,
		`doc.a == 9007199254740993`:        false,
		`!(doc.a == 1)`:                    false,
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
	prg, err := e.program(checked)
	if err != nil {
		t.Fatal(err)
	}
	return &celProgram{eng: e, prg: prg}
}
