package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/streamerd/streamer/internal/testbin"

	"github.com/streamerd/streamer/client"
)

// cliWait bounds each command run by these tests.
const cliWait = 30 * time.Second

// cliRun is a finished command.
type cliRun struct {
	stdout, stderr string
	code           int
}

// runCLI runs the binary with stdin and extra environment to completion.
func runCLI(t *testing.T, exe, stdin string, env []string, args ...string) cliRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cliWait)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	code := 0
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		t.Fatalf("%v: %v", args, err)
	}
	return cliRun{stdout: out.String(), stderr: errOut.String(), code: code}
}

// watchProcess is a running `streamer watch`.
type watchProcess struct {
	cmd        *exec.Cmd
	stdout     bytes.Buffer
	stderrMu   sync.Mutex
	stderr     strings.Builder
	subscribed chan string // the "subscribed <id>" line
	done       chan error
	waited     chan struct{} // closed once Wait returned (done holds its error for one reader)
}

// startWatch starts `streamer watch` and waits until it printed
// "subscribed <id>".
func startWatch(t *testing.T, exe string, env []string, args ...string) *watchProcess {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cliWait)
	t.Cleanup(cancel)
	w := &watchProcess{subscribed: make(chan string, 1), done: make(chan error, 1), waited: make(chan struct{})}
	w.cmd = exec.CommandContext(ctx, exe, append([]string{"watch"}, args...)...)
	w.cmd.Env = append(os.Environ(), env...)
	w.cmd.Stdout = &w.stdout
	pipe, err := w.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var readers sync.WaitGroup
	readers.Go(func() {
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			w.stderrMu.Lock()
			w.stderr.WriteString(sc.Text() + "\n")
			w.stderrMu.Unlock()
			if id, ok := strings.CutPrefix(sc.Text(), "subscribed "); ok {
				w.subscribed <- id
			}
		}
	})
	go func() {
		readers.Wait()
		err := w.cmd.Wait()
		close(w.waited)
		w.done <- err
	}()
	t.Cleanup(func() {
		select {
		case <-w.waited:
		default:
			_ = w.cmd.Process.Kill()
			<-w.waited
		}
	})
	select {
	case <-w.subscribed:
	case err := <-w.done:
		t.Fatalf("watch exited before subscribing: %v\n%s", err, w.errText())
	case <-time.After(cliWait):
		t.Fatalf("watch did not print \"subscribed <id>\"\n%s", w.errText())
	}
	return w
}

func (w *watchProcess) errText() string {
	w.stderrMu.Lock()
	defer w.stderrMu.Unlock()
	return w.stderr.String()
}

// wait waits for the watch to exit and returns its exit code.
func (w *watchProcess) wait(t *testing.T) int {
	t.Helper()
	select {
	case err := <-w.done:
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return exit.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	case <-time.After(cliWait):
		t.Fatalf("watch did not exit\n%s", w.errText())
		return -1
	}
}

