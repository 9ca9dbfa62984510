package match

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"sync/atomic"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/operators"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/interpreter"
	lru "github.com/hashicorp/golang-lru/v2"
)

// Defaults of [Config].
const (
	DefaultMaxCELBytes  = 4096
	DefaultCELCostLimit = 100_000
	DefaultCELCacheSize = 10_000
	// DefaultCELWorstCaseLimit is a thousand evaluations at the default cost
	// limit.
	DefaultCELWorstCaseLimit = 100_000_000
	DefaultMaxDocumentBytes  = 1 << 20
)

// Config tunes an [Engine]. Zero values mean the defaults.
type Config struct {
	// MaxCELBytes is the longest CEL expression accepted, in bytes (default 4096).
	MaxCELBytes int
	// CELCostLimit bounds the runtime cost of one CEL evaluation (default 100,000);
	// an evaluation over it stops and counts as no match.
	CELCostLimit uint64
	// CELCacheSize is how many compiled CEL programs the cache keeps (default 10,000).
	CELCacheSize int
	// CELWorstCaseLimit refuses, at compile time, a CEL expression whose
	// estimated cost on the worst document of MaxDocumentBytes exceeds it
	// (default 100,000,000). The runtime limit stops any one evaluation at
	// CELCostLimit; this one refuses what can only be stopped: nested loops
	// over document lists, concatenations of document strings in a loop.
	// Expressions whose cost grows linearly with the document pass, and are
	// stopped at run time if a document is large enough.
	CELWorstCaseLimit uint64
	// MaxDocumentBytes is the largest document matched, in bytes (default
	// 1 MiB): the size hint of the worst-case estimate.
	MaxDocumentBytes int
}

func (c Config) withDefaults() Config {
	if c.MaxCELBytes <= 0 {
		c.MaxCELBytes = DefaultMaxCELBytes
	}
	if c.CELCostLimit == 0 {
		c.CELCostLimit = DefaultCELCostLimit
	}
	if c.CELCacheSize <= 0 {
		c.CELCacheSize = DefaultCELCacheSize
	}
	if c.CELWorstCaseLimit == 0 {
		c.CELWorstCaseLimit = DefaultCELWorstCaseLimit
	}
	if c.MaxDocumentBytes <= 0 {
		c.MaxDocumentBytes = DefaultMaxDocumentBytes
	}
	return c
}

// Engine compiles criteria. It owns the CEL environment and the size-bounded cache of
// compiled programs shared by every subscription using the same expression, and counts
// CEL evaluations and their errors. Safe for concurrent use.
type Engine struct {
	cfg   Config
	env   *cel.Env
	cache *lru.Cache[string, *celProgram]

	hits, misses, evictions atomic.Uint64
	evals, evalErrors       atomic.Uint64
	suspended               atomic.Uint64

	crits critTable // the criteria its Indexes hold, shared across them
}

// CostLimit is the cost limit of one CEL evaluation.
func (e *Engine) CostLimit() uint64 { return e.cfg.CELCostLimit }

// Stats are cumulative counters of an Engine.
type Stats struct {
	CELCacheHits      uint64 // compilations answered from the cache
	CELCacheMisses    uint64 // compilations that built a new program
	CELCacheEvictions uint64 // programs evicted to respect CELCacheSize
	CELCacheLen       int    // programs cached now
	CELEvals          uint64 // CEL evaluations
	CELEvalErrors     uint64 // evaluations that failed (missing key, type error, cost) = no match
	// CELSuspended counts the CEL criteria (per tenant's collection) no
	// longer evaluated: SuspendAfter evaluations in a row over the cost
	// limit. Their subscriptions match nothing from then on.
	CELSuspended uint64
}

