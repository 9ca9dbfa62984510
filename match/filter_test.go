package match

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func mustDoc(t testing.TB, s string) map[string]any {
	t.Helper()
	d, err := ParseDocument([]byte(s))
	if err != nil {
		t.Fatalf("ParseDocument(%s): %v", s, err)
	}
	return d
}

func mustFilters(t testing.TB, s string) []Filter {
	t.Helper()
	var fs []Filter
	if err := json.Unmarshal([]byte(s), &fs); err != nil {
		t.Fatalf("filters %s: %v", s, err)
	}
	return fs
}

func newTestEngine(t testing.TB) *Engine {
	t.Helper()
	e, err := NewEngine(Config{})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// TestFilterSemantics pins Firestore's where() semantics over JSON values.
func TestFilterSemantics(t *testing.T) {
	doc := `{"n": 5, "f": 2.5, "z": 0, "s": "abc", "e": "", "b": true, "nul": null,
		"arr": [1, "x", null, [1, 2], {"k": 1}], "nums": [1, 2, 3], "empty": [],
		"obj": {"a": 1, "b": {"c": "deep"}}, "u": "é", "big": 9007199254740993,
		"dot.key": "quoted", "mixed": [1, "1", true]}`
	cases := []struct {
		name   string
		filter string // [field, op, value]
		want   bool
	}{
		// ==
		{"eq number", `["n", "==", 5]`, true},
		{"eq number as float", `["n", "==", 5.0]`, true},
		{"eq number other", `["n", "==", 6]`, false},
		{"eq number vs string", `["n", "==", "5"]`, false},
		{"eq string", `["s", "==", "abc"]`, true},
		{"eq empty string", `["e", "==", ""]`, true},
		{"eq string vs number", `["s", "==", 0]`, false},
		{"eq zero vs false", `["z", "==", false]`, false},
		{"eq empty string vs null", `["e", "==", null]`, false},
		{"eq bool", `["b", "==", true]`, true},
		{"eq bool vs 1", `["b", "==", 1]`, false},
		{"eq null matches explicit null", `["nul", "==", null]`, true},
		{"eq null does not match missing", `["missing", "==", null]`, false},
		{"eq null does not match value", `["n", "==", null]`, false},
		{"eq missing", `["missing", "==", 5]`, false},
		{"eq array exact", `["nums", "==", [1, 2, 3]]`, true},
		{"eq array order matters", `["nums", "==", [3, 2, 1]]`, false},
		{"eq array prefix", `["nums", "==", [1, 2]]`, false},
		{"eq empty array", `["empty", "==", []]`, true},
		{"eq object key order irrelevant", `["obj", "==", {"b": {"c": "deep"}, "a": 1}]`, true},
		{"eq object extra key", `["obj", "==", {"a": 1}]`, false},
		{"eq object nested differs", `["obj", "==", {"a": 1, "b": {"c": "DEEP"}}]`, false},
		{"eq nested path", `["obj.b.c", "==", "deep"]`, true},
		{"eq path through number", `["n.x", "==", null]`, false},
		{"eq path through string", `["s.length", "==", 3]`, false},
		{"eq path through array", `["nums.0", "==", 1]`, false},
		{"eq path through null", `["nul.x", "==", null]`, false},
		{"eq quoted segment", "[\"`dot.key`\", \"==\", \"quoted\"]", true},
		{"eq unicode", `["u", "==", "é"]`, true},
		{"eq big integer", `["big", "==", 9007199254740993]`, true},
		// !=
		{"ne different", `["n", "!=", 6]`, true},
		{"ne same", `["n", "!=", 5]`, false},
		{"ne other type", `["n", "!=", "5"]`, true},
		{"ne missing never", `["missing", "!=", 5]`, false},
		{"ne null field never", `["nul", "!=", 5]`, false},
		{"ne null value: present non-null", `["n", "!=", null]`, true},
		{"ne null value: null field", `["nul", "!=", null]`, false},
		{"ne null value: missing", `["missing", "!=", null]`, false},
		{"ne array order", `["nums", "!=", [3, 2, 1]]`, true},
		{"ne object same", `["obj", "!=", {"b": {"c": "deep"}, "a": 1}]`, false},
		// ranges
		{"lt number", `["n", "<", 6]`, true},
		{"lt number equal", `["n", "<", 5]`, false},
		{"le number equal", `["n", "<=", 5]`, true},
		{"gt float", `["f", ">", 2.4]`, true},
		{"ge float", `["f", ">=", 2.5]`, true},
		{"gt number vs string value", `["n", ">", "a"]`, false},
		{"lt number vs string value", `["n", "<", "a"]`, false},
		{"lt string vs number value", `["s", "<", 100]`, false},
		{"gt string vs number value", `["s", ">", 1]`, false},
		{"range null field", `["nul", "<", 1]`, false},
		{"range null field ge", `["nul", ">=", 0]`, false},
		{"range missing", `["missing", ">", 0]`, false},
		{"range bool", `["b", ">", false]`, true},
		{"range bool not number", `["b", ">", 0]`, false},
		{"lt string", `["s", "<", "abd"]`, true},
		{"gt string prefix", `["s", ">", "ab"]`, true},
		{"string case: upper sorts first", `["s", ">", "ABC"]`, true},
		{"string utf8 byte order", `["u", ">", "z"]`, true},
		{"string empty", `["e", "<", "a"]`, true},
		{"range array lexicographic", `["nums", "<", [1, 2, 4]]`, true},
		{"range array shorter first", `["nums", ">", [1, 2]]`, true},
		{"range array vs number", `["nums", ">", 0]`, false},
		{"range object", `["obj", ">", {"a": 0}]`, true},
		{"range object smaller key wins", `["obj", "<", {"b": 0}]`, true},
		// in / not-in
		{"in hit", `["n", "in", [1, 5, 9]]`, true},
		{"in miss", `["n", "in", [1, 9]]`, false},
		{"in type strict", `["n", "in", ["5"]]`, false},
		{"in null field with null", `["nul", "in", [null]]`, true},
		{"in missing", `["missing", "in", [null, 5]]`, false},
		{"in array value", `["nums", "in", [[1, 2, 3]]]`, true},
		{"in array elements not flattened", `["nums", "in", [1, 2, 3]]`, false},
		{"not-in hit", `["n", "not-in", [1, 9]]`, true},
		{"not-in miss", `["n", "not-in", [5]]`, false},
		{"not-in other type", `["n", "not-in", ["5"]]`, true},
		{"not-in missing", `["missing", "not-in", [1]]`, false},
		{"not-in null field", `["nul", "not-in", [1]]`, false},
		{"not-in with null in list matches nothing", `["n", "not-in", [1, null]]`, false},
		{"not-in array value", `["nums", "not-in", [[1, 2]]]`, true},
		// array-contains
		{"ac number", `["arr", "array-contains", 1]`, true},
		{"ac string", `["arr", "array-contains", "x"]`, true},
		{"ac null element", `["arr", "array-contains", null]`, true},
		{"ac nested array", `["arr", "array-contains", [1, 2]]`, true},
		{"ac nested array order", `["arr", "array-contains", [2, 1]]`, false},
		{"ac object", `["arr", "array-contains", {"k": 1}]`, true},
		{"ac miss", `["arr", "array-contains", "y"]`, false},
		{"ac type strict", `["mixed", "array-contains", "1"]`, true},
		{"ac type strict bool", `["nums", "array-contains", true]`, false},
		{"ac not an array", `["s", "array-contains", "a"]`, false},
		{"ac empty", `["empty", "array-contains", 1]`, false},
		{"ac missing", `["missing", "array-contains", 1]`, false},
		// array-contains-any
		{"aca hit", `["nums", "array-contains-any", [9, 3]]`, true},
		{"aca miss", `["nums", "array-contains-any", [9, "1"]]`, false},
		{"aca null", `["arr", "array-contains-any", [null]]`, true},
		{"aca nested", `["arr", "array-contains-any", [[1, 2]]]`, true},
		{"aca not array", `["n", "array-contains-any", [5]]`, false},
		{"aca empty doc array", `["empty", "array-contains-any", [1]]`, false},
	}
	e := newTestEngine(t)
	d := mustDoc(t, doc)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := e.Compile(Criterion{Filters: mustFilters(t, "["+tc.filter+"]")})
			if err != nil {
				t.Fatalf("compile: %v", err)
			}
			if got := c.Match(d, "id"); got != tc.want {
				t.Fatalf("%s on %s = %v, want %v", tc.filter, doc, got, tc.want)
			}
		})
	}
}

