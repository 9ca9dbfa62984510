package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/streamerd/streamer/internal/testbin"
	"github.com/streamerd/streamer/internal/testwait"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"

	"github.com/streamerd/streamer/client"
	streamerv1 "github.com/streamerd/streamer/proto/streamer/v1"
)

func TestGatewayFlags(t *testing.T) {
	jwks := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(jwks, []byte(`{"keys":[{"kty":"oct","k":"c2hvcnQ"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want error  // errors.Is; nil: any error
		text string // in stderr or the error
	}{
		{"no authentication mode", []string{"--addr", "127.0.0.1:1"}, errUsage, "exactly one of --jwt-secret, --jwt-jwks-file, --jwt-jwks-url and --insecure-no-auth"},
		{"two authentication modes", []string{"--jwt-secret", "s", "--insecure-no-auth"}, errUsage, "exactly one"},
		{"bad send queue", []string{"--insecure-no-auth", "--send-queue", "0"}, errUsage, "must be positive"},
		{"bad log level", []string{"--insecure-no-auth", "--log-level", "loud"}, errUsage, "--log-level"},
		{"unreadable JWKS", []string{"--jwt-jwks-file", filepath.Join(t.TempDir(), "missing.json")}, nil, "--jwt-jwks-file"},
		{"invalid JWKS", []string{"--jwt-jwks-file", jwks}, nil, "oct key"},
		{"unreachable JWKS URL", []string{"--jwt-jwks-url", "http://127.0.0.1:1/jwks.json"}, nil, "fetching the JWKS"},
		{"JWKS file and URL", []string{"--jwt-jwks-file", jwks, "--jwt-jwks-url", "http://127.0.0.1:1/"}, errUsage, "exactly one"},
		{"help", []string{"--help"}, flag.ErrHelp, "--insecure-no-auth"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			err := runGateway(t.Context(), tc.args, stdio{in: strings.NewReader(""), out: io.Discard, err: &stderr})
			if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if !strings.Contains(stderr.String()+err.Error(), tc.text) {
				t.Fatalf("%q not in the error %v or stderr:\n%s", tc.text, err, stderr.String())
			}
		})
	}
}

// syncBuffer collects a command's stderr and reports its "listening" line.
type syncBuffer struct {
	mu        sync.Mutex
	buf       bytes.Buffer
	partial   []byte
	listening chan map[string]any
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
	b.partial = append(b.partial, p...)
	for {
		i := bytes.IndexByte(b.partial, '\n')
		if i < 0 {
			break
		}
		var rec map[string]any
		if json.Unmarshal(b.partial[:i], &rec) == nil && rec["msg"] == "listening" {
			select {
			case b.listening <- rec:
			default:
			}
		}
		b.partial = b.partial[i+1:]
	}
	return len(p), nil
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestGatewayEndToEnd runs `streamer gateway` in-process against a
// `streamer serve` process, with the JWT secret from the environment, and
// checks a WebSocket and an SSE subscriber, the admin endpoints and a clean
// stop.
func TestGatewayEndToEnd(t *testing.T) {
	node := startServe(t, testbin.Streamer(t), nil, "--partitions", "2")
	secret := "cmd-test-secret-0123456789abcdef"
	t.Setenv("STREAMER_JWT_SECRET", secret)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rec, stderr, done := startGatewayInProcess(t, ctx, "--addr", node.grpcAddr)
	listen, _ := rec["listen_addr"].(string)
	admin, _ := rec["http_addr"].(string)
	if rec["auth"] != "jwt-hs256" {
		t.Fatalf("listening record %v, want auth jwt-hs256 from STREAMER_JWT_SECRET", rec)
	}

	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"tenant": "acme", "exp": time.Now().Add(time.Hour).Unix()}).SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	rctx, rcancel := context.WithTimeout(ctx, 20*time.Second)
	defer rcancel()

	// Without a token: 401 before upgrading.
	if _, resp, err := websocket.Dial(rctx, "ws://"+listen+"/v1/ws", nil); err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("dial without a token: %v %v", resp, err)
	}

	ws, _, err := websocket.Dial(rctx, "ws://"+listen+"/v1/ws?access_token="+tok, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	read := func() map[string]any {
		t.Helper()
		_, b, err := ws.Read(rctx)
		if err != nil {
			t.Fatalf("websocket read: %v\n%s", err, stderr)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	if err := ws.Write(rctx, websocket.MessageText, []byte(`{"type":"subscribe","id":"w","collection":"orders","filters":[{"field":"n","op":">","value":1}]}`)); err != nil {
		t.Fatal(err)
	}
	if m := read(); m["type"] != "subscribed" {
		t.Fatalf("got %v", m)
	}

	req, _ := http.NewRequestWithContext(rctx, "GET", "http://"+listen+"/v1/sse?collection=orders&doc=o2", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("SSE: %v %v", resp, err)
	}
	defer resp.Body.Close()
	sse := bufio.NewReader(resp.Body)
	sseData := func() string {
		t.Helper()
		for {
			line, err := sse.ReadString('\n')
			if err != nil {
				t.Fatalf("SSE read: %v", err)
			}
			if d, ok := strings.CutPrefix(line, "data: "); ok {
				return d
			}
		}
	}
	if d := sseData(); !strings.Contains(d, `"type":"subscribed"`) {
		t.Fatalf("SSE first message %s", d)
	}

	pub, err := client.NewPublisher(node.grpcAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	for _, line := range []string{
		`{"event_id":"c1","tenant":"acme","collection":"orders","id":"o1","op":"create","doc":{"n":1}}`,
		`{"event_id":"c2","tenant":"acme","collection":"orders","id":"o2","op":"create","doc":{"n":2}}`,
	} {
		ev, err := client.ParseEventJSON([]byte(line))
		if err != nil {
			t.Fatal(err)
		}
		if res, err := pub.Publish(rctx, []*streamerv1.ChangeEvent{ev}); err != nil || res[0].GetError() != nil {
			t.Fatalf("publish: %v %v", res, err)
		}
	}
	if m := read(); m["type"] != "event" || m["event_id"] != "c2" || m["tenant"] != "acme" {
		t.Fatalf("websocket got %v, want event c2 (c1 does not match)", m)
	}
	if d := sseData(); !strings.Contains(d, `"event_id":"c2"`) {
		t.Fatalf("SSE got %s", d)
	}

	for path, want := range map[string]string{
		"/healthz": "ok",
		"/readyz":  "ready",
		"/metrics": `streamer_gateway_connections{transport="sse"} 1`,
	} {
		r, err := http.Get("http://" + admin + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(r.Body)
		r.Body.Close()
		if r.StatusCode != http.StatusOK || !strings.Contains(string(b), want) {
			t.Fatalf("GET %s: %d, %q lacks %q", path, r.StatusCode, b, want)
		}
	}

	// Stopping closes the WebSocket with "going away" and returns nil.
	closed := make(chan error, 1)
	go func() {
		_, _, err := ws.Read(context.Background())
		closed <- err
	}()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("runGateway: %v\n%s", err, stderr)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("runGateway did not stop\n%s", stderr)
	}
	if err := <-closed; websocket.CloseStatus(err) != websocket.StatusGoingAway {
		t.Fatalf("websocket ended with %v, want 1001", err)
	}
}

// startGatewayInProcess runs `streamer gateway` in this process with args,
// on free loopback ports with JSON logs, until ctx ends. It returns the
// gateway's "listening" log record, its stderr and the channel its result
// arrives on.
func startGatewayInProcess(t *testing.T, ctx context.Context, args ...string) (map[string]any, *syncBuffer, <-chan error) {
	t.Helper()
	stderr := &syncBuffer{listening: make(chan map[string]any, 1)}
	done := make(chan error, 1)
	args = append([]string{"--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--log-format", "json"}, args...)
	go func() {
		done <- runGateway(ctx, args, stdio{in: strings.NewReader(""), out: io.Discard, err: stderr})
	}()
	select {
	case rec := <-stderr.listening:
		return rec, stderr, done
	case err := <-done:
		t.Fatalf("gateway ended before listening: %v\n%s", err, stderr)
	case <-time.After(20 * time.Second):
		t.Fatalf("gateway did not log listening\n%s", stderr)
	}
	return nil, nil, nil
}

// TestGatewayReadinessFollowsTheNode: /readyz answers 503 once the node
// behind the gateway is gone (killed), not only when the gateway stops.
func TestGatewayReadinessFollowsTheNode(t *testing.T) {
	node := startServe(t, testbin.Streamer(t), nil, "--partitions", "2")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rec, _, done := startGatewayInProcess(t, ctx, "--addr", node.grpcAddr, "--insecure-no-auth", "--insecure-tenant", "t", "--metrics-token", "m")
	admin, _ := rec["http_addr"].(string)
	readyz := func() (int, string) {
		r, err := http.Get("http://" + admin + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer r.Body.Close()
		b, _ := io.ReadAll(r.Body)
		return r.StatusCode, string(b)
	}
	if code, body := readyz(); code != http.StatusOK {
		t.Fatalf("/readyz with its node up: %d %q", code, body)
	}
	r, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusUnauthorized {
		t.Errorf("/metrics without the --metrics-token: %d, want 401", r.StatusCode)
	}
	if err := node.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	var body string
	testwait.For(t, "/readyz 503 after the node was killed", func() bool {
		var code int
		code, body = readyz()
		return code == http.StatusServiceUnavailable
	})
	if !strings.Contains(body, "no session with a streamer node") {
		t.Errorf("/readyz body %q does not say why", body)
	}
	cancel()
	<-done
}

// TestUnreachableNodeFailsFast: a gateway and a watch pointed at an address
// where no node listens give up after --dial-timeout with the reason,
// instead of retrying silently forever.
func TestUnreachableNodeFailsFast(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	stderr := &syncBuffer{listening: make(chan map[string]any, 1)}
	err = runGateway(t.Context(), []string{"--addr", addr, "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0",
		"--insecure-no-auth", "--insecure-tenant", "t", "--dial-timeout", "500ms"},
		stdio{in: strings.NewReader(""), out: io.Discard, err: stderr})
	if err == nil || !strings.Contains(err.Error(), "no streamer node answered at "+addr+" within --dial-timeout 500ms") ||
		!strings.Contains(err.Error(), "connection refused") {
		t.Errorf("gateway: %v, want the dial timeout with the last error", err)
	}
	r := runCLI(t, testbin.Streamer(t), "", nil, "watch", "--addr", addr, "--collection", "c", "--dial-timeout", "500ms")
	if r.code != 1 || !strings.Contains(r.stderr, "no streamer node answered at "+addr) {
		t.Errorf("watch: exit %d, stderr %q", r.code, r.stderr)
	}
}
