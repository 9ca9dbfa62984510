package match

import (
	"os"
	"testing"
)

// sampled returns how many cases a differential or property test runs: all
// of full under `make test-long` (STREAMER_TEST_LONG=1), an eighth of them
// (at least 1) in the default suite, which CI and `make test` run. The cases
// come from fixed seeds, so the sample is the start of the long run.
func sampled(t testing.TB, full int) int {
	t.Helper()
	if os.Getenv("STREAMER_TEST_LONG") != "" {
		return full
	}
	n := max(full/8, 1)
	t.Logf("running %d of %d cases (STREAMER_TEST_LONG=1 runs all)", n, full)
	return n
}
