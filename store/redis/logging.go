package redis

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// SetLogger sends the Redis client library's own messages (connection
// pool dial failures, Sentinel and Cluster topology changes) to l at WARN
// instead of its plain lines on stderr, which would break a JSON log. At
// most one message a second is logged; the next one says how many were
// left out meanwhile (an outage makes every pooled connection fail). The
// library's logger is process-wide.
func SetLogger(l *slog.Logger) {
	goredis.SetLogger(&libraryLog{l: l, every: time.Second})
}

// libraryLog adapts slog to go-redis's logging interface.
type libraryLog struct {
	l     *slog.Logger
	every time.Duration

	mu      sync.Mutex
	last    time.Time
	skipped int
}

func (g *libraryLog) Printf(ctx context.Context, format string, v ...any) {
	g.mu.Lock()
	now := time.Now()
	if !g.last.IsZero() && now.Sub(g.last) < g.every {
		g.skipped++
		g.mu.Unlock()
		return
	}
	skipped := g.skipped
	g.last, g.skipped = now, 0
	g.mu.Unlock()
	g.l.WarnContext(ctx, "redis client: "+fmt.Sprintf(format, v...), "similar_messages_left_out", skipped)
}
