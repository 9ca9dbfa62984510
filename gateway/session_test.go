package gateway

import (
	"bytes"
	"strings"
	"sync/atomic"
	"testing"
)

// TestSendQueueBoundInBytes: a connection is cut as slow when the bytes
// queued unread would exceed the bound, not for a burst of small messages;
// one message always fits an empty queue, however large.
func TestSendQueueBoundInBytes(t *testing.T) {
	var slow atomic.Uint64
	s := newSession(transportWS, Identity{Tenant: "t"}, 1000, 1000, &slow)
	small := frame{head: []byte(`{"type":"x"}`)}
	for range 50 { // 600 bytes in 50 messages
		if !s.enqueue(small) {
			t.Fatal("a burst of small messages was cut")
		}
	}
	s.take(nil)
	big := frame{head: bytes.Repeat([]byte("a"), 400)}
	for range 2 {
		if !s.enqueue(big) {
			t.Fatal("800 bytes refused")
		}
	}
	if s.enqueue(big) {
		t.Fatal("1,200 bytes accepted with a bound of 1,000")
	}
	reason, detail := s.ended()
	if reason != endSlow || !strings.Contains(detail, "2 messages (800 bytes) queued unread, the limits are 1000 messages and 1000 bytes") || slow.Load() != 1 {
		t.Fatalf("ended %v %q, slow %d", reason, detail, slow.Load())
	}

	huge := newSession(transportWS, Identity{Tenant: "t"}, 1000, 1000, &slow)
	if !huge.enqueue(frame{head: bytes.Repeat([]byte("a"), 5000)}) {
		t.Fatal("one message larger than the bound was refused on an empty queue")
	}
}
