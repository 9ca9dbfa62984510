package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/streamerd/streamer/internal/testbin"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/streamerd/streamer/internal/redistest"
	"github.com/streamerd/streamer/internal/testwait"
	streamerv1 "github.com/streamerd/streamer/proto/streamer/v1"
)

// serveProcess is a running `streamer serve`.
type serveProcess struct {
	cmd       *exec.Cmd
	grpcAddr  string
	httpAddr  string
	logs      *strings.Builder // stderr so far
	logsMu    *sync.Mutex
	exited    chan error
	waited    chan struct{} // closed once Wait returned (exited holds its error for one reader)
	readerEnd sync.WaitGroup
}

// startServe runs `streamer serve` on free loopback ports with JSON logs
// and waits for its "listening" log line.
func startServe(t *testing.T, exe string, env []string, args ...string) *serveProcess {
	t.Helper()
	cmd := exec.Command(exe, append([]string{"serve", "--grpc", "127.0.0.1:0", "--http", "127.0.0.1:0", "--log-format", "json"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &serveProcess{cmd: cmd, logs: &strings.Builder{}, logsMu: &sync.Mutex{}, exited: make(chan error, 1), waited: make(chan struct{})}
	listening := make(chan map[string]any, 1)
	p.readerEnd.Go(func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.logsMu.Lock()
			p.logs.WriteString(sc.Text() + "\n")
			p.logsMu.Unlock()
			var rec map[string]any
			if json.Unmarshal(sc.Bytes(), &rec) == nil && rec["msg"] == "listening" {
				listening <- rec
			}
		}
	})
	go func() {
		p.readerEnd.Wait()
		err := cmd.Wait()
		close(p.waited)
		p.exited <- err
	}()
	t.Cleanup(func() {
		select {
		case <-p.waited:
		default:
			_ = cmd.Process.Kill()
			<-p.waited
		}
	})
	select {
	case rec := <-listening:
		p.grpcAddr, _ = rec["grpc_addr"].(string)
		p.httpAddr, _ = rec["http_addr"].(string)
	case err := <-p.exited:
		t.Fatalf("serve exited before listening: %v\n%s", err, p.stderr())
	case <-time.After(20 * time.Second):
		t.Fatalf("serve did not log its listening addresses\n%s", p.stderr())
	}
	return p
}

func (p *serveProcess) stderr() string {
	p.logsMu.Lock()
	defer p.logsMu.Unlock()
	return p.logs.String()
}

// get fetches an admin URL path.
// waitReady waits until /readyz answers 200.
func (p *serveProcess) waitReady(t *testing.T, what string) {
	t.Helper()
	testwait.ForState(t, what, func() (bool, any) {
		code, body := p.get(t, "/readyz")
		return code == 200, fmt.Sprintf("/readyz %d %q\n%s", code, body, p.stderr())
	})
}

func (p *serveProcess) get(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + p.httpAddr + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestServeBinary(t *testing.T) {
	exe := testbin.Streamer(t)

	t.Run("serves and stops cleanly on SIGTERM", func(t *testing.T) {
		p := startServe(t, exe, []string{"STREAMER_AUTH_TOKEN=tok"}, "--partitions", "4")
		if code, body := p.get(t, "/healthz"); code != 200 || strings.TrimSpace(body) != "ok" {
			t.Fatalf("/healthz = %d %q", code, body)
		}
		p.waitReady(t, "/readyz 200")

		// The token from the environment is enforced on gRPC.
		conn, err := grpc.NewClient(p.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ingest := streamerv1.NewIngestClient(conn)
		ev := &streamerv1.ChangeEvent{EventId: "e1", Tenant: "t", Collection: "c", DocumentId: "d",
			Operation: streamerv1.Operation_OPERATION_CREATE, Document: []byte(`{"a":1}`)}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := ingest.Publish(ctx, &streamerv1.PublishRequest{Events: []*streamerv1.ChangeEvent{ev}}); status.Code(err) != codes.Unauthenticated {
			t.Fatalf("Publish without token: %v, want Unauthenticated", err)
		}
		resp, err := ingest.Publish(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer tok"),
			&streamerv1.PublishRequest{Events: []*streamerv1.ChangeEvent{ev}})
		if err != nil || resp.GetResults()[0].GetError() != nil {
			t.Fatalf("Publish with token: %v %v", resp, err)
		}

		code, metrics := p.get(t, "/metrics")
		for _, want := range []string{`streamer_publish_events_total{result="appended"} 1`, "streamer_partitions_owned 4", "streamer_sessions 0"} {
			if code != 200 || !strings.Contains(metrics, want) {
				t.Errorf("/metrics (%d) lacks %q", code, want)
			}
		}

		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-p.exited:
			if err != nil {
				t.Fatalf("exit after SIGTERM: %v\n%s", err, p.stderr())
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("serve still running 10s after SIGTERM\n%s", p.stderr())
		}
		logs := p.stderr()
		for _, want := range []string{`"msg":"node shutting down"`, `"msg":"stopped"`} {
			if !strings.Contains(logs, want) {
				t.Errorf("logs lack %s:\n%s", want, logs)
			}
		}
	})

	t.Run("warns loudly without a token", func(t *testing.T) {
		p := startServe(t, exe, nil)
		testwait.ForState(t, "an authentication warning", func() (bool, any) {
			logs := p.stderr()
			return strings.Contains(logs, "AUTHENTICATION IS OFF"), logs
		})
		if err := p.cmd.Process.Signal(syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		if err := <-p.exited; err != nil {
			t.Fatalf("exit after SIGINT: %v", err)
		}
	})

	t.Run("joins a Redis pool and refuses a partition count that disagrees", func(t *testing.T) {
		srv := redistest.Start(t)
		p := startServe(t, exe, nil, "--redis", srv.URL(), "--partitions", "4", "--lease-ttl", "1s", "--node-id", "n1")
		p.waitReady(t, "/readyz 200")
		if logs := p.stderr(); !strings.Contains(logs, `"mode":"redis"`) || !strings.Contains(logs, `"pool_size":"264"`) {
			t.Errorf("logs lack redis mode or the default pool size:\n%s", logs)
		}
		testwait.ForState(t, "the pool metrics", func() (bool, any) {
			_, metrics := p.get(t, "/metrics")
			for _, want := range []string{"streamer_partitions_owned 4", `streamer_lease_changes_total{change="acquired"} 4`,
				`streamer_redis_errors_total{kind="io"} 0`, `streamer_redis_errors_total{kind="reply"} 0`, "streamer_backend_up 1", `streamer_partition_pending_entries{partition="3"} 0`,
				`streamer_partition_lag_entries{partition="3"} 0`, "streamer_outbox_entries 0"} {
				if !strings.Contains(metrics, want) {
					return false, fmt.Sprintf("/metrics lacks %q:\n%s", want, metrics)
				}
			}
			return true, nil
		})

		out, err := exec.Command(exe, "serve", "--redis", srv.URL(), "--partitions", "8", "--grpc", "127.0.0.1:0", "--http", "127.0.0.1:0").CombinedOutput()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(string(out), "--partitions 8 disagrees with the pool") ||
			!strings.Contains(string(out), "records 4 partitions") {
			t.Fatalf("mismatched --partitions: err %v, output %q", err, out)
		}

		// Redis going away makes the node unready, and ready again when it is back.
		srv.Kill()
		testwait.ForState(t, "/readyz 503 with Redis down", func() (bool, any) {
			code, body := p.get(t, "/readyz")
			return code == 503 && strings.Contains(body, "backend unreachable"), fmt.Sprintf("/readyz %d %q\n%s", code, body, p.stderr())
		})
		srv.Restart()
		p.waitReady(t, "/readyz 200 after Redis came back")
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if err := <-p.exited; err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, p.stderr())
		}
	})

	t.Run("unreachable Redis", func(t *testing.T) {
		out, err := exec.Command(exe, "serve", "--redis", "redis://127.0.0.1:1", "--grpc", "127.0.0.1:0", "--http", "127.0.0.1:0").CombinedOutput()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(string(out), "--redis redis://127.0.0.1:1") {
			t.Fatalf("err %v, output %q", err, out)
		}
	})

	t.Run("embedded puller with an unreachable MongoDB", func(t *testing.T) {
		p := startServe(t, exe, nil, "--mongo", "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=500", "--mongo-db", "app")
		if code, body := p.get(t, "/healthz"); code != 200 || strings.TrimSpace(body) != "ok" {
			t.Fatalf("/healthz = %d %q", code, body)
		}
		// The node serves; the puller's failure shows in /metrics and the log.
		testwait.ForState(t, "the puller's failure in /metrics and the log, with the node ready", func() (bool, any) {
			rc, _ := p.get(t, "/readyz")
			_, metrics := p.get(t, "/metrics")
			logs := p.stderr()
			return rc == 200 && strings.Contains(metrics, `streamer_puller_errors_total{kind="stream"}`) &&
				strings.Contains(metrics, "streamer_puller_leader 1") && strings.Contains(metrics, "streamer_partitions_owned 16") &&
				strings.Contains(logs, `"level":"WARN","msg":"change stream failed: reopening it from the checkpoint"`) &&
				strings.Contains(logs, "connection refused"), fmt.Sprintf("/readyz %d\n%s\nlogs:\n%s", rc, metrics, logs)
		})
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-p.exited:
			if err != nil {
				t.Fatalf("exit after SIGTERM: %v\n%s", err, p.stderr())
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("serve still running 10s after SIGTERM\n%s", p.stderr())
		}
	})

	t.Run("embedded puller stopping for good ends the node", func(t *testing.T) {
		// A server the driver takes for a standalone mongod: $changeStream
		// fails with 40573, which retrying cannot fix.
		m := startFakeMongod(t)
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, exe, "serve", "--grpc", "127.0.0.1:0", "--http", "127.0.0.1:0",
			"--mongo", "mongodb://"+m.addr()+"/app?serverSelectionTimeoutMS=2000").CombinedOutput()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 {
			t.Fatalf("serve with a fatal puller error: err %v, want exit status 1; output:\n%s", err, out)
		}
		for _, want := range []string{"EMBEDDED PULLER STOPPED", "node shutting down",
			`streamer serve: embedded puller "default" stopped: puller: change stream failed and retrying cannot help`,
			"only supported on replica sets"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
		if n := m.aggregates(); n != 1 {
			t.Errorf("the puller sent %d aggregates, want 1 (no retry of a permanent error)", n)
		}
	})

	t.Run("help", func(t *testing.T) {
		out, err := exec.Command(exe, "serve", "--help").CombinedOutput()
		if err != nil {
			t.Fatalf("--help: %v", err)
		}
		for _, want := range []string{"Usage: streamer serve", "-grpc", "-redis", "STREAMER_AUTH_TOKEN", "-gateway-ttl", "-lease-ttl", "pool_size", "-dedup-size",
			"-mongo URI", "-mongo-db", "-mongo-collections", "-puller-name", "-start-from-now", "serve exits with status 1"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("--help lacks %q:\n%s", want, out)
			}
		}
	})
}

// TestSecretsFromFilesAndMetricsToken: the auth token and the metrics token
// come from files (kept out of ps); /metrics needs its token; a token given
// both ways is refused.
func TestSecretsFromFilesAndMetricsToken(t *testing.T) {
	exe := testbin.Streamer(t)
	dir := t.TempDir()
	authFile, metricsFile := filepath.Join(dir, "auth"), filepath.Join(dir, "metrics")
	if err := os.WriteFile(authFile, []byte("tok-from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(metricsFile, []byte("m3trics"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startServe(t, exe, nil, "--partitions", "2", "--auth-token-file", authFile, "--metrics-token-file", metricsFile)
	if code, _ := p.get(t, "/metrics"); code != http.StatusUnauthorized {
		t.Errorf("/metrics without its token: %d, want 401", code)
	}
	req, _ := http.NewRequest("GET", "http://"+p.httpAddr+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer m3trics")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), "streamer_partitions_owned") {
		t.Errorf("/metrics with its token: %d", resp.StatusCode)
	}
	if code, _ := p.get(t, "/healthz"); code != 200 {
		t.Errorf("/healthz: %d, want 200 without a token", code)
	}
	ev := `{"collection":"c","id":"d","op":"create","doc":{}}`
	if r := runCLI(t, exe, ev, nil, "publish", "--addr", p.grpcAddr, "--auth-token-file", authFile); r.code != 0 {
		t.Errorf("publish with the token from its file: exit %d, %s", r.code, r.stderr)
	}
	if r := runCLI(t, exe, ev, nil, "publish", "--addr", p.grpcAddr, "--auth-token", "x", "--auth-token-file", authFile); r.code != 2 ||
		!strings.Contains(r.stderr, "give --auth-token or --auth-token-file, not both") {
		t.Errorf("publish with both: exit %d, %s", r.code, r.stderr)
	}
}
