package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/streamerd/streamer/internal/redistest"
	"github.com/streamerd/streamer/internal/testwait"
)

// pullerStderr collects a command's stderr; safe for concurrent use.
type pullerStderr struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *pullerStderr) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *pullerStderr) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestPullerHelp(t *testing.T) {
	var stderr pullerStderr
	err := runPuller(context.Background(), []string{"--help"}, stdio{in: strings.NewReader(""), out: io.Discard, err: &stderr})
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("runPuller --help = %v, want flag.ErrHelp", err)
	}
	for _, want := range []string{
		"Usage: streamer puller --mongo URI --redis URL", "-mongo URI", "-redis URL", "-collections list", "-pre-images",
		"-start-from-now", "-tenant-field", "-http address", "streamer serve --mongo URI", "STREAMER_MONGO", "(default \"default\")",
	} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("--help lacks %q:\n%s", want, stderr.String())
		}
	}
}

func TestPullerFlagErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"no --mongo", nil, nil, "--mongo is required"},
		{"no --redis", []string{"--mongo", "mongodb://h/shop"}, nil, "Without Redis, run the puller inside the node instead: streamer serve --mongo URI"},
		{"--mongo from the environment", nil, map[string]string{"STREAMER_MONGO": "mongodb://h/shop"}, "--redis is required"},
		{"no database", []string{"--mongo", "mongodb://h", "--redis", "redis://127.0.0.1:1"}, nil, "none was given (--db)"},
		{"bad URI", []string{"--mongo", "http://h", "--redis", "redis://127.0.0.1:1"}, nil, "--mongo:"},
		{"bad batch", []string{"--mongo", "mongodb://h/shop", "--redis", "redis://127.0.0.1:1", "--batch", "0"}, nil, "must be positive"},
		{"bad log format", []string{"--log-format", "xml"}, nil, "--log-format"},
		{"unknown flag", []string{"--nope"}, nil, "flag provided but not defined"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			var stderr pullerStderr
			err := runPuller(context.Background(), tc.args, stdio{in: strings.NewReader(""), out: io.Discard, err: &stderr})
			if !errors.Is(err, errUsage) {
				t.Fatalf("runPuller = %v, want a usage error", err)
			}
			if !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("stderr %q lacks %q", stderr.String(), tc.want)
			}
		})
	}
}

// TestPullerAdminHTTP runs the subcommand against a real redis-server and a
// MongoDB address where nothing listens: the puller leads, retries the
// change stream, and reports it on /healthz, /readyz and /metrics.
func TestPullerAdminHTTP(t *testing.T) {
	srv := redistest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stderrR, stderrW := io.Pipe()
	var logs pullerStderr
	done := make(chan error, 1)
	go func() {
		done <- runPuller(ctx, []string{
			"--mongo", "mongodb://127.0.0.1:1/shop?serverSelectionTimeoutMS=100&connectTimeoutMS=100",
			"--redis", srv.URL(), "--http", "127.0.0.1:0", "--log-format", "json", "--lease-ttl", "300ms",
		}, stdio{in: strings.NewReader(""), out: io.Discard, err: stderrW})
		stderrW.Close()
	}()
	addr := make(chan string, 1)
	var readerDone sync.WaitGroup
	readerDone.Go(func() {
		sc := bufio.NewScanner(stderrR)
		for sc.Scan() {
			logs.Write(append(sc.Bytes(), '\n'))
			var rec map[string]any
			if json.Unmarshal(sc.Bytes(), &rec) == nil && rec["msg"] == "listening" {
				addr <- rec["http_addr"].(string)
			}
		}
	})
	defer readerDone.Wait()

	var base string
	select {
	case a := <-addr:
		base = "http://" + a
	case err := <-done:
		t.Fatalf("runPuller returned early: %v\n%s", err, logs.String())
	case <-time.After(10 * time.Second):
		t.Fatalf("no listening log line:\n%s", logs.String())
	}
	get := func(path string) (int, string) {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	testwait.ForState(t, "admin endpoints showing a leader retrying the stream", func() (bool, any) {
		hc, health := get("/healthz")
		rc, ready := get("/readyz")
		_, metrics := get("/metrics")
		return hc == 200 && strings.TrimSpace(health) == "ok leader" && rc == 503 && strings.Contains(ready, "leader is retrying") &&
				strings.Contains(metrics, "streamer_puller_leader 1") && strings.Contains(metrics, `streamer_puller_errors_total{kind="stream"}`) &&
				strings.Contains(metrics, "streamer_puller_checkpoint_age_seconds") && strings.Contains(metrics, "streamer_puller_lag_seconds"),
			fmt.Sprintf("/healthz %d %s\n/readyz %d %s\n/metrics %s\nlogs:\n%s", hc, health, rc, ready, metrics, logs.String())
	})

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("runPuller after cancel = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("runPuller did not stop within 10s of cancel")
	}
}
