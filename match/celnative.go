package match

import (
	"math"
	"strings"
	"unicode/utf8"

	"github.com/google/cel-go/checker"
	"github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/operators"
	"github.com/google/cel-go/common/overloads"
)

// Native CEL evaluation.
//
// Boolean combinations (&&, ||, !) of simple predicates on a doc field or the id
// variable are evaluated without cel-go's interpreter, with exactly CEL's semantics:
// the same result and the same error for every document. The predicates are
// comparisons with a scalar literal (doc.a < 3, "x" == id) and the string functions
// startsWith, endsWith and contains with a string literal argument
// (id.endsWith("3"), doc.title.contains("x")). Everything else is left to the
// interpreter.
//
// Errors follow CEL: a missing field, a selection through a non-map, an ordering
// between different types or a string function on a non-string is an error; && and ||
// are commutative over errors (false && error is false, true || error is true) and !
// of an error is an error. An expression ending in an error does not match and counts
// as an evaluation error.
//
// The interpreter can also stop an evaluation that goes over the cost limit, which is
// an error too. Only contains has a cost that depends on the document (the receiver's
// length); see celProgram.budget for how native evaluation stays exact.

// noSizeEstimates gives the cost estimator no size hints, so that anything whose cost
// depends on the document's data is estimated as unbounded.
type noSizeEstimates struct{}

func (noSizeEstimates) EstimateSize(checker.AstNode) *checker.SizeEstimate { return nil }
func (noSizeEstimates) EstimateCallCost(string, string, *checker.AstNode, []checker.AstNode) *checker.CallEstimate {
	return nil
}

// celNode is a natively evaluated boolean expression: a leaf predicate, or &&, || or !
// over other nodes.
type celNode struct {
	kind  nodeKind
	pred  celPred   // nodeLeaf
	terms []celNode // nodeAnd, nodeOr: two or more, in source order; nodeNot: one
}

type nodeKind uint8

const (
	nodeLeaf nodeKind = iota
	nodeAnd
	nodeOr
	nodeNot
)

// celPred is a leaf: "operand op lit" when fn is fnCompare, "operand.fn(arg)"
// otherwise, where operand is a doc field path or the id variable.
type celPred struct {
	path []string // nil: the id variable
	fn   strFunc
	op   cmpOp  // fnCompare
	lit  any    // fnCompare: JSON value: nil, bool, float64, string
	arg  string // string functions
	// argCost is CEL's cost factor of contains' argument, ceil(size × 0.1), which
	// multiplies that of the receiver.
	argCost uint64
}

type strFunc uint8

const (
	fnCompare strFunc = iota
	fnStartsWith
	fnEndsWith
	fnContains
)

var strFuncs = map[string]strFunc{overloads.StartsWith: fnStartsWith, overloads.EndsWith: fnEndsWith,
	overloads.Contains: fnContains}

type cmpOp uint8

const (
	cmpEq cmpOp = iota
	cmpNe
	cmpLt
	cmpLe
	cmpGt
	cmpGe
)

var (
	cmpOps = map[string]cmpOp{operators.Equals: cmpEq, operators.NotEquals: cmpNe, operators.Less: cmpLt,
		operators.LessEquals: cmpLe, operators.Greater: cmpGt, operators.GreaterEquals: cmpGe}
	// flippedOps maps a comparison "a op b" to "b op' a".
	flippedOps = map[string]string{operators.Equals: operators.Equals, operators.NotEquals: operators.NotEquals,
		operators.Less: operators.Greater, operators.LessEquals: operators.GreaterEquals,
		operators.Greater: operators.Less, operators.GreaterEquals: operators.LessEquals}
)

