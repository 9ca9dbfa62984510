package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestLineReader(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		max  int
		want []string // "!" marks a line reported too long
	}{
		{"lines with and without final newline", "a\nbb\r\n\nccc", 10, []string{"a", "bb", "", "ccc"}},
		{"empty input", "", 10, nil},
		{"a line over the limit is skipped, the next is read", "short\n" + strings.Repeat("x", 50) + "\nafter\n", 10,
			[]string{"short", "!", "after"}},
		{"an overlong last line without newline", "ok\n" + strings.Repeat("y", 100), 10, []string{"ok", "!"}},
		{"exactly the limit", strings.Repeat("z", 10) + "\n", 10, []string{strings.Repeat("z", 10)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lr := newLineReader(strings.NewReader(tc.in), tc.max)
			var got []string
			for i := 1; ; i++ {
				line, n, err := lr.next()
				if errors.Is(err, io.EOF) {
					break
				}
				if n != i {
					t.Fatalf("line number %d, want %d", n, i)
				}
				switch {
				case errors.Is(err, errLineTooLong):
					got = append(got, "!")
				case err != nil:
					t.Fatal(err)
				default:
					got = append(got, string(line))
				}
			}
			if strings.Join(got, "|") != strings.Join(tc.want, "|") || len(got) != len(tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestLineReaderLongerThanItsBuffer(t *testing.T) {
	long := strings.Repeat("L", 200<<10) // several bufio buffers
	lr := newLineReader(strings.NewReader(long+"\nnext\n"), 1<<20)
	if line, _, err := lr.next(); err != nil || string(line) != long {
		t.Fatalf("long line: %d bytes, %v", len(line), err)
	}
	if line, n, err := lr.next(); err != nil || string(line) != "next" || n != 2 {
		t.Fatalf("next: %q %d %v", line, n, err)
	}
}

func TestPublishAndWatchUsage(t *testing.T) {
	for _, tc := range []struct {
		name string
		run  func(context.Context, []string, stdio) error
		args []string
		want string
	}{
		{"publish: bad batch", runPublish, []string{"--batch", "0"}, "--batch and --timeout must be positive"},
		{"watch: no collection", runWatch, []string{"--tenant", "t"}, "--collection is required"},
		{"watch: two criteria", runWatch, []string{"--collection", "c", "--doc", "d", "--cel", "true"}, "at most one of"},
		{"watch: filters not JSON", runWatch, []string{"--collection", "c", "--filters", "{"}, "--filters: want a JSON list"},
		{"watch: filters not a list of filters", runWatch, []string{"--collection", "c", "--filters", `[{"field":"a","op":"=="}]`}, "no \"value\""},
		{"watch: negative count", runWatch, []string{"--collection", "c", "--count", "-1"}, "must not be negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var errOut bytes.Buffer
			err := tc.run(context.Background(), tc.args, stdio{in: strings.NewReader(""), out: io.Discard, err: &errOut})
			if !errors.Is(err, errUsage) || !strings.Contains(errOut.String(), tc.want) {
				t.Fatalf("err %v, stderr %q; want usage error mentioning %q", err, errOut.String(), tc.want)
			}
		})
	}
}
