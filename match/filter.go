package match

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/streamerd/streamer/internal/strictjson"
)

// Operator is a Firestore where() operator, spelled as in Firestore.
type Operator string

// The operators of Firestore's where().
const (
	OpEqual            Operator = "=="
	OpNotEqual         Operator = "!="
	OpLess             Operator = "<"
	OpLessEqual        Operator = "<="
	OpGreater          Operator = ">"
	OpGreaterEqual     Operator = ">="
	OpIn               Operator = "in"
	OpNotIn            Operator = "not-in"
	OpArrayContains    Operator = "array-contains"
	OpArrayContainsAny Operator = "array-contains-any"
)

var allOperators = []Operator{OpEqual, OpNotEqual, OpLess, OpLessEqual, OpGreater, OpGreaterEqual,
	OpIn, OpNotIn, OpArrayContains, OpArrayContainsAny}

// operatorAliases maps the spellings of other Firestore SDKs and of the REST API
// (StructuredQuery.FieldFilter.Operator) to the canonical one.
var operatorAliases = map[Operator]Operator{
	"=":              "", // not Firestore: refused below with the list of operators
	"array_contains": OpArrayContains, "array_contains_any": OpArrayContainsAny, "not_in": OpNotIn,
	"EQUAL": OpEqual, "NOT_EQUAL": OpNotEqual, "LESS_THAN": OpLess, "LESS_THAN_OR_EQUAL": OpLessEqual,
	"GREATER_THAN": OpGreater, "GREATER_THAN_OR_EQUAL": OpGreaterEqual, "IN": OpIn, "NOT_IN": OpNotIn,
	"ARRAY_CONTAINS": OpArrayContains, "ARRAY_CONTAINS_ANY": OpArrayContainsAny,
}

// MaxListValues is the most values an in, not-in or array-contains-any filter may list,
// as in Firestore.
const MaxListValues = 30

// Filter is one field condition. Filters of a [Criterion] are ANDed.
type Filter struct {
	// Field is a dotted path into the document ("a.b.c"); a segment may be quoted with
	// backticks to contain dots.
	Field string `json:"field"`
	// Op is the operator.
	Op Operator `json:"op"`
	// Value is a JSON value (nil, bool, numbers, string, []any, map[string]any). For in,
	// not-in and array-contains-any it must be a non-empty list of at most
	// [MaxListValues] values.
	Value any `json:"value"`
}

// UnmarshalJSON accepts {"field":…,"op":…,"value":…} (also "path" for field and
// "operator" for op) and the compact triple ["field", "op", value].
func (f *Filter) UnmarshalJSON(data []byte) error {
	var triple []json.RawMessage
	if err := json.Unmarshal(data, &triple); err == nil {
		if len(triple) != 3 {
			return fmt.Errorf("filter triple must have 3 elements [field, op, value], got %d", len(triple))
		}
		var fld, op string
		if err := json.Unmarshal(triple[0], &fld); err != nil {
			return errors.New("filter triple: field must be a string")
		}
		if err := json.Unmarshal(triple[1], &op); err != nil {
			return errors.New("filter triple: op must be a string")
		}
		v, err := decodeValue(triple[2])
		if err != nil {
			return fmt.Errorf("filter value: %w", err)
		}
		*f = Filter{Field: fld, Op: Operator(op), Value: v}
		return nil
	}
	var obj struct {
		Field    *string         `json:"field"`
		Path     *string         `json:"path"`
		Op       *string         `json:"op"`
		Operator *string         `json:"operator"`
		Value    json.RawMessage `json:"value"`
	}
	if err := strictjson.Unmarshal(data, &obj); err != nil {
		if strings.Contains(err.Error(), "unknown field") {
			return fmt.Errorf("filter object: %w (want \"field\", \"op\" and \"value\")", err)
		}
		return errors.New("filter must be an object {\"field\",\"op\",\"value\"} or a triple [field, op, value]")
	}
	switch {
	case obj.Field != nil:
		f.Field = *obj.Field
	case obj.Path != nil:
		f.Field = *obj.Path
	}
	switch {
	case obj.Op != nil:
		f.Op = Operator(*obj.Op)
	case obj.Operator != nil:
		f.Op = Operator(*obj.Operator)
	}
	if obj.Value == nil {
		return errors.New("filter has no \"value\" (use null to compare with null)")
	}
	v, err := decodeValue(obj.Value)
	if err != nil {
		return fmt.Errorf("filter value: %w", err)
	}
	f.Value = v
	return nil
}

