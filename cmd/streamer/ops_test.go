package main

import (
	"net/http"
	"net/http/httptest"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"github.com/streamerd/streamer/internal/testbin"
)

// TestVersion: the built binary names its version, the commit when Go
// stamped one (go build -buildvcs, on by default, off in this machine's
// GOFLAGS), its Go version and platform.
func TestVersion(t *testing.T) {
	r := runCLI(t, testbin.Streamer(t), "", nil, "version")
	want := regexp.MustCompile(`^streamer \S+( \(commit [0-9a-f]{40}(, modified)?\))? ` + regexp.QuoteMeta(runtime.Version()) + ` ` + runtime.GOOS + `/` + runtime.GOARCH + "\n$")
	if r.code != 0 || !want.MatchString(r.stdout) {
		t.Fatalf("version: exit %d, %q (stderr %q), want %s", r.code, r.stdout, r.stderr, want)
	}
	if code, _, stderr := runCmd(t, "", "version", "extra"); code != 2 || !strings.Contains(stderr, "unexpected arguments") {
		t.Fatalf("version extra: %d %q", code, stderr)
	}
}

func TestHealthcheck(t *testing.T) {
	var gotAuth string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotAuth = r.Header.Get("Authorization")
		if r.URL.Path == "/readyz" {
			w.Write([]byte("ready\n"))
			return
		}
		http.Error(w, "not ready: backend unreachable", http.StatusServiceUnavailable)
	}))
	defer srv.Close()

	if code, _, stderr := runCmd(t, "", "healthcheck", "--url", srv.URL+"/readyz", "--metrics-token", "tok"); code != 0 || gotAuth != "Bearer tok" {
		t.Fatalf("healthy: exit %d (%q), authorization %q", code, stderr, gotAuth)
	}
	code, _, stderr := runCmd(t, "", "healthcheck", "--url", srv.URL+"/other")
	if code != 1 || !strings.Contains(stderr, "503 Service Unavailable: not ready: backend unreachable") {
		t.Fatalf("unhealthy: exit %d, %q", code, stderr)
	}
	srv.Close()
	if code, _, stderr := runCmd(t, "", "healthcheck", "--url", srv.URL+"/readyz", "--timeout", "1s"); code != 1 || !strings.Contains(stderr, "unhealthy:") {
		t.Fatalf("unreachable: exit %d, %q", code, stderr)
	}
	if code, _, stderr := runCmd(t, "", "healthcheck", "--url", "::bad"); code != 2 || !strings.Contains(stderr, "--url") {
		t.Fatalf("bad url: exit %d, %q", code, stderr)
	}
}
