package match

import (
	"math"
	"strings"

	"github.com/google/cel-go/checker"
	"github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/operators"
)

// noSizeEstimates gives the cost estimator no size hints, so that anything whose cost
// depends on the document's data is estimated as unbounded.
type noSizeEstimates struct{}

func (noSizeEstimates) EstimateSize(checker.AstNode) *checker.SizeEstimate { return nil }
func (noSizeEstimates) EstimateCallCost(string, string, *checker.AstNode, []checker.AstNode) *checker.CallEstimate {
	return nil
}

// celCmp is one conjunct "operand op literal" where operand is a doc field path or the
// id variable.
type celCmp struct {
	path []string // nil: the id variable
	op   cmpOp
	lit  any // JSON value: nil, bool, float64, string
}

type cmpOp uint8

const (
	cmpEq cmpOp = iota
	cmpNe
	cmpLt
	cmpLe
	cmpGt
	cmpGe
)

var cmpOps = map[string]cmpOp{operators.Equals: cmpEq, operators.NotEquals: cmpNe, operators.Less: cmpLt,
	operators.LessEquals: cmpLe, operators.Greater: cmpGt, operators.GreaterEquals: cmpGe}

// nativeConjunction recognises expressions that are conjunctions of comparisons between
// a doc field (or id) and a scalar literal. Such expressions are evaluated by
// evalNative with CEL's semantics: a missing field or a select through a non-map is an
// error, and a conjunction matches only when every conjunct is true.
func nativeConjunction(e ast.Expr, out []celCmp) ([]celCmp, bool) {
	if e.Kind() != ast.CallKind {
		return nil, false
	}
	call := e.AsCall()
	args := call.Args()
	fn := call.FunctionName()
	if fn == operators.LogicalAnd {
		for _, a := range args {
			var ok bool
			if out, ok = nativeConjunction(a, out); !ok {
				return nil, false
			}
		}
		return out, true
	}
	flipped := map[string]string{operators.Equals: operators.Equals, operators.NotEquals: operators.NotEquals,
		operators.Less: operators.Greater, operators.LessEquals: operators.GreaterEquals,
		operators.Greater: operators.Less, operators.GreaterEquals: operators.LessEquals}
	flip, ok := flipped[fn]
	if !ok || len(args) != 2 {
		return nil, false
	}
	for i, op := range []string{fn, flip} {
		operand, literal := args[i], args[1-i]
		lit, ok := celConstant(literal)
		if !ok {
			continue
		}
		if f, isNum := lit.(float64); isNum && math.Abs(f) >= 1<<53 {
			return nil, false // int literals beyond float64's exact range: leave to CEL
		}
		if operand.Kind() == ast.IdentKind && operand.AsIdent() == "id" {
			return append(out, celCmp{op: cmpOps[op], lit: lit}), true
		}
		if path, ok := docPath(operand); ok && len(path) > 0 {
			return append(out, celCmp{path: path, op: cmpOps[op], lit: lit}), true
		}
	}
	return nil, false
}

// evalNative evaluates a conjunction of comparisons exactly as CEL does. failed
// reports that CEL would have ended in an error (no such key, no such overload) rather
// than false; either way there is no match.
func evalNative(cmps []celCmp, img *image) (match, failed bool) {
	for i := range cmps {
		c := &cmps[i]
		var v any
		if c.path == nil {
			v = img.id
		} else {
			var ok bool
			if v, ok = lookup(img.doc, c.path); !ok {
				failed = true // no such key
				continue
			}
		}
		ok, err := celCompare(c.op, v, c.lit)
		if err {
			failed = true
		} else if !ok {
			// CEL's && is commutative over errors: false wins over an error.
			return false, false
		}
	}
	return !failed, failed
}

// celCompare applies a CEL comparison operator to JSON values. Equality is CEL's
// heterogeneous equality (values of different types are unequal, numbers compare by
// value); ordering exists for numbers, strings and booleans of the same type, anything
// else is a "no such overload" error, i.e. no match.
func celCompare(op cmpOp, v, lit any) (result, failed bool) {
	switch op {
	case cmpEq:
		return equal(v, lit), false
	case cmpNe:
		return !equal(v, lit), false
	}
	var c int
	switch x := v.(type) {
	case float64:
		y, ok := lit.(float64)
		if !ok {
			return false, true
		}
		c = cmpFloat(x, y)
	case string:
		y, ok := lit.(string)
		if !ok {
			return false, true
		}
		c = strings.Compare(x, y)
	case bool:
		y, ok := lit.(bool)
		if !ok {
			return false, true
		}
		c = compare(x, y)
	default:
		return false, true
	}
	switch op {
	case cmpLt:
		return c < 0, false
	case cmpLe:
		return c <= 0, false
	case cmpGt:
		return c > 0, false
	}
	return c >= 0, false
}
