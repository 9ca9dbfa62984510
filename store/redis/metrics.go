package redis

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	goredis "github.com/redis/go-redis/v9"

	"github.com/streamerd/streamer/store"
)

var _ store.LagReporter = (*EventLog)(nil)

// Lag is the lag of the consumer group store.Group on partition p (XINFO
// GROUPS), or -1 when Redis cannot tell (entries were deleted from the
// middle of the stream).
func (l *EventLog) Lag(ctx context.Context, p int) (int64, error) {
	if err := l.c.beginPartition(ctx, p); err != nil {
		return 0, err
	}
	groups, err := l.c.client.XInfoGroups(ctx, l.c.events[p]).Result()
	if err != nil {
		return 0, l.c.fail(ctx, fmt.Sprintf("lag of partition %d", p), err)
	}
	for _, g := range groups {
		if g.Name == store.Group {
			return g.Lag, nil
		}
	}
	return -1, nil
}

// CountErrors counts the failed commands and connection attempts of client
// in streamer_redis_errors_total{kind}, which it returns for the caller's
// registry. Kinds: dial, timeout, io (connection lost) and reply (an error
// answer, such as LOADING or READONLY). Expected answers are not errors: nil
// replies, BUSYGROUP (the group exists) and NOSCRIPT (the script is sent
// again), nor are calls whose context ended, nor the optional commands of
// go-redis's connection handshake, whose refusal by an older Redis it
// ignores itself (CLIENT SETINFO before Redis 7.2, CLIENT
// MAINT_NOTIFICATIONS).
func CountErrors(client goredis.UniversalClient) prometheus.Collector {
	errs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "streamer_redis_errors_total",
		Help: "Failed Redis commands and connection attempts of this node, by kind: dial, timeout, io (connection lost) or reply (an error answer, such as LOADING or READONLY).",
	}, []string{"kind"})
	for _, k := range []string{"dial", "timeout", "io", "reply"} {
		errs.WithLabelValues(k)
	}
	client.AddHook(errorHook{errs})
	return errs
}

// errorHook counts failed Redis calls in errs (see CountErrors).
type errorHook struct{ errs *prometheus.CounterVec }

func (h errorHook) DialHook(next goredis.DialHook) goredis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := next(ctx, network, addr)
		if err != nil && ctx.Err() == nil {
			h.errs.WithLabelValues("dial").Inc()
		}
		return conn, err
	}
}

func (h errorHook) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		err := next(ctx, cmd)
		h.count(ctx, cmd, err)
		return err
	}
}

func (h errorHook) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		err := next(ctx, cmds)
		for _, c := range cmds {
			h.count(ctx, c, c.Err())
		}
		return err
	}
}

func (h errorHook) count(ctx context.Context, cmd goredis.Cmder, err error) {
	if err == nil || errors.Is(err, goredis.Nil) || ctx.Err() != nil ||
		goredis.HasErrorPrefix(err, "BUSYGROUP") || goredis.HasErrorPrefix(err, "NOSCRIPT") || optionalHandshake(cmd) {
		return
	}
	var reply goredis.Error
	var nerr net.Error
	switch {
	case errors.As(err, &nerr) && nerr.Timeout():
		h.errs.WithLabelValues("timeout").Inc()
	case errors.As(err, &reply):
		h.errs.WithLabelValues("reply").Inc()
	default:
		h.errs.WithLabelValues("io").Inc()
	}
}

// optionalHandshake reports whether cmd is one of the commands go-redis
// sends when it opens a connection and goes on without when Redis refuses
// them.
func optionalHandshake(cmd goredis.Cmder) bool {
	args := cmd.Args()
	if len(args) < 2 || !strings.EqualFold(cmd.Name(), "client") {
		return false
	}
	sub, _ := args[1].(string)
	return strings.EqualFold(sub, "setinfo") || strings.EqualFold(sub, "maint_notifications")
}