func TestPublishWatchBinary(t *testing.T) {
	exe := testbin.Streamer(t)
	node := startServe(t, exe, []string{"STREAMER_AUTH_TOKEN=tok"}, "--partitions", "2")
	addr := node.grpcAddr
	auth := []string{"STREAMER_AUTH_TOKEN=tok"} // the shared env var works for every command

	t.Run("watch prints the events publish sends", func(t *testing.T) {
		w := startWatch(t, exe, auth, "--addr", addr, "--tenant", "t1", "--collection", "users",
			"--filters", `[{"field":"age","op":">=","value":18}]`, "--count", "2", "--timeout", "20s")
		events := strings.Join([]string{
			`{"event_id":"e1","tenant":"t1","collection":"users","id":"u1","op":"create","doc":{"age":30,"name":"Ada & co"},"ts":1714564800123}`,
			`{"event_id":"e2","tenant":"t1","collection":"users","id":"u2","op":"create","doc":{"age":9}}`,
			`{"event_id":"e3","tenant":"t2","collection":"users","id":"u3","op":"create","doc":{"age":40}}`,
			``,
			`{"tenant":"t1","collection":"users","id":"u1","op":"update","doc":{"age":12},"before":{"age":30},"changed":["age"]}`,
		}, "\n") + "\n"
		pub := runCLI(t, exe, events, nil, "publish", "--addr", addr, "--auth-token", "tok", "--batch", "2")
		if pub.code != 0 || !strings.Contains(pub.stderr, "4 events published") || pub.stdout != "" {
			t.Fatalf("publish: exit %d, stdout %q, stderr %q", pub.code, pub.stdout, pub.stderr)
		}
		if code := w.wait(t); code != 0 {
			t.Fatalf("watch exit %d\n%s", code, w.errText())
		}
		lines := strings.Split(strings.TrimSpace(w.stdout.String()), "\n")
		if len(lines) != 2 {
			t.Fatalf("watch printed %d lines, want 2:\n%s", len(lines), w.stdout.String())
		}
		var first, second client.MatchJSON
		if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
			t.Fatalf("line 1 %q: %v", lines[0], err)
		}
		if err := json.Unmarshal([]byte(lines[1]), &second); err != nil {
			t.Fatalf("line 2 %q: %v", lines[1], err)
		}
		if first.EventID != "e1" || first.Op != "create" || first.ID != "u1" || first.Tenant != "t1" ||
			first.Collection != "users" || string(first.Doc) != `{"age":30,"name":"Ada & co"}` || first.TS != 1714564800123 ||
			len(first.Subs) != 1 || first.Subs[0] != "watch" || first.Cursor == "" {
			t.Errorf("first line: %s", lines[0])
		}
		// u1 left the result set: the effective operation is delete, the
		// event id was generated and the timestamp set to now.
		if !strings.HasPrefix(second.EventID, "pub-") || second.Op != "delete" || second.ID != "u1" ||
			second.TS == 0 || string(second.Before) != `{"age":30}` || second.Cursor == "" {
			t.Errorf("second line: %s", lines[1])
		}
	})

	t.Run("watch --snapshot prints the documents, the end line, then the changes after it", func(t *testing.T) {
		before := strings.Join([]string{
			`{"event_id":"s1","tenant":"t1","collection":"snap","id":"b","op":"create","doc":{"v":1},"ts":1714564800000}`,
			`{"event_id":"s2","tenant":"t1","collection":"snap","id":"a","op":"create","doc":{"v":2}}`,
			`{"event_id":"s3","tenant":"t1","collection":"snap","id":"c","op":"create","doc":{"v":3}}`,
			`{"event_id":"s4","tenant":"t1","collection":"snap","id":"c","op":"delete"}`,
			`{"event_id":"s5","tenant":"t1","collection":"snap","id":"b","op":"update","doc":{"v":10},"ts":1714564800999}`,
		}, "\n")
		if pub := runCLI(t, exe, before, auth, "publish", "--addr", addr); pub.code != 0 {
			t.Fatalf("publish: exit %d, stderr %q", pub.code, pub.stderr)
		}
		w := startWatch(t, exe, auth, "--addr", addr, "--tenant", "t1", "--collection", "snap", "--snapshot", "--count", "1", "--timeout", "20s")
		after := `{"event_id":"s6","tenant":"t1","collection":"snap","id":"a","op":"update","doc":{"v":20}}`
		if pub := runCLI(t, exe, after, auth, "publish", "--addr", addr); pub.code != 0 {
			t.Fatalf("publish: exit %d, stderr %q", pub.code, pub.stderr)
		}
		if code := w.wait(t); code != 0 {
			t.Fatalf("watch exit %d\n%s", code, w.errText())
		}
		lines := strings.Split(strings.TrimSpace(w.stdout.String()), "\n")
		if len(lines) != 4 {
			t.Fatalf("watch printed %d lines, want 4:\n%s", len(lines), w.stdout.String())
		}
		var docs [2]struct {
			Op, ID, Tenant, Collection string
			EventID                    string `json:"event_id"`
			Doc                        json.RawMessage
			TS                         int64
			Subs                       []string
		}
		for i := range docs {
			if err := json.Unmarshal([]byte(lines[i]), &docs[i]); err != nil {
				t.Fatal(err)
			}
		}
		if docs[0].Op != "snapshot" || docs[0].ID != "a" || string(docs[0].Doc) != `{"v":2}` || docs[0].Tenant != "t1" || docs[0].Collection != "snap" ||
			docs[1].ID != "b" || string(docs[1].Doc) != `{"v":10}` || docs[1].EventID != "s5" || docs[1].TS != 1714564800999 || docs[1].Subs[0] != "watch" {
			t.Fatalf("snapshot lines:\n%s\n%s", lines[0], lines[1])
		}
		var end struct {
			SnapshotEnd bool   `json:"snapshot_end"`
			Documents   int    `json:"documents"`
			Position    string `json:"position"`
		}
		if err := json.Unmarshal([]byte(lines[2]), &end); err != nil || !end.SnapshotEnd || end.Documents != 2 || end.Position == "" {
			t.Fatalf("end line %s: %v", lines[2], err)
		}
		var change client.MatchJSON
		if err := json.Unmarshal([]byte(lines[3]), &change); err != nil || change.EventID != "s6" || change.Op != "update" {
			t.Fatalf("change line %s: %v", lines[3], err)
		}
	})

	t.Run("publish reports rejected and invalid lines and exits non-zero", func(t *testing.T) {
		events := strings.Join([]string{
			`{"event_id":"ok1","collection":"c","id":"d","op":"create","doc":{}}`,
			`{"event_id":"broken",`,
			`{"event_id":"nocoll","id":"d","op":"create","doc":{}}`,
			`{"event_id":"badop","collection":"c","id":"d","op":"upsert"}`,
			`{"event_id":"ok2","collection":"c","id":"d","op":"delete"}`,
		}, "\n")
		r := runCLI(t, exe, events, auth, "publish", "--addr", addr)
		if r.code != 1 {
			t.Fatalf("exit %d, want 1; stderr %q", r.code, r.stderr)
		}
		for _, want := range []string{
			"line 2: invalid event: client: event JSON: unexpected EOF",
			`line 3: event "nocoll" rejected: ERROR_CODE_INVALID_ARGUMENT:`,
			`line 4: invalid event: client: event JSON: unknown op "upsert"`,
			"2 events published, 1 rejected, 2 invalid lines",
		} {
			if !strings.Contains(r.stderr, want) {
				t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
			}
		}
	})

	t.Run("publish cuts batches by bytes and refuses an event too large alone", func(t *testing.T) {
		var lines []string
		big := strings.Repeat("x", 900<<10) // 6 of them are more than one call takes
		for i := range 6 {
			lines = append(lines, fmt.Sprintf(`{"event_id":"big%d","collection":"c","id":"d","op":"create","doc":{"s":%q}}`, i, big))
			if i == 2 {
				lines = append(lines, fmt.Sprintf(`{"event_id":"huge","collection":"c","id":"d","op":"create","doc":{"s":%q}}`, strings.Repeat("y", 5<<20)))
			}
		}
		r := runCLI(t, exe, strings.Join(lines, "\n"), auth, "publish", "--addr", addr)
		if r.code != 1 {
			t.Fatalf("exit %d, want 1; stderr %q", r.code, r.stderr)
		}
		for _, want := range []string{`line 4: event "huge" rejected: ERROR_CODE_TOO_LARGE`, "6 events published, 1 rejected, 0 invalid lines"} {
			if !strings.Contains(r.stderr, want) {
				t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
			}
		}
	})

	t.Run("publish without the token is refused", func(t *testing.T) {
		r := runCLI(t, exe, `{"collection":"c","id":"d","op":"create","doc":{}}`, nil, "publish", "--addr", addr)
		if r.code != 1 || !strings.Contains(r.stderr, "unauthenticated") {
			t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
		}
	})

	t.Run("watch with an invalid filter exits non-zero with the node's reason", func(t *testing.T) {
		r := runCLI(t, exe, "", auth, "watch", "--addr", addr, "--collection", "c", "--timeout", "20s",
			"--filters", `[{"field":"a","op":"~=","value":1}]`)
		if r.code != 1 || strings.Contains(r.stderr, "subscribed") ||
			!strings.Contains(r.stderr, "ERROR_CODE_INVALID_FILTER") || !strings.Contains(r.stderr, "unknown operator") {
			t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
		}
	})

	t.Run("watch with invalid CEL exits non-zero with the node's reason", func(t *testing.T) {
		r := runCLI(t, exe, "", auth, "watch", "--addr", addr, "--collection", "c", "--cel", "doc.a +", "--timeout", "20s")
		if r.code != 1 || !strings.Contains(r.stderr, "ERROR_CODE_INVALID_CEL") {
			t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
		}
	})

	t.Run("watch times out", func(t *testing.T) {
		r := runCLI(t, exe, "", auth, "watch", "--addr", addr, "--collection", "quiet", "--doc", "x", "--count", "1", "--timeout", "500ms")
		if r.code != 1 || !strings.Contains(r.stderr, "subscribed watch") || !strings.Contains(r.stderr, "timeout after 500ms: 0 of 1 events received") {
			t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
		}
	})

	t.Run("watch with a wrong token fails", func(t *testing.T) {
		r := runCLI(t, exe, "", nil, "watch", "--addr", addr, "--collection", "c", "--auth-token", "nope", "--timeout", "20s")
		if r.code != 1 || !strings.Contains(r.stderr, "unauthenticated") {
			t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
		}
	})

	t.Run("usage errors exit 2", func(t *testing.T) {
		if r := runCLI(t, exe, "", nil, "watch", "--addr", addr); r.code != 2 || !strings.Contains(r.stderr, "--collection is required") {
			t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
		}
	})
}