func decodeValue(raw json.RawMessage) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber() // integers beyond 2^53 stay exact (normalize)
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return normalize(v)
}

// compiledFilter is a validated filter ready to evaluate.
type compiledFilter struct {
	path  []string
	op    Operator
	value any    // the filter value, normalized
	list  []any  // the values of in, not-in, array-contains-any
	class class  // class of value (for range operators)
	null  bool   // not-in: the list contains null, so nothing matches
	canon string // canonical text, for criterion keys
}

// compileFilter validates f; i is its position, for error messages.
func compileFilter(i int, f Filter) (compiledFilter, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: filter %d (field %q, op %q): %s", ErrInvalidFilter, i, f.Field, f.Op, fmt.Sprintf(format, args...))
	}
	path, err := parsePath(f.Field)
	if err != nil {
		return compiledFilter{}, bad("%v", err)
	}
	if alias, ok := operatorAliases[f.Op]; ok && alias != "" {
		f.Op = alias
	}
	known := false
	for _, op := range allOperators {
		known = known || op == f.Op
	}
	if !known {
		if f.Op == "" {
			return compiledFilter{}, bad("operator is missing; use one of %s", operatorList())
		}
		return compiledFilter{}, bad("unknown operator; use one of %s", operatorList())
	}
	v, err := normalize(f.Value)
	if err != nil {
		return compiledFilter{}, bad("%v", err)
	}
	cf := compiledFilter{path: path, op: f.Op, value: v, class: classOf(v)}
	switch f.Op {
	case OpIn, OpNotIn, OpArrayContainsAny:
		list, ok := v.([]any)
		if !ok {
			return compiledFilter{}, bad("value must be a list, got %s", classOf(v))
		}
		if len(list) == 0 {
			return compiledFilter{}, bad("value list is empty")
		}
		if len(list) > MaxListValues {
			return compiledFilter{}, bad("value list has %d values, at most %d are allowed", len(list), MaxListValues)
		}
		cf.list = list
		for _, e := range list {
			cf.null = cf.null || e == nil
		}
	case OpLess, OpLessEqual, OpGreater, OpGreaterEqual:
		if v == nil {
			return compiledFilter{}, bad("null supports only == and != comparisons")
		}
	}
	cf.canon = canonicalPath(path) + " " + string(f.Op) + " " + canonicalJSON(v)
	return cf, nil
}

func operatorList() string {
	parts := make([]string, len(allOperators))
	for i, op := range allOperators {
		parts[i] = strconv.Quote(string(op))
	}
	return strings.Join(parts, ", ")
}

func canonicalPath(path []string) string {
	parts := make([]string, len(path))
	for i, s := range path {
		parts[i] = strconv.Quote(s)
	}
	return strings.Join(parts, ".")
}

// eval reports whether doc satisfies the filter. A missing field matches nothing; != and
// not-in match only present, non-null fields; range operators compare only values of
// the filter value's class. It does not allocate, except when ordering objects.
func (f *compiledFilter) eval(doc map[string]any) bool {
	v, ok := lookup(doc, f.path)
	if !ok {
		return false
	}
	switch f.op {
	case OpEqual:
		return equal(v, f.value)
	case OpNotEqual:
		return v != nil && !equal(v, f.value)
	case OpLess, OpLessEqual, OpGreater, OpGreaterEqual:
		if classOf(v) != f.class {
			return false
		}
		c := compareSameClass(v, f.value)
		switch f.op {
		case OpLess:
			return c < 0
		case OpLessEqual:
			return c <= 0
		case OpGreater:
			return c > 0
		}
		return c >= 0
	case OpIn:
		return contains(f.list, v)
	case OpNotIn:
		return !f.null && v != nil && !contains(f.list, v)
	case OpArrayContains:
		arr, ok := v.([]any)
		return ok && contains(arr, f.value)
	case OpArrayContainsAny:
		arr, ok := v.([]any)
		if !ok {
			return false
		}
		for _, e := range arr {
			if contains(f.list, e) {
				return true
			}
		}
	}
	return false
}

// compareSameClass is compare with fast paths for the common scalar classes.
func compareSameClass(a, b any) int {
	switch x := a.(type) {
	case float64:
		return cmpFloat(x, b.(float64))
	case string:
		return strings.Compare(x, b.(string))
	}
	return compare(a, b)
}

func contains(list []any, v any) bool {
	for _, e := range list {
		if equal(e, v) {
			return true
		}
	}
	return false
}