// NewEngine returns an Engine configured by cfg.
func NewEngine(cfg Config) (*Engine, error) {
	cfg = cfg.withDefaults()
	env, err := cel.NewEnv(
		cel.Variable("doc", cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable("id", cel.StringType),
		cel.ParserExpressionSizeLimit(cfg.MaxCELBytes),
	)
	if err != nil {
		return nil, fmt.Errorf("match: cel environment: %w", err)
	}
	e := &Engine{cfg: cfg, env: env}
	e.cache, err = lru.NewWithEvict(cfg.CELCacheSize, func(string, *celProgram) { e.evictions.Add(1) })
	if err != nil {
		return nil, fmt.Errorf("match: cel cache: %w", err)
	}
	return e, nil
}

// Stats returns the Engine's counters.
func (e *Engine) Stats() Stats {
	return Stats{
		CELCacheHits:      e.hits.Load(),
		CELCacheMisses:    e.misses.Load(),
		CELCacheEvictions: e.evictions.Load(),
		CELCacheLen:       e.cache.Len(),
		CELEvals:          e.evals.Load(),
		CELEvalErrors:     e.evalErrors.Load(),
		CELSuspended:      e.suspended.Load(),
	}
}

// celProgram is a compiled CEL expression, shared through the cache.
type celProgram struct {
	eng   *Engine
	canon string      // canonical source
	prg   cel.Program // nil when isNative, unless the native evaluation may need it
	eq    []eqCand
	// native is the expression when evalNative computes it exactly as CEL would,
	// without the interpreter (see celnative.go).
	native   celNode
	isNative bool
	// budget bounds the cost of the contains calls of a native evaluation. When the
	// interpreter runs the expression under the cost limit (its static estimate is
	// over the limit, as it is for contains on document data), budget is the limit
	// minus an upper bound of the cost of everything else, so that an evaluation
	// within budget is one the interpreter completes too; an evaluation over it is
	// handed to the interpreter (prg), which decides. noBudget otherwise.
	budget uint64
}

func (e *Engine) compileCEL(src string) (*celProgram, error) {
	if len(src) > e.cfg.MaxCELBytes {
		return nil, tooLongError(fmt.Sprintf("%v: expression is %d bytes, the limit is %d bytes", ErrInvalidCEL, len(src), e.cfg.MaxCELBytes))
	}
	parsed, iss := e.env.Parse(src)
	if iss.Err() != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidCEL, iss.Err())
	}
	canon, err := cel.AstToString(parsed)
	if err != nil {
		canon = src
	}
	if p, ok := e.cache.Get(canon); ok {
		e.hits.Add(1)
		return p, nil
	}
	e.misses.Add(1)
	checked, iss := e.env.Check(parsed)
	if iss.Err() != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidCEL, iss.Err())
	}
	if !checked.OutputType().IsExactType(types.BoolType) {
		hint := ""
		if checked.OutputType() == types.DynType {
			hint = " (compare it explicitly, e.g. doc.flag == true)"
		}
		return nil, fmt.Errorf("%w: expression must evaluate to bool, it evaluates to %s%s", ErrInvalidCEL, checked.OutputType(), hint)
	}
	if err := e.checkWorstCase(checked); err != nil {
		return nil, err
	}
	root := checked.NativeRep().Expr()
	p := &celProgram{eng: e, canon: canon, eq: celEqualities(root, nil), budget: noBudget}
	// Simple boolean expressions are evaluated natively; everything else by cel-go's
	// interpreter, whose programs are large, so they are built only when needed.
	tracked := e.costTracked(checked)
	p.native, p.isNative = nativeExpr(root)
	needPrg := !p.isNative
	if p.isNative && tracked {
		if fixed := p.native.fixedCost(); fixed > e.cfg.CELCostLimit {
			p.native, p.isNative, needPrg = celNode{}, false, true // a tiny limit: CEL decides
		} else if p.native.has(fnContains) {
			p.budget, needPrg = e.cfg.CELCostLimit-fixed, true
		}
	}
	if needPrg {
		if p.prg, err = e.program(checked, tracked); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalidCEL, err)
		}
	}
	e.cache.Add(canon, p)
	return p, nil
}

