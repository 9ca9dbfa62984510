package gateway_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"github.com/streamerd/streamer/internal/testbin"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromiumPath is where Debian's chromium package installs the browser.
const chromiumPath = "/usr/bin/chromium"

// TestBrowserDemo is the whole path from a real browser: it builds the
// streamer binary, runs `streamer serve` and `streamer gateway
// --insecure-no-auth` as processes, opens the demo page in headless
// Chromium, subscribes with a CEL expression and a snapshot (the document
// published before shows as an initial row), publishes with `streamer
// publish`, and waits for the page to show the events with their op.
func TestBrowserDemo(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("the browser test needs Chromium at %s: install chromium (apt-get install -y chromium): %v", chromiumPath, err)
	}
	exe := testbin.Streamer(t)
	serve := startProcess(t, exe, "serve", "--grpc", "127.0.0.1:0", "--http", "127.0.0.1:0", "--partitions", "4", "--log-format", "json")
	grpcAddr := serve.listening["grpc_addr"]
	gw := startProcess(t, exe, "gateway", "--addr", grpcAddr, "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0",
		"--insecure-no-auth", "--insecure-tenant", "demo", "--log-format", "json")
	if logs := gw.stderr(); !strings.Contains(logs, "AUTHENTICATION DISABLED") {
		t.Fatalf("--insecure-no-auth is not logged loudly:\n%s", logs)
	}
	page := "http://" + gw.listening["listen_addr"] + "/"
	admin := "http://" + gw.listening["http_addr"]

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	browser, cancelBrowser := chromedp.NewContext(allocCtx, chromedp.WithErrorf(t.Logf))
	defer cancelBrowser()
	// The first Do starts the browser for browser's lifetime; the actions
	// then run under a deadline of their own.
	if err := chromedp.Do(browser); err != nil {
		t.Fatalf("starting %s: %v", chromiumPath, err)
	}
	ctx, cancel := context.WithTimeout(browser, 60*time.Second)
	defer cancel()

	// o0 exists before the page subscribes: the snapshot shows it.
	publish(t, exe, grpcAddr, `{"event_id":"b0","tenant":"demo","collection":"orders","id":"o0","op":"create","doc":{"total":500,"who":"before"}}`)
	if err := chromedp.Do(ctx,
		chromedp.Navigate(page),
		chromedp.WaitVisible(chromedp.CSS(`#status[data-state="open"]`)),
		chromedp.SetValue(chromedp.CSS(`#collection`), "orders"),
		chromedp.SetValue(chromedp.CSS(`#kind`), "cel"),
		chromedp.SetValue(chromedp.CSS(`#criterion`), `doc.total > 100.0`),
		chromedp.Click(chromedp.CSS(`#subscribe`)),
		chromedp.WaitVisible(chromedp.CSS(`#subs li[data-state="subscribed"]`)),
	); err != nil {
		t.Fatalf("subscribing on the demo page: %v\ngateway logs:\n%s", err, gw.stderr())
	}

	// b1 does not match and, being in the same partition, would be shown
	// before b2; b3 makes the document leave the result (op delete).
	publish(t, exe, grpcAddr,
		`{"event_id":"b1","tenant":"demo","collection":"orders","id":"o1","op":"create","doc":{"total":5}}`,
		`{"event_id":"b2","tenant":"demo","collection":"orders","id":"o2","op":"create","doc":{"total":150,"who":"browser"}}`,
		`{"event_id":"b3","tenant":"demo","collection":"orders","id":"o2","op":"update","before":{"total":150},"doc":{"total":1},"changed":["total"]}`,
	)
	// WaitVisible polls the DOM until the row appears or ctx's deadline.
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(`#events tr[data-event-id="b3"][data-op="delete"]`))); err != nil {
		t.Fatalf("waiting for the events on the page: %v\ngateway logs:\n%s", err, gw.stderr())
	}
	initial, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`#events tr[data-doc-id="o0"][data-op="snapshot"] td.doc`)))
	if err != nil || !strings.Contains(initial, `"who":"before"`) {
		t.Fatalf("the snapshot row shows %q (%v)", initial, err)
	}
	if end, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`#events tr.snapshot-end`))); err != nil || !strings.Contains(end, "1 current document;") {
		t.Fatalf("the snapshot's end row shows %q (%v)", end, err)
	}
	created, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`#events tr[data-event-id="b2"][data-op="create"] td.doc`)))
	if err != nil || !strings.Contains(created, `"who":"browser"`) {
		t.Fatalf("the created event's row shows %q (%v)", created, err)
	}
	b1Rows, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('#events tr[data-event-id="b1"]').length`))
	if err != nil || b1Rows != 0 {
		t.Fatalf("the page shows %d rows of the non-matching event (%v)", b1Rows, err)
	}

	metrics := get(t, admin+"/metrics")
	for _, want := range []string{
		`streamer_gateway_connections{transport="ws"} 1`,
		"streamer_gateway_client_subscriptions 1",
		"streamer_gateway_upstream_subscriptions 1",
	} {
		if !strings.Contains(metrics, want+"\n") {
			t.Errorf("gateway metrics lack %q", want)
		}
	}
	if body := get(t, admin+"/readyz"); strings.TrimSpace(body) != "ready" {
		t.Errorf("/readyz = %q", body)
	}

	if err := chromedp.Cancel(browser); err != nil {
		t.Errorf("closing the browser: %v", err)
	}
	gw.stop(t)
	serve.stop(t)
}

// process is a running streamer subcommand with JSON logs on stderr.
type process struct {
	cmd       *exec.Cmd
	listening map[string]string // attributes of its "listening" log line
	mu        sync.Mutex
	logs      strings.Builder
	exited    chan error
}

// startProcess runs exe with args and waits for its "listening" log line.
func startProcess(t *testing.T, exe string, args ...string) *process {
	t.Helper()
	cmd := exec.Command(exe, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &process{cmd: cmd, exited: make(chan error, 1)}
	listening := make(chan map[string]string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.mu.Lock()
			p.logs.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
			var rec map[string]any
			if json.Unmarshal(sc.Bytes(), &rec) == nil && rec["msg"] == "listening" {
				attrs := map[string]string{}
				for k, v := range rec {
					attrs[k] = fmt.Sprint(v)
				}
				listening <- attrs
			}
		}
		p.exited <- cmd.Wait() // after stderr is drained, as Wait requires
	}()
	t.Cleanup(func() { p.stop(t) })
	select {
	case p.listening = <-listening:
	case err := <-p.exited:
		p.exited <- err
		t.Fatalf("%s exited before listening: %v\n%s", args[0], err, p.stderr())
	case <-time.After(waitLimit):
		t.Fatalf("%s did not log its listening addresses within %v\n%s", args[0], waitLimit, p.stderr())
	}
	return p
}

func (p *process) stderr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}

// stop sends SIGTERM and expects a clean exit; it kills the process after
// waitLimit. Idempotent.
func (p *process) stop(t *testing.T) {
	t.Helper()
	if p.cmd.ProcessState != nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.exited:
		if err != nil {
			t.Errorf("%s: exit after SIGTERM: %v\n%s", p.cmd.Args[1], err, p.stderr())
		}
	case <-time.After(waitLimit):
		_ = p.cmd.Process.Kill()
		<-p.exited
		t.Errorf("%s did not stop within %v of SIGTERM\n%s", p.cmd.Args[1], waitLimit, p.stderr())
	}
}

// publish runs `streamer publish` with lines on stdin.
func publish(t *testing.T, exe, addr string, lines ...string) {
	t.Helper()
	cmd := exec.Command(exe, "publish", "--addr", addr)
	cmd.Stdin = strings.NewReader(strings.Join(lines, "\n") + "\n")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("streamer publish: %v\n%s", err, out)
	}
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
