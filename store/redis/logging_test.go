package redis

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestLibraryLogIsStructuredAndRateLimited: the client library's messages
// come out as the node's own log records, at most one per interval, the
// next one counting what was left out.
func TestLibraryLogIsStructuredAndRateLimited(t *testing.T) {
	var buf bytes.Buffer
	g := &libraryLog{l: slog.New(slog.NewJSONHandler(&buf, nil)), every: time.Hour}
	for i := range 5 {
		g.Printf(context.Background(), "dial tcp %d: connection refused", i)
	}
	g.last = time.Now().Add(-2 * time.Hour) // the interval has passed
	g.Printf(context.Background(), "dial tcp %d: connection refused", 5)
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d records, want 2:\n%s", len(lines), buf.String())
	}
	var second map[string]any
	if err := json.Unmarshal([]byte(lines[1]), &second); err != nil {
		t.Fatal(err)
	}
	if second["level"] != "WARN" || second["msg"] != "redis client: dial tcp 5: connection refused" || second["similar_messages_left_out"] != 4.0 {
		t.Errorf("second record %v", second)
	}
}