// costTracked reports whether the interpreter runs a checked expression under the
// cost limit. Runtime cost tracking makes an evaluation several times slower; it is
// paid for only when the static estimate (an upper bound) says the limit can be
// exceeded.
func (e *Engine) costTracked(checked *cel.Ast) bool {
	est, err := e.env.EstimateCost(checked, noSizeEstimates{})
	return err != nil || est.Max > e.cfg.CELCostLimit
}

// checkWorstCase refuses an expression whose estimated cost on the worst
// document (every string, list and map of the document as large as
// MaxDocumentBytes allows) exceeds CELWorstCaseLimit.
func (e *Engine) checkWorstCase(checked *cel.Ast) error {
	est, err := e.env.EstimateCost(checked, worstDocument{maxBytes: uint64(e.cfg.MaxDocumentBytes)})
	if err != nil {
		return fmt.Errorf("%w: cannot estimate its cost: %v", ErrInvalidCEL, err)
	}
	if est.Max > e.cfg.CELWorstCaseLimit {
		return costError(fmt.Sprintf("%v: its estimated cost on a document of %d bytes is %s, over the limit of %s "+
			"(nested loops over document lists and string concatenations in loops cost that much; "+
			"one evaluation stops at a cost of %d)", ErrInvalidCEL, e.cfg.MaxDocumentBytes,
			grouped(est.Max), grouped(e.cfg.CELWorstCaseLimit), e.cfg.CELCostLimit))
	}
	return nil
}

