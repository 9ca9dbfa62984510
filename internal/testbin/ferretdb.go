package testbin

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"
)

var (
	ferretOnce sync.Once
	ferretExe  string
	ferretErr  error
)

// FerretDB starts a FerretDB server (v1, SQLite backend: the MongoDB wire
// protocol in pure Go, built from the nested module internal/testferret
// once per test binary) on a loopback port, with its data in a temporary
// directory, stopped at the test's cleanup; it returns its MongoDB URI.
// MongoDB itself cannot run on the test machines; FerretDB lacks change
// streams and snapshot reads, which the tests of those use the driver's
// mock deployment for.
func FerretDB(t testing.TB) string {
	t.Helper()
	ferretOnce.Do(func() {
		_, file, _, _ := runtime.Caller(0)
		src := filepath.Join(filepath.Dir(file), "..", "testferret")
		if dir == "" {
			if dir, ferretErr = os.MkdirTemp("", "streamer-test-bin-"); ferretErr != nil {
				return
			}
		}
		ferretExe = filepath.Join(dir, "testferret")
		start := time.Now()
		cmd := exec.Command("go", "build", "-o", ferretExe, ".")
		cmd.Dir = src
		if out, err := cmd.CombinedOutput(); err != nil {
			ferretErr = fmt.Errorf("building FerretDB (internal/testferret): %v\n%s", err, out)
			return
		}
		t.Logf("built %s in %v", ferretExe, time.Since(start).Round(time.Millisecond))
	})
	if ferretErr != nil {
		t.Fatal(ferretErr)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	cmd := exec.Command(ferretExe, "-listen", addr, "-dir", t.TempDir())
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = c.Close()
			return "mongodb://" + addr + "/"
		}
		select {
		case err := <-exited:
			t.Fatalf("FerretDB exited before listening on %s: %v", addr, err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("FerretDB does not listen on %s after 30s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
