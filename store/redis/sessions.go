package redis

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	goredis "github.com/redis/go-redis/v9"

	"github.com/streamerd/streamer/store"
)

// Sessions is store.Sessions on one string per gateway, stm:{gw:G}:session,
// holding "<epoch>:<node>", or "<epoch>:" once released so that the epoch
// survives Release. Epochs are Redis server time in microseconds (or the
// previous epoch + 1 if greater), so they keep increasing even after the
// key is deleted, such as by the janitor.
type Sessions struct{ c *core }

var _ store.Sessions = (*Sessions)(nil)

// Claim runs scriptSessionClaim.
func (s *Sessions) Claim(ctx context.Context, gateway, node string) (int64, error) {
	if err := s.begin(ctx, gateway); err != nil {
		return 0, err
	}
	if err := required("node", node); err != nil {
		return 0, err
	}
	epoch, err := scriptSessionClaim.Run(ctx, s.c.client, []string{s.c.keys.Session(gateway)}, node).Int64()
	if err != nil {
		return 0, s.c.fail(ctx, "session claim", err)
	}
	return epoch, nil
}

// Current is GET, parsed.
func (s *Sessions) Current(ctx context.Context, gateway string) (string, int64, error) {
	if err := s.begin(ctx, gateway); err != nil {
		return "", 0, err
	}
	v, err := s.c.client.Get(ctx, s.c.keys.Session(gateway)).Result()
	if errors.Is(err, goredis.Nil) {
		return "", 0, nil
	}
	if err != nil {
		return "", 0, s.c.fail(ctx, "session current", err)
	}
	e, node, ok := strings.Cut(v, ":")
	epoch, perr := strconv.ParseInt(e, 10, 64)
	if !ok || perr != nil {
		return "", 0, fmt.Errorf("redis: session current: malformed record %q in %s", v, s.c.keys.Session(gateway))
	}
	if node == "" {
		return "", 0, nil
	}
	return node, epoch, nil
}

// Release runs scriptSessionRelease.
func (s *Sessions) Release(ctx context.Context, gateway, node string, epoch int64) error {
	if err := s.begin(ctx, gateway); err != nil {
		return err
	}
	if err := required("node", node); err != nil {
		return err
	}
	e := strconv.FormatInt(epoch, 10)
	if err := scriptSessionRelease.Run(ctx, s.c.client, []string{s.c.keys.Session(gateway)}, e+":"+node, e+":").Err(); err != nil {
		return s.c.fail(ctx, "session release", err)
	}
	return nil
}

func (s *Sessions) begin(ctx context.Context, gateway string) error {
	if err := s.c.begin(ctx); err != nil {
		return err
	}
	return required("gateway", gateway)
}