// grouped formats n with thousands separators.
func grouped(n uint64) string {
	s := strconv.FormatUint(n, 10)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// program builds the interpreter program of a checked expression.
func (e *Engine) program(checked *cel.Ast, tracked bool) (cel.Program, error) {
	opts := []cel.ProgramOption{cel.EvalOptions(cel.OptOptimize)}
	if tracked {
		opts = append(opts, cel.CostLimit(e.cfg.CELCostLimit), cel.CostTracking(sizeCost{}))
	}
	return e.env.Program(checked, opts...)
}

// eval evaluates the program against img, counting the evaluation (and its failure)
// in img; the caller flushes the counts to the Engine.
func (p *celProgram) eval(img *image) bool {
	img.eng = p.eng
	img.evals++
	var ok, failed bool
	if p.isNative {
		ok, failed = p.evalNative(img)
	} else {
		ok, failed = p.evalInterpreted(img)
	}
	if failed {
		img.evalErrors++
	}
	return ok
}

// evalNative evaluates a native program. failed reports that CEL would have ended in
// an error (no such key, no such overload) rather than false; either way there is no
// match.
func (p *celProgram) evalNative(img *image) (match, failed bool) {
	run := nativeRun{img: img, budget: p.budget}
	switch p.native.eval(&run) {
	case celTrue:
		return true, false
	case celFalse:
		return false, false
	case celError:
		return false, true
	}
	return p.evalInterpreted(img) // over budget: the interpreter may stop at its limit
}

func (p *celProgram) evalInterpreted(img *image) (match, failed bool) {
	img.prepare()
	out, _, err := p.prg.Eval(img.act)
	if err != nil {
		var cancelled interpreter.EvalCancelledError
		if errors.As(err, &cancelled) && cancelled.Cause == interpreter.CostLimitExceeded {
			img.overBudget = true
		}
		return false, true
	}
	b, ok := out.(types.Bool)
	return ok && bool(b), false
}

// flush adds the image's evaluation counts to its Engine's counters.
func (img *image) flush() {
	if img.eng != nil && img.evals > 0 {
		img.eng.evals.Add(img.evals)
		img.eng.evalErrors.Add(img.evalErrors)
		img.eng.suspended.Add(img.suspended)
	}
	img.evals, img.evalErrors, img.suspended = 0, 0, 0
}

// celActivation binds doc and id without building a map per evaluation.
type celActivation struct {
	doc ref.Val
	id  ref.Val
}

func (a *celActivation) ResolveName(name string) (any, bool) {
	switch name {
	case "doc":
		return a.doc, true
	case "id":
		return a.id, true
	}
	return nil, false
}

func (a *celActivation) Parent() interpreter.Activation { return nil }

// celEqualities collects the top-level conjuncts of the form doc.f == constant (or
// constant == doc.f, or doc["f"]), which the index can use.
func celEqualities(e ast.Expr, out []eqCand) []eqCand {
	if e.Kind() != ast.CallKind {
		return out
	}
	call := e.AsCall()
	args := call.Args()
	switch call.FunctionName() {
	case operators.LogicalAnd:
		for _, a := range args {
			out = celEqualities(a, out)
		}
	case operators.Equals:
		if len(args) != 2 {
			return out
		}
		for _, pair := range [2][2]ast.Expr{{args[0], args[1]}, {args[1], args[0]}} {
			path, ok := docPath(pair[0])
			if !ok || len(path) == 0 {
				continue
			}
			if v, ok := celConstant(pair[1]); ok {
				if _, big := v.(int64); big {
					// CEL compares an int with a double as doubles: a
					// document's 2^53 equals 2^53+1 there, which an exact
					// key would not find. Left to the evaluation.
					return out
				}
				return append(out, eqCand{path: path, keys: []vkey{keyOf(v)}})
			}
		}
	}
	return out
}

// docPath returns the field path of a selection chain rooted at the variable doc.
func docPath(e ast.Expr) ([]string, bool) {
	switch e.Kind() {
	case ast.IdentKind:
		return nil, e.AsIdent() == "doc"
	case ast.SelectKind:
		sel := e.AsSelect()
		if sel.IsTestOnly() {
			return nil, false
		}
		p, ok := docPath(sel.Operand())
		return append(p, sel.FieldName()), ok
	case ast.CallKind:
		call := e.AsCall()
		if call.FunctionName() != operators.Index || len(call.Args()) != 2 {
			return nil, false
		}
		key, ok := celConstant(call.Args()[1])
		s, isStr := key.(string)
		if !ok || !isStr {
			return nil, false
		}
		p, ok := docPath(call.Args()[0])
		return append(p, s), ok
	}
	return nil, false
}

// celConstant converts a scalar literal to its JSON value.
func celConstant(e ast.Expr) (any, bool) {
	if e.Kind() != ast.LiteralKind {
		return nil, false
	}
	switch v := e.AsLiteral().(type) {
	case types.String:
		return string(v), true
	case types.Double:
		return float64(v), true
	case types.Int:
		return exactInt(int64(v)), true
	case types.Uint:
		if uint64(v) > math.MaxInt64 {
			return float64(v), true
		}
		return exactInt(int64(v)), true
	case types.Bool:
		return bool(v), true
	case types.Null:
		return nil, true
	}
	return nil, false
}

// prepare builds the image's CEL activation now, so that concurrent evaluations only
// read it.
func (img *image) prepare() {
	if img.doc != nil && img.act == nil {
		img.act = &celActivation{doc: types.DefaultTypeAdapter.NativeToValue(img.doc), id: types.String(img.id)}
	}
}

// tooLongError is an expression over the size limit: both ErrInvalidCEL and ErrTooLong.
type tooLongError string

func (e tooLongError) Error() string { return string(e) }

func (e tooLongError) Is(target error) bool { return target == ErrInvalidCEL || target == ErrTooLong }

// costError is an expression over the worst-case cost limit: both
// ErrInvalidCEL and ErrTooExpensive.
type costError string

func (e costError) Error() string { return string(e) }

func (e costError) Is(target error) bool { return target == ErrInvalidCEL || target == ErrTooExpensive }
