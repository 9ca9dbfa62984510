package gateway_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/streamerd/streamer/internal/testbin"
)

// TestSyntrixJavaScriptClient runs a JavaScript client written for this
// project from Syntrix's protocol description (testdata/syntrix-e2e, on
// Node with the ws package from npm) against `streamer serve` and
// `streamer gateway` processes: tokens in the query string and bad ones
// refused with Syntrix's codes and texts, auth as the first frame, a
// filtered snapshot, create / leave / update / delete events routed by
// subId (the document flattened, or left out without includeData), a lost
// connection followed by a reconnect that authenticates and subscribes
// again with the same ids, unsubscribe, heartbeats, and SSE.
func TestSyntrixJavaScriptClient(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("the Syntrix client test needs Node.js (apt-get install -y nodejs npm): %v", err)
	}
	dir, _ := filepath.Abs(filepath.Join("testdata", "syntrix-e2e"))
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "ws")); err != nil {
		t.Fatalf("the Syntrix client test needs its npm packages: run `npm ci --prefix %s` (.ci/run does): %v", dir, err)
	}
	exe := testbin.Streamer(t)
	secret := "syntrix-e2e-secret"
	serve := startProcess(t, exe, "serve", "--grpc", "127.0.0.1:0", "--http", "127.0.0.1:0", "--partitions", "4", "--log-format", "json")
	grpcAddr := serve.listening["grpc_addr"]
	gw := startProcess(t, exe, "gateway", "--addr", grpcAddr, "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0",
		"--jwt-secret", secret, "--jwt-tenant-claim", "tid", "--syntrix-heartbeat", "300ms", "--log-format", "json")
	// A Syntrix token: the tenant in tid, user claims beside it.
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"tid": "acme", "oid": "u1", "username": "ann", "roles": []string{"user"}, "exp": time.Now().Add(time.Hour).Unix(),
	}).SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	msg := func(id string, op string, doc, before string) string {
		s := fmt.Sprintf(`{"event_id":"%s-%s","tenant":"acme","collection":"messages","id":"%s","op":"%s"`, id, op, id, op)
		if doc != "" {
			s += `,"doc":` + doc
		}
		if before != "" {
			s += `,"before":` + before
		}
		return s + "}"
	}
	// Before the client connects: m2 matches n >= 2, m1 does not, and
	// another tenant's m9 is never seen.
	publish(t, exe, grpcAddr,
		msg("m1", "create", `{"n":1,"text":"hi"}`, ""),
		msg("m2", "create", `{"n":5,"text":"hello","_id":"m2"}`, ""),
		`{"event_id":"x","tenant":"globex","collection":"messages","id":"m9","op":"create","doc":{"n":50}}`)
	phases := map[string][]string{
		"changes": {
			msg("m3", "create", `{"n":7}`, ""),
			msg("m3", "update", `{"n":1}`, `{"n":7}`), // leaves n >= 2
			msg("m3", "delete", "", `{"n":1}`),
		},
		"reconnected": {msg("m4", "create", `{"n":3}`, "")},
		"sse":         {msg("m4", "update", `{"n":9}`, `{"n":3}`)},
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, filepath.Join(dir, "e2e.mjs"))
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GATEWAY=http://"+gw.listening["listen_addr"], "TOKEN="+tok)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var out []string
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Text()
		out = append(out, line)
		if phase, ok := strings.CutPrefix(line, "READY "); ok {
			events, known := phases[phase]
			if !known {
				t.Fatalf("the client is ready for an unknown phase %q", phase)
			}
			publish(t, exe, grpcAddr, events...)
			fmt.Fprintln(stdin, "GO")
		}
	}
	err = cmd.Wait()
	if err != nil || len(out) == 0 || out[len(out)-1] != "OK" {
		t.Fatalf("the JavaScript client: %v\nstdout:\n%s\nstderr:\n%s\ngateway logs:\n%s", err, strings.Join(out, "\n"), stderr.String(), gw.stderr())
	}
}
