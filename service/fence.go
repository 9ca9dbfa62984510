package service

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/streamerd/streamer/internal/clock"
)

// errLeaseExpired says that a partition's lease may no longer be this
// node's: its consumer must not touch the partition until the lease is
// renewed (or the consumer is stopped).
var errLeaseExpired = errors.New("service: partition lease not known to be valid")

// leaseFence is how long this node may act on one partition: until the
// instant it holds, on the node's clock (monotonic when it is the system
// clock). The ownership goroutine
// extends it after each successful Acquire or Renew and revokes it when the
// lease is lost; the partition's consumer checks it before every call that
// reads or writes the partition (guard) and passes its deadline to the call,
// so that a call still running when the fence passes is cut.
type leaseFence struct {
	clock clock.Clock
	epoch time.Time    // anchors until to the clock
	until atomic.Int64 // nanoseconds after epoch; 0 = revoked
}

// newLeaseFence returns a revoked fence on c.
func newLeaseFence(c clock.Clock) *leaseFence {
	return &leaseFence{clock: c, epoch: c.Now()}
}

// extend makes the fence end valid after start.
func (f *leaseFence) extend(start time.Time, valid time.Duration) {
	f.until.Store(max(int64(start.Sub(f.epoch)+valid), 1))
}

// revoke ends the fence now.
func (f *leaseFence) revoke() { f.until.Store(0) }

// deadline returns when the fence ends and whether that is still ahead.
func (f *leaseFence) deadline() (time.Time, bool) {
	u := f.until.Load()
	d := f.epoch.Add(time.Duration(u))
	return d, u != 0 && clock.Until(f.clock, d) > 0
}

// valid reports whether the fence has not passed.
func (f *leaseFence) valid() bool {
	_, ok := f.deadline()
	return ok
}

// guard runs call, one backend call on the fenced partition, with a context
// that ends when the fence does. It does not start call once the fence has
// passed, and reports a call cut by the fence, as errLeaseExpired.
func (f *leaseFence) guard(ctx context.Context, call func(context.Context) error) error {
	d, ok := f.deadline()
	if !ok {
		return errLeaseExpired
	}
	gctx, cancel := clock.WithDeadline(ctx, f.clock, d)
	defer cancel()
	err := call(gctx)
	if err != nil && ctx.Err() == nil && gctx.Err() != nil {
		return fmt.Errorf("%w: %v", errLeaseExpired, err)
	}
	return err
}
