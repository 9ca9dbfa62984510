// Package testbin builds the streamer binary for tests that run it as a real
// process. It is for tests only.
package testbin

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

var (
	once sync.Once
	dir  string
	exe  string
	err  error
)

// Streamer builds github.com/streamerd/streamer/cmd/streamer once per test binary,
// into a temporary directory that Cleanup removes, and returns its path. A build
// failure fails the test with the compiler's output.
func Streamer(t testing.TB) string {
	t.Helper()
	once.Do(func() {
		goTool, lookErr := exec.LookPath("go")
		if lookErr != nil {
			err = fmt.Errorf("the go tool is needed to build the streamer binary: %w", lookErr)
			return
		}
		if dir, err = os.MkdirTemp("", "streamer-test-bin-"); err != nil {
			return
		}
		exe = filepath.Join(dir, "streamer")
		start := time.Now()
		out, buildErr := exec.Command(goTool, "build", "-o", exe, "github.com/streamerd/streamer/cmd/streamer").CombinedOutput()
		if buildErr != nil {
			err = fmt.Errorf("go build ./cmd/streamer: %v\n%s", buildErr, out)
			return
		}
		t.Logf("built %s in %v", exe, time.Since(start).Round(time.Millisecond))
	})
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

// Cleanup removes what Streamer built; call it from TestMain after the tests ran.
func Cleanup() {
	if dir != "" {
		_ = os.RemoveAll(dir)
	}
}
