package match

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Validation errors returned by [Engine.Compile]; test with errors.Is. The wrapped
// message says exactly what is wrong and where.
var (
	ErrInvalidFilter    = errors.New("match: invalid filter")
	ErrInvalidCEL       = errors.New("match: invalid CEL expression")
	ErrInvalidCriterion = errors.New("match: invalid criterion")
	// ErrTooLong accompanies ErrInvalidCEL when an expression exceeds
	// Config.MaxCELBytes, so callers can answer "too large" rather than "invalid".
	ErrTooLong = errors.New("match: CEL expression too long")
	// ErrTooExpensive accompanies ErrInvalidCEL when an expression's
	// worst-case cost exceeds Config.CELWorstCaseLimit.
	ErrTooExpensive = errors.New("match: CEL expression too expensive")
)

// Criterion selects documents of one collection. At most one of its fields is set;
// none set (or an empty Filters list) selects every document.
type Criterion struct {
	// DocumentID selects the one document with this id.
	DocumentID string `json:"doc,omitempty"`
	// Filters are ANDed field filters with Firestore where() semantics.
	Filters []Filter `json:"filters,omitempty"`
	// CEL is an expression over `doc` (the document) and `id` (its id) that must
	// type-check to bool.
	CEL string `json:"cel,omitempty"`
}

type critKind uint8

const (
	kindAll critKind = iota
	kindID
	kindFilters
	kindCEL
)

// Compiled is a validated, ready-to-evaluate criterion. It is immutable and safe for
// concurrent use; identical criteria compile to equal keys.
type Compiled struct {
	key     string
	kind    critKind
	docID   string
	filters []compiledFilter
	cel     *celProgram
	eq      []eqCand // conjuncts usable by the equality index

	// The backing arrays of a single filter's filters, eq and eq[0].keys: the commonest
	// criterion is one object for the garbage collector to mark, not four.
	oneFilter [1]compiledFilter
	oneEq     [1]eqCand
	oneKey    [1]vkey
}

// eqCand is a conjunct "path equals one of keys" implied by a criterion: a document that
// satisfies the criterion has, at path, a value whose key is in keys.
type eqCand struct {
	path []string
	keys []vkey
}

// Key returns the canonical form of the criterion: two criteria with equal keys select
// the same documents.
func (c *Compiled) Key() string { return c.key }

// Match reports whether the document doc with id id satisfies the criterion. A CEL
// evaluation error is no match (and is counted by the Engine).
func (c *Compiled) Match(doc map[string]any, id string) bool {
	img := image{doc: doc, id: id}
	ok := c.eval(&img)
	img.flush()
	return ok
}

// image is one version of a document being matched, with its CEL activation built
// lazily, once for all the CEL criteria evaluated against it.
type image struct {
	doc map[string]any
	id  string
	act *celActivation

	eng               *Engine // whose counters evals and evalErrors go to
	evals, evalErrors uint64
	suspended         uint64 // criteria suspended while matching this image (counted on the after image)
	overBudget        bool   // the last CEL evaluation stopped at the cost limit
}

func (c *Compiled) eval(img *image) bool {
	if img.doc == nil {
		return false
	}
	switch c.kind {
	case kindAll:
		return true
	case kindID:
		return img.id == c.docID
	case kindFilters:
		for i := range c.filters {
			if !c.filters[i].eval(img.doc) {
				return false
			}
		}
		return true
	case kindCEL:
		return c.cel.eval(img)
	}
	return false
}

// Compile validates a criterion and compiles it. Errors wrap [ErrInvalidFilter],
// [ErrInvalidCEL] or [ErrInvalidCriterion]. CEL programs come from the Engine's cache
// when an identical expression was compiled before. Safe for concurrent use.
func (e *Engine) Compile(cr Criterion) (*Compiled, error) {
	set := 0
	for _, b := range []bool{cr.DocumentID != "", len(cr.Filters) > 0, cr.CEL != ""} {
		if b {
			set++
		}
	}
	if set > 1 {
		return nil, fmt.Errorf("%w: set only one of document id, filters or cel", ErrInvalidCriterion)
	}
	switch {
	case cr.DocumentID != "":
		return &Compiled{key: "d:" + strconv.Quote(cr.DocumentID), kind: kindID, docID: cr.DocumentID}, nil
	case len(cr.Filters) > 0:
		return compileFilters(cr.Filters)
	case cr.CEL != "":
		prog, err := e.compileCEL(cr.CEL)
		if err != nil {
			return nil, err
		}
		return &Compiled{key: "c:" + prog.canon, kind: kindCEL, cel: prog, eq: prog.eq}, nil
	}
	return &Compiled{key: "*", kind: kindAll}, nil
}

func compileFilters(fs []Filter) (*Compiled, error) {
	c := &Compiled{kind: kindFilters}
	c.filters, c.eq = c.oneFilter[:0], c.oneEq[:0]
	if len(fs) > 1 {
		c.filters = make([]compiledFilter, 0, len(fs))
	}
	for i, f := range fs {
		cf, err := compileFilter(i, f)
		if err != nil {
			return nil, err
		}
		c.filters = append(c.filters, cf)
	}
	// Cheapest first: equality and range filters before list scans.
	slices.SortStableFunc(c.filters, func(a, b compiledFilter) int { return cmpInt(filterCost(a), filterCost(b)) })
	canon := make([]string, len(c.filters))
	for i, f := range c.filters {
		canon[i] = f.canon
		switch f.op {
		case OpEqual:
			keys := c.oneKey[:]
			if len(c.eq) > 0 {
				keys = make([]vkey, 1)
			}
			keys[0] = keyOf(f.value)
			c.eq = append(c.eq, eqCand{path: f.path, keys: keys})
		case OpIn:
			keys := make([]vkey, 0, len(f.list))
			for _, v := range f.list {
				if k := keyOf(v); !slices.Contains(keys, k) {
					keys = append(keys, k)
				}
			}
			c.eq = append(c.eq, eqCand{path: f.path, keys: keys})
		}
	}
	slices.Sort(canon)
	canon = slices.Compact(canon)
	c.key = "f:" + strings.Join(canon, " && ")
	return c, nil
}

func filterCost(f compiledFilter) int {
	switch f.op {
	case OpEqual, OpNotEqual, OpLess, OpLessEqual, OpGreater, OpGreaterEqual:
		return 0
	}
	return 1
}