// nativeExpr recognises the expressions evalNative computes: &&, || and ! over
// comparisons between a doc field (or id) and a scalar literal, and startsWith,
// endsWith and contains calls on a doc field (or id) with a string literal.
func nativeExpr(e ast.Expr) (celNode, bool) {
	if e.Kind() != ast.CallKind {
		return celNode{}, false
	}
	call := e.AsCall()
	args := call.Args()
	switch fn := call.FunctionName(); fn {
	case operators.LogicalAnd, operators.LogicalOr:
		n := celNode{kind: nodeAnd}
		if fn == operators.LogicalOr {
			n.kind = nodeOr
		}
		if len(args) < 2 {
			return celNode{}, false
		}
		for _, a := range args {
			t, ok := nativeExpr(a)
			if !ok {
				return celNode{}, false
			}
			// a && (b && c) is a && b && c, evaluated in the same order.
			if t.kind == n.kind {
				n.terms = append(n.terms, t.terms...)
			} else {
				n.terms = append(n.terms, t)
			}
		}
		return n, true
	case operators.LogicalNot:
		if len(args) != 1 {
			return celNode{}, false
		}
		t, ok := nativeExpr(args[0])
		return celNode{kind: nodeNot, terms: []celNode{t}}, ok
	}
	p, ok := nativePred(call)
	return celNode{kind: nodeLeaf, pred: p}, ok
}

// nativePred recognises a leaf predicate.
func nativePred(call ast.CallExpr) (celPred, bool) {
	args := call.Args()
	fn := call.FunctionName()
	if sf, ok := strFuncs[fn]; ok {
		if !call.IsMemberFunction() || len(args) != 1 {
			return celPred{}, false
		}
		lit, ok := celConstant(args[0])
		arg, isStr := lit.(string)
		if !ok || !isStr {
			return celPred{}, false
		}
		path, ok := celOperand(call.Target())
		if !ok {
			return celPred{}, false
		}
		return celPred{path: path, fn: sf, arg: arg, argCost: costFactor(utf8.RuneCountInString(arg))}, true
	}
	flip, ok := flippedOps[fn]
	if !ok || len(args) != 2 {
		return celPred{}, false
	}
	for i, op := range []string{fn, flip} {
		operand, literal := args[i], args[1-i]
		lit, ok := celConstant(literal)
		if !ok {
			continue
		}
		if f, isNum := lit.(float64); isNum && math.Abs(f) >= 1<<53 {
			return celPred{}, false // int literals beyond float64's exact range: leave to CEL
		}
		if _, isInt := lit.(int64); isInt {
			return celPred{}, false // likewise
		}
		if path, ok := celOperand(operand); ok {
			return celPred{path: path, op: cmpOps[op], lit: lit}, true
		}
	}
	return celPred{}, false
}

// celOperand returns the path of a doc field selection, or nil for the id variable.
func celOperand(e ast.Expr) ([]string, bool) {
	if e.Kind() == ast.IdentKind && e.AsIdent() == "id" {
		return nil, true
	}
	if path, ok := docPath(e); ok && len(path) > 0 {
		return path, true
	}
	return nil, false
}

// costFactor is CEL's runtime cost of traversing n elements, ceil(n × 0.1), computed
// as cel-go computes it (in floating point, so that 30 costs 4).
func costFactor(n int) uint64 {
	return uint64(math.Ceil(float64(n) * 0.1))
}

// comparisons returns the conjuncts of n when it is a comparison or a conjunction of
// comparisons, the shape flat rows hold.
func (n *celNode) comparisons() ([]celPred, bool) {
	switch n.kind {
	case nodeLeaf:
		return []celPred{n.pred}, n.pred.fn == fnCompare
	case nodeAnd:
		out := make([]celPred, 0, len(n.terms))
		for i := range n.terms {
			t := &n.terms[i]
			if t.kind != nodeLeaf || t.pred.fn != fnCompare {
				return nil, false
			}
			out = append(out, t.pred)
		}
		return out, true
	}
	return nil, false
}

// has reports whether any leaf of n calls fn.
func (n *celNode) has(fn strFunc) bool {
	if n.kind == nodeLeaf {
		return n.pred.fn == fn
	}
	for i := range n.terms {
		if n.terms[i].has(fn) {
			return true
		}
	}
	return false
}

// fixedCost is an upper bound of the interpreter's runtime cost of evaluating every
// node of n, not counting the receiver-dependent part of contains calls: an identifier
// and each selection cost 1, a call 1 or, for strings, ceil(size × 0.1) of its
// literal, &&, || and literals nothing. The bound is loose (doubled) on purpose.
func (n *celNode) fixedCost() uint64 {
	if n.kind == nodeLeaf {
		p := &n.pred
		s, _ := p.lit.(string)
		if p.fn != fnCompare {
			s = p.arg
		}
		return 2 * (1 + uint64(len(p.path)) + 1 + uint64(len(s)))
	}
	c := uint64(2) // !
	for i := range n.terms {
		c += n.terms[i].fixedCost()
	}
	return c
}

