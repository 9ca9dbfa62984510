package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/streamerd/streamer/internal/buildinfo"
)

const versionSynopsis = `version

Prints the build: version (set at release, "(devel)" from a checkout), VCS
commit, Go version and platform. Every process also exports them as the
streamer_build_info metric.`

func runVersion(_ context.Context, args []string, sio stdio) error {
	fs := newFlagSet("version", versionSynopsis, sio)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	fmt.Fprintln(sio.out, buildinfo.Read())
	return nil
}

const healthcheckSynopsis = `healthcheck [--url URL] [--timeout D]

Asks an admin endpoint whether the process is healthy, for images without a
shell or curl (the Dockerfile's HEALTHCHECK): exits 0 when --url answers 2xx
within --timeout, 1 otherwise, saying why on stderr. The default URL is a
node's readiness (streamer serve --http :7071); the gateway's is
http://127.0.0.1:8081/readyz, the puller's http://127.0.0.1:7072/readyz.`

func runHealthcheck(ctx context.Context, args []string, sio stdio) error {
	fs := newFlagSet("healthcheck", healthcheckSynopsis, sio)
	url := fs.String("url", "http://127.0.0.1:7071/readyz", "admin `URL` to ask")
	timeout := fs.Duration("timeout", 3*time.Second, "how long to wait for the answer")
	token := secretFlag(fs, "metrics-token", "bearer `token` to send (for endpoints behind --metrics-token)")
	if err := parseFlagsEnv(fs, args); err != nil {
		return err
	}
	tok, err := token()
	if err != nil {
		return usageError(sio, err)
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, *url, nil)
	if err != nil {
		return usageError(sio, fmt.Errorf("--url: %w", err))
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("unhealthy: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("unhealthy: %s answered %s: %s", *url, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}
