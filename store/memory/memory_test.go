package memory_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/streamerd/streamer/store"
	"github.com/streamerd/streamer/store/memory"
	"github.com/streamerd/streamer/store/storetest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// Small caps keep the retention scenarios fast.
const (
	logMaxLen    = 100
	outboxMaxLen = 100
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) *store.Backend {
		return memory.New(memory.Config{Partitions: 4, MaxLen: logMaxLen, OutboxMaxLen: outboxMaxLen, OutboxMaxBytes: storetest.OutboxBytesCap})
	}, storetest.Options{LogMaxLen: logMaxLen, OutboxMaxLen: outboxMaxLen, OutboxMaxBytes: storetest.OutboxBytesCap, BlockedReads: memory.BlockedReads})
}

func TestConformanceSinglePartition(t *testing.T) {
	storetest.Run(t, func(t *testing.T) *store.Backend {
		return memory.New(memory.Config{Partitions: 1, MaxLen: 30, OutboxMaxLen: 25, OutboxMaxBytes: storetest.OutboxBytesCap})
	}, storetest.Options{LogMaxLen: 30, OutboxMaxLen: 25, OutboxMaxBytes: storetest.OutboxBytesCap, BlockedReads: memory.BlockedReads})
}

func TestDefaults(t *testing.T) {
	b := memory.New(memory.Config{})
	defer b.Close()
	if n := b.Log.Partitions(); n != store.DefaultPartitions {
		t.Errorf("Partitions() = %d, want %d", n, store.DefaultPartitions)
	}
}
