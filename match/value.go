package match

import (
	"cmp"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// class is a value's type class in Firestore's cross-type order. Range filters compare
// only values of the same class; equality never holds across classes.
type class uint8

const (
	classNull class = iota
	classBool
	classNumber
	classString
	classArray
	classObject
	classInvalid
)

func (c class) String() string {
	return [...]string{"null", "boolean", "number", "string", "array", "object", "invalid"}[c]
}

// classOf returns the class of a decoded JSON value.
func classOf(v any) class {
	switch v.(type) {
	case nil:
		return classNull
	case bool:
		return classBool
	case float64, int64:
		return classNumber
	case string:
		return classString
	case []any:
		return classArray
	case map[string]any:
		return classObject
	}
	return classInvalid
}

// normalize converts a Go value given by an API caller (filter values, CEL constants)
// into the JSON representation, so that int 1 and float64 1 are the same value.
func normalize(v any) (any, error) {
	switch x := v.(type) {
	case nil, bool, string:
		return x, nil
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nil, fmt.Errorf("number %v cannot be represented in JSON", x)
		}
		return x, nil
	case float32:
		return normalize(float64(x))
	case int:
		return exactInt(int64(x)), nil
	case int32:
		return float64(x), nil
	case int64:
		return exactInt(x), nil
	case uint:
		return float64(x), nil
	case uint32:
		return float64(x), nil
	case uint64:
		if x > math.MaxInt64 {
			return float64(x), nil
		}
		return exactInt(int64(x)), nil
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return exactInt(i), nil
		}
		f, err := x.Float64()
		if err != nil {
			return nil, fmt.Errorf("number %q: %w", string(x), err)
		}
		return f, nil
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			n, err := normalize(e)
			if err != nil {
				return nil, err
			}
			out[i] = n
		}
		return out, nil
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			n, err := normalize(e)
			if err != nil {
				return nil, err
			}
			out[k] = n
		}
		return out, nil
	}
	return nil, fmt.Errorf("unsupported value type %T", v)
}

// equal is Firestore equality: same class and equal value; arrays element-wise in order,
// objects by key regardless of key order. It does not allocate.
func equal(a, b any) bool {
	switch x := a.(type) {
	case nil:
		return b == nil
	case bool:
		y, ok := b.(bool)
		return ok && x == y
	case float64, int64:
		c, ok := cmpNumbers(x, b)
		return ok && c == 0
	case string:
		y, ok := b.(string)
		return ok && x == y
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !equal(x[i], y[i]) {
				return false
			}
		}
		return true
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, xv := range x {
			yv, ok := y[k]
			if !ok || !equal(xv, yv) {
				return false
			}
		}
		return true
	}
	return false
}

// compare orders two values of the same class as Firestore does: false < true, numbers
// numerically, strings by UTF-8 bytes, arrays element-wise then by length, objects by
// their entries in key order then by size. Values of different classes are ordered by
// class.
func compare(a, b any) int {
	ca, cb := classOf(a), classOf(b)
	if ca != cb {
		return cmpInt(int(ca), int(cb))
	}
	switch x := a.(type) {
	case nil:
		return 0
	case bool:
		y := b.(bool)
		switch {
		case x == y:
			return 0
		case !x:
			return -1
		}
		return 1
	case float64, int64:
		c, _ := cmpNumbers(x, b)
		return c
	case string:
		return strings.Compare(x, b.(string))
	case []any:
		y := b.([]any)
		for i := 0; i < len(x) && i < len(y); i++ {
			if c := compare(x[i], y[i]); c != 0 {
				return c
			}
		}
		return cmpInt(len(x), len(y))
	case map[string]any:
		y := b.(map[string]any)
		kx, ky := sortedKeys(x), sortedKeys(y)
		for i := 0; i < len(kx) && i < len(ky); i++ {
			if c := strings.Compare(kx[i], ky[i]); c != 0 {
				return c
			}
			if c := compare(x[kx[i]], y[ky[i]]); c != 0 {
				return c
			}
		}
		return cmpInt(len(kx), len(ky))
	}
	return 0
}

// exactInt is the number i as the package holds it: a float64 when that
// is exact (every integer up to 2^53, and many beyond), else the int64
// itself, so that integers beyond 2^53 compare exactly. A number thus has
// one representation, and a float64 never equals an int64.
func exactInt(i int64) any {
	if f := float64(i); f < 9223372036854775808.0 && int64(f) == i {
		return f
	}
	return i
}

// cmpNumbers compares two numbers (float64 or int64) exactly; ok is false
// when one is not a number.
func cmpNumbers(a, b any) (int, bool) {
	switch x := a.(type) {
	case float64:
		switch y := b.(type) {
		case float64:
			return cmpFloat(x, y), true
		case int64:
			return -cmpIntFloat(y, x), true
		}
	case int64:
		switch y := b.(type) {
		case float64:
			return cmpIntFloat(x, y), true
		case int64:
			return cmp.Compare(x, y), true
		}
	}
	return 0, false
}

// cmpIntFloat compares i and f exactly.
func cmpIntFloat(i int64, f float64) int {
	switch {
	case f >= 9223372036854775808.0: // 2^63: beyond every int64
		return -1
	case f < -9223372036854775808.0:
		return 1
	}
	t := math.Trunc(f)
	if c := cmp.Compare(i, int64(t)); c != 0 {
		return c
	}
	return cmpFloat(t, f) // the fraction decides
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func cmpInt(a, b int) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// vkey is a value's identity for the equality index: two values are Firestore-equal
// exactly when their vkeys are equal. Scalars need no allocation; arrays and objects
// are keyed by their canonical JSON.
type vkey struct {
	c class
	s string
	n float64
}

func keyOf(v any) vkey {
	switch x := v.(type) {
	case nil:
		return vkey{c: classNull}
	case bool:
		if x {
			return vkey{c: classBool, n: 1}
		}
		return vkey{c: classBool}
	case float64:
		if x == 0 {
			x = 0 // -0 and +0 are equal
		}
		return vkey{c: classNumber, n: x}
	case int64: // beyond float64's exact integers (exactInt): no float64 equals it
		return vkey{c: classNumber, n: float64(x), s: strconv.FormatInt(x, 10)}
	case string:
		return vkey{c: classString, s: x}
	case []any:
		return vkey{c: classArray, s: canonicalJSON(x)}
	case map[string]any:
		return vkey{c: classObject, s: canonicalJSON(x)}
	}
	return vkey{c: classInvalid}
}

// canonicalJSON encodes a value with sorted object keys and shortest number formatting,
// so that equal values have equal encodings.
func canonicalJSON(v any) string {
	var b strings.Builder
	writeCanonical(&b, v)
	return b.String()
}

func writeCanonical(b *strings.Builder, v any) {
	switch x := v.(type) {
	case nil:
		b.WriteString("null")
	case bool:
		b.WriteString(strconv.FormatBool(x))
	case float64:
		if x == 0 {
			x = 0
		}
		b.WriteString(strconv.FormatFloat(x, 'g', -1, 64))
	case int64:
		b.WriteString(strconv.FormatInt(x, 10))
	case string:
		b.WriteString(strconv.Quote(x))
	case []any:
		b.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				b.WriteByte(',')
			}
			writeCanonical(b, e)
		}
		b.WriteByte(']')
	case map[string]any:
		b.WriteByte('{')
		for i, k := range sortedKeys(x) {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(strconv.Quote(k))
			b.WriteByte(':')
			writeCanonical(b, x[k])
		}
		b.WriteByte('}')
	default:
		fmt.Fprintf(b, "%v", x)
	}
}
