package match

import (
	"slices"
	"strconv"
)

// Condition is a necessary condition of a criterion on one field: every
// document the criterion selects satisfies it. A source that can narrow a
// scan (a database query) may use the conditions of a criterion to fetch a
// superset of its documents; the criterion itself still decides
// (Compiled.Match).
type Condition struct {
	// Path is the field, by segments ("a.b" is ["a", "b"]).
	Path []string
	// Op is one of ==, <, <=, >, >=, in, array-contains and
	// array-contains-any, with Firestore semantics: == and the range
	// operators hold for a value of the same type (number, string, ...), in
	// for one of the values, array-contains for an array holding the value,
	// array-contains-any for an array holding one of them.
	Op Operator
	// Value is a JSON-like value: nil, bool, float64, string, []any or
	// map[string]any; for in and array-contains-any a []any.
	Value any
}

// Conditions returns necessary conditions of the criterion (see
// Condition), all of which a selected document satisfies; none for a
// criterion that selects every document, a document id, or conditions it
// cannot state this way (!=, not-in, most of CEL). For CEL they are the
// equalities the expression implies (a conjunct doc.f == v or doc.f in
// [...]). The slices are the caller's.
func (c *Compiled) Conditions() []Condition {
	var out []Condition
	switch c.kind {
	case kindFilters:
		for _, f := range c.filters {
			switch f.op {
			case OpNotEqual, OpNotIn:
				continue
			case OpIn, OpArrayContainsAny:
				out = append(out, Condition{Path: slices.Clone(f.path), Op: f.op, Value: slices.Clone(f.list)})
			default:
				out = append(out, Condition{Path: slices.Clone(f.path), Op: f.op, Value: f.value})
			}
		}
	case kindCEL:
		for _, e := range c.eq {
			values := make([]any, 0, len(e.keys))
			for _, k := range e.keys {
				v, ok := k.value()
				if !ok {
					values = nil
					break
				}
				values = append(values, v)
			}
			if len(values) > 0 {
				out = append(out, Condition{Path: slices.Clone(e.path), Op: OpIn, Value: values})
			}
		}
	}
	return out
}

// DocumentID returns the id a document-id criterion selects, "" for other
// criteria.
func (c *Compiled) DocumentID() string {
	if c.kind == kindID {
		return c.docID
	}
	return ""
}

// value returns the scalar value of a key; false for arrays and objects,
// whose keys hold only a canonical encoding.
func (k vkey) value() (any, bool) {
	switch k.c {
	case classNull:
		return nil, true
	case classBool:
		return k.n == 1, true
	case classNumber:
		if k.s != "" { // an int64 beyond float64's exact integers
			i, err := strconv.ParseInt(k.s, 10, 64)
			return i, err == nil
		}
		return k.n, true
	case classString:
		return k.s, true
	}
	return nil, false
}
