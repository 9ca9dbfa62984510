package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// runCmd runs the streamer command line in-process and returns exit code, stdout and
// stderr.
func runCmd(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, stdio{in: strings.NewReader(stdin), out: &out, err: &errb})
	return code, out.String(), errb.String()
}

func TestMatchCommandLineContract(t *testing.T) {
	cases := []struct {
		name, in, want string
	}{
		{"filter match", `{"doc": {"a": 1}, "filters": [{"field": "a", "op": "==", "value": 1}]}`, `{"match":true}`},
		{"filter no match", `{"doc": {"a": 1}, "filters": [{"field": "a", "op": ">", "value": 1}]}`, `{"match":false}`},
		{"triple form", `{"doc": {"tags": ["x"]}, "filters": [["tags", "array-contains", "x"]]}`, `{"match":true}`},
		{"single filter object", `{"doc": {"a": 1}, "filters": {"field": "a", "op": "!=", "value": 2}}`, `{"match":true}`},
		{"cel", `{"doc": {"a": 1}, "cel": "doc.a == 1"}`, `{"match":true}`},
		{"cel with id", `{"doc": {}, "cel": "id == 'k'", "id": "k"}`, `{"match":true}`},
		{"cel error is no match", `{"doc": {}, "cel": "doc.a == 1"}`, `{"match":false}`},
		{"no criterion matches everything", `{"doc": {"a": 1}}`, `{"match":true}`},
		{"empty filters match everything", `{"doc": {"a": 1}, "filters": []}`, `{"match":true}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, out, stderr := runCmd(t, tc.in+"\n", "match")
			if code != 0 || strings.TrimSpace(out) != tc.want {
				t.Fatalf("exit %d, stdout %q (stderr %q); want %s", code, out, stderr, tc.want)
			}
		})
	}
}

func TestMatchCommandErrorsDoNotStopProcessing(t *testing.T) {
	in := strings.Join([]string{
		`{"doc": [1, 2], "filters": []}`,
		`{"doc": {"a": 1}, "filters": [{"field": "a", "op": "=~", "value": 1}]}`,
		`not json`,
		``,
		`{"doc": {"a": 1}, "cel": "doc.a"}`,
		`{"doc": {"a": 1}, "cel": "doc.a ==", "filters": []}`,
		`{"doc": {"a": 1}, "filters": [["a", "in", []]]}`,
		`{"filters": []}`,
		`{"doc": {"a": 1}, "filters": [["a", "==", 1]], "cel": "true"}`,
		`{"doc": {"a": 1}, "filtrs": [["a", "==", 2]]}`,
		`{"doc": {"a": 1}, "filters": [{"field": "a", "op": "==", "valeu": 2}]}`,
		`{"doc": {"l": [1]}, "cel": "doc.l.all(i, (doc.s + doc.s + doc.s + doc.s + doc.s + doc.s + doc.s + doc.s).size() > 0)"}`,
		`{"doc": {"a": 2}, "filters": [["a", "==", 2]]}`,
	}, "\n")
	code, out, _ := runCmd(t, in, "match")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	wantPrefixes := []string{
		`{"error":"match: document is not a JSON object`,
		`{"error":"match: invalid filter: filter 0 (field \"a\", op \"=~\"): unknown operator`,
		`{"error":"line is not one JSON object`,
		`{"error":"match: invalid CEL expression: expression must evaluate to bool`,
		`{"error":"match: invalid CEL expression: `,
		`{"error":"match: invalid filter: filter 0 (field \"a\", op \"in\"): value list is empty`,
		`{"error":"\"doc\" is missing`,
		`{"error":"match: invalid criterion: set only one of`,
		`{"error":"line is not one JSON object with \"doc\" and \"filters\", \"cel\" or \"id\": json: unknown field \"filtrs\""}`,
		`{"error":"match: invalid filter: filters: filter object: json: unknown field \"valeu\" (want \"field\", \"op\" and \"value\")"}`,
		`{"error":"match: invalid CEL expression: its estimated cost on a document of 1048576 bytes is 3,848,315,863,043, over the limit of 100,000,000`,
		`{"match":true}`,
	}
	if len(lines) != len(wantPrefixes) {
		t.Fatalf("%d output lines for %d non-blank inputs:\n%s", len(lines), len(wantPrefixes), out)
	}
	for i, p := range wantPrefixes {
		if !strings.HasPrefix(lines[i], p) {
			t.Errorf("line %d = %s, want prefix %s", i+1, lines[i], p)
		}
	}
}

func TestMatchCommandRejectsArguments(t *testing.T) {
	if code, _, _ := runCmd(t, "", "match", "extra"); code != 2 {
		t.Fatalf("exit %d, want 2", code)
	}
	if code, _, stderr := runCmd(t, "", "match", "--help"); code != 0 || !strings.Contains(stderr, "array-contains-any") {
		t.Fatalf("--help: exit %d, %q", code, stderr)
	}
}
