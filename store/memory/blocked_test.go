package memory_test

import (
	"testing"

	"github.com/streamerd/streamer/store"
	"github.com/streamerd/streamer/store/memory"
)

func TestBlockedReadsOfAnotherBackendIsZero(t *testing.T) {
	if n := memory.BlockedReads(&store.Backend{}); n != 0 {
		t.Fatalf("BlockedReads of a backend that is not a memory one = %d, want 0", n)
	}
}
