package integration

import (
	"fmt"
	"os"
	"testing"

	"github.com/streamerd/streamer/internal/testbin"

	"go.uber.org/goleak"
)

// TestMain removes the binary the pool tests built, then checks for leaked
// goroutines.
func TestMain(m *testing.M) {
	code := m.Run()
	testbin.Cleanup()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: errors on successful test run: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}