func TestFiltersAreANDed(t *testing.T) {
	e := newTestEngine(t)
	d := mustDoc(t, `{"a": 1, "b": "x"}`)
	for _, tc := range []struct {
		filters string
		want    bool
	}{
		{`[["a", "==", 1], ["b", "==", "x"]]`, true},
		{`[["a", "==", 1], ["b", "==", "y"]]`, false},
		{`[["a", ">", 0], ["a", "<", 2], ["b", "in", ["x", "z"]]]`, true},
		{`[["a", ">", 0], ["missing", "!=", 3]]`, false},
	} {
		c, err := e.Compile(Criterion{Filters: mustFilters(t, tc.filters)})
		if err != nil {
			t.Fatal(err)
		}
		if got := c.Match(d, ""); got != tc.want {
			t.Errorf("%s = %v, want %v", tc.filters, got, tc.want)
		}
	}
}

func TestFilterValidation(t *testing.T) {
	many := "[" + strings.Repeat("1,", MaxListValues) + "1]"
	cases := []struct {
		name, filter, wantMsg string
	}{
		{"unknown operator", `["a", "=~", 1]`, "unknown operator"},
		{"missing operator", `{"field": "a", "value": 1}`, "operator is missing"},
		{"sql operator", `["a", "=", 1]`, "unknown operator"},
		{"in without list", `["a", "in", 1]`, "must be a list"},
		{"in empty list", `["a", "in", []]`, "list is empty"},
		{"not-in empty list", `["a", "not-in", []]`, "list is empty"},
		{"array-contains-any without list", `["a", "array-contains-any", "x"]`, "must be a list"},
		{"too many values", `["a", "in", ` + many + `]`, "at most 30"},
		{"empty path", `["", "==", 1]`, "field path is empty"},
		{"leading dot", `[".a", "==", 1]`, "empty segment"},
		{"trailing dot", `["a.", "==", 1]`, "empty segment"},
		{"double dot", `["a..b", "==", 1]`, "empty segment"},
		{"reserved character", `["a[0]", "==", 1]`, "contains"},
		{"unterminated backtick", "[\"`a\", \"==\", 1]", "unterminated backtick"},
		{"range with null", `["a", "<", null]`, "null supports only == and !="},
	}
	e := newTestEngine(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var fs []Filter
			if err := json.Unmarshal([]byte("["+tc.filter+"]"), &fs); err != nil {
				if !strings.Contains(err.Error(), tc.wantMsg) {
					t.Fatalf("decode error %q does not contain %q", err, tc.wantMsg)
				}
				return
			}
			_, err := e.Compile(Criterion{Filters: fs})
			if !errors.Is(err, ErrInvalidFilter) {
				t.Fatalf("err = %v, want ErrInvalidFilter", err)
			}
			if !strings.Contains(err.Error(), tc.wantMsg) {
				t.Fatalf("err %q does not contain %q", err, tc.wantMsg)
			}
		})
	}
	t.Run("exactly 30 values is fine", func(t *testing.T) {
		list := "[" + strings.Repeat("1,", MaxListValues-1) + "1]"
		if _, err := e.Compile(Criterion{Filters: mustFilters(t, `[["a", "in", `+list+`]]`)}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("two criteria at once", func(t *testing.T) {
		_, err := e.Compile(Criterion{DocumentID: "x", CEL: "true"})
		if !errors.Is(err, ErrInvalidCriterion) {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestOperatorSpellingsOfOtherSDKs(t *testing.T) {
	e := newTestEngine(t)
	d := mustDoc(t, `{"a": 2, "t": ["x"]}`)
	for _, tc := range []struct {
		filter string
		want   bool
	}{
		{`["t", "array_contains", "x"]`, true},
		{`["t", "array_contains_any", ["y", "x"]]`, true},
		{`["a", "not_in", [1]]`, true},
		{`["a", "GREATER_THAN_OR_EQUAL", 2]`, true},
		{`["a", "LESS_THAN", 2]`, false},
		{`["a", "NOT_EQUAL", 2]`, false},
	} {
		c, err := e.Compile(Criterion{Filters: mustFilters(t, "["+tc.filter+"]")})
		if err != nil {
			t.Fatalf("%s: %v", tc.filter, err)
		}
		if got := c.Match(d, ""); got != tc.want {
			t.Errorf("%s = %v, want %v", tc.filter, got, tc.want)
		}
	}
	a, _ := e.Compile(Criterion{Filters: mustFilters(t, `[["a", "NOT_IN", [1]]]`)})
	b, _ := e.Compile(Criterion{Filters: mustFilters(t, `[["a", "not-in", [1]]]`)})
	if a.Key() != b.Key() {
		t.Errorf("aliases compile to different keys: %q, %q", a.Key(), b.Key())
	}
}

func TestParsePath(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"a", []string{"a"}},
		{"a.b.c", []string{"a", "b", "c"}},
		{"`a.b`.c", []string{"a.b", "c"}},
		{"a.`b\\`c`", []string{"a", "b`c"}},
		{"é.ü", []string{"é", "ü"}},
	} {
		got, err := parsePath(tc.in)
		if err != nil || strings.Join(got, "|") != strings.Join(tc.want, "|") {
			t.Errorf("parsePath(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", ".", "a.", ".a", "a..b", "`a`b", "``", "`a`.", "a*", "a/b", "~a"} {
		if _, err := parsePath(bad); err == nil {
			t.Errorf("parsePath(%q) accepted", bad)
		}
	}
}

// TestFilterValuesAreData checks that nothing in a filter value changes a filter's
// meaning: values that look like code compare as plain strings.
func TestFilterValuesAreData(t *testing.T) {
	e := newTestEngine(t)
	payloads := []string{
		`') || true || ('`, `" || true || "`, `\`, `\"`, "a\nb", "\x00", `doc.a == doc.a`,
		`true`, `1 == 1`, `' OR '1'='1`, "💥", `${jndi:x}`, `{"$ne": null}`, "`", `.`, `*`,
	}
	for _, p := range payloads {
		for _, op := range []Operator{OpEqual, OpNotEqual, OpIn, OpArrayContains} {
			var v any = p
			if op == OpIn {
				v = []any{p}
			}
			c, err := e.Compile(Criterion{Filters: []Filter{{Field: "name", Op: op, Value: v}}})
			if err != nil {
				t.Fatalf("%q %s: %v", p, op, err)
			}
			other := map[string]any{"name": "someone else", "list": []any{"x"}}
			same := map[string]any{"name": p}
			switch op {
			case OpEqual, OpIn:
				if c.Match(other, "") || !c.Match(same, "") {
					t.Errorf("%s %q: matched the wrong documents", op, p)
				}
			case OpNotEqual:
				if !c.Match(other, "") || c.Match(same, "") {
					t.Errorf("!= %q: matched the wrong documents", p)
				}
			case OpArrayContains:
				if c.Match(other, "") || !c.Match(map[string]any{"name": []any{p}}, "") {
					t.Errorf("array-contains %q: matched the wrong documents", p)
				}
			}
		}
	}
}

func TestFilterEvalDoesNotAllocate(t *testing.T) {
	e := newTestEngine(t)
	d := mustDoc(t, `{"status": "open", "n": 3, "tags": ["a", "b"], "o": {"p": 1}}`)
	for _, f := range []string{`["status", "==", "open"]`, `["n", ">", 1]`, `["tags", "array-contains", "b"]`,
		`["o.p", "in", [0, 1]]`, `["status", "not-in", ["closed"]]`, `["tags", "==", ["a", "b"]]`} {
		c, err := e.Compile(Criterion{Filters: mustFilters(t, "["+f+"]")})
		if err != nil {
			t.Fatal(err)
		}
		if n := testing.AllocsPerRun(100, func() { c.Match(d, "") }); n != 0 {
			t.Errorf("%s: %v allocs per evaluation", f, n)
		}
	}
}

func TestCompileCanonicalKeys(t *testing.T) {
	e := newTestEngine(t)
	key := func(cr Criterion) string {
		c, err := e.Compile(cr)
		if err != nil {
			t.Fatal(err)
		}
		return c.Key()
	}
	a := key(Criterion{Filters: mustFilters(t, `[["a", "==", 1], ["b", "in", ["x"]]]`)})
	b := key(Criterion{Filters: mustFilters(t, `[["b", "in", ["x"]], ["a", "==", 1.0]]`)})
	if a != b {
		t.Errorf("reordered filters: %q != %q", a, b)
	}
	if key(Criterion{Filters: mustFilters(t, `[["o", "==", {"x": 1, "y": 2}]]`)}) != key(Criterion{Filters: mustFilters(t, `[["o", "==", {"y": 2, "x": 1}]]`)}) {
		t.Error("object key order changed the key")
	}
	if key(Criterion{CEL: "doc.a  ==  1"}) != key(Criterion{CEL: "doc.a == 1"}) {
		t.Error("whitespace changed a CEL key")
	}
	if key(Criterion{Filters: mustFilters(t, `[["a", "==", "1"]]`)}) == key(Criterion{Filters: mustFilters(t, `[["a", "==", 1]]`)}) {
		t.Error("string and number share a key")
	}
	if key(Criterion{DocumentID: "x"}) == key(Criterion{}) {
		t.Error("document id and everything share a key")
	}
}