// celVal is the outcome of a native evaluation.
type celVal uint8

const (
	celFalse celVal = iota
	celTrue
	celError
	// celOverBudget: the contains calls evaluated so far may cost more than the
	// budget; the interpreter, which would have stopped at its cost limit, must decide.
	celOverBudget
)

// nativeRun is the state of one native evaluation.
type nativeRun struct {
	img    *image
	cost   uint64 // of the contains calls evaluated so far, an upper bound
	budget uint64
}

func (n *celNode) eval(run *nativeRun) celVal {
	switch n.kind {
	case nodeLeaf:
		return n.pred.eval(run)
	case nodeNot:
		switch v := n.terms[0].eval(run); v {
		case celTrue:
			return celFalse
		case celFalse:
			return celTrue
		default:
			return v
		}
	}
	// && and ||, with CEL's commutative error handling: the term value that decides
	// (false for &&, true for ||) wins over errors in any position; otherwise an error
	// wins. Evaluation stops at the deciding value, as in cel-go.
	decide, other := celFalse, celTrue
	if n.kind == nodeOr {
		decide, other = celTrue, celFalse
	}
	failed := false
	for i := range n.terms {
		t := &n.terms[i]
		var v celVal
		if t.kind == nodeLeaf {
			v = t.pred.eval(run) // saves a call per leaf
		} else {
			v = t.eval(run)
		}
		switch v {
		case decide, celOverBudget:
			return v
		case celError:
			failed = true
		}
	}
	if failed {
		return celError
	}
	return other
}

func (p *celPred) eval(run *nativeRun) celVal {
	if p.fn == fnCompare {
		var v any
		if p.path == nil {
			v = run.img.id
		} else {
			var ok bool
			if v, ok = lookup(run.img.doc, p.path); !ok {
				return celError // no such key
			}
		}
		return celCompare(p.op, v, p.lit)
	}
	var v any
	s, isStr, found := run.img.id, true, true
	if p.path != nil {
		if v, found = lookup(run.img.doc, p.path); found {
			s, isStr = v.(string)
		}
	}
	if p.fn == fnContains && p.argCost > 0 && run.budget != noBudget {
		// cel-go charges ceil(size × 0.1) × argCost whatever the receiver: a string's
		// size is its rune count (at most its byte length), a list's or map's its
		// length, anything else's (an error too) 1.
		size := 1
		switch x := v.(type) {
		case []any:
			size = len(x)
		case map[string]any:
			size = len(x)
		}
		if found && isStr {
			size = len(s)
		}
		if run.cost += costFactor(size) * p.argCost; run.cost > run.budget {
			return celOverBudget
		}
	}
	if !found || !isStr {
		return celError // no such key, or no such overload
	}
	switch p.fn {
	case fnStartsWith:
		return celBool(strings.HasPrefix(s, p.arg))
	case fnEndsWith:
		return celBool(strings.HasSuffix(s, p.arg))
	}
	return celBool(strings.Contains(s, p.arg))
}

// noBudget is the budget of programs the interpreter runs without a cost limit.
const noBudget = math.MaxUint64

// celCompare applies a CEL comparison operator to JSON values. Equality is CEL's
// heterogeneous equality (values of different types are unequal, numbers compare by
// value); ordering exists for numbers, strings and booleans of the same type, anything
// else is a "no such overload" error.
func celCompare(op cmpOp, v, lit any) celVal {
	switch op {
	case cmpEq:
		return celBool(equal(v, lit))
	case cmpNe:
		return celBool(!equal(v, lit))
	}
	var c int
	switch x := v.(type) {
	case float64, int64:
		var ok bool
		if c, ok = cmpNumbers(x, lit); !ok {
			return celError
		}
	case string:
		y, ok := lit.(string)
		if !ok {
			return celError
		}
		c = strings.Compare(x, y)
	case bool:
		y, ok := lit.(bool)
		if !ok {
			return celError
		}
		c = compare(x, y)
	default:
		return celError
	}
	switch op {
	case cmpLt:
		return celBool(c < 0)
	case cmpLe:
		return celBool(c <= 0)
	case cmpGt:
		return celBool(c > 0)
	}
	return celBool(c >= 0)
}

func celBool(b bool) celVal {
	if b {
		return celTrue
	}
	return celFalse
}
