package service

import (
	"context"
	"hash/fnv"
	"maps"
	"slices"
	"time"

	"github.com/streamerd/streamer/internal/clock"
)

// ownership decides which partitions this node consumes, through the
// backend's leases and node registry, and starts and stops their consumers.
// Each round (every LeaseTTL/3) it renews the leases it holds, heartbeats
// the node, computes its fair share ceil(P / live nodes), releases extras
// beyond the share (finishing their in-flight batch first, then releasing
// the lease) and acquires free leases up to the share. An embedded node is
// the only live node, so it owns every partition.
//
// Safety rests on the lease fence (fence.go): a consumer touches its
// partition only while the lease it was started under is known to be valid,
// by this node's monotonic clock, counted from the start of the last
// successful Acquire or Renew and ending fenceMargin before the lease can
// expire in the backend. A lost lease (Renew answers false) revokes the
// fence at once; a lease that could not be renewed in time lapses by itself.
// Either way the consumer stops before any further read, append or ack, and
// the round then stops it for good.
type ownership struct {
	n     *Node
	owned map[int]*ownedPartition
	first int // where this node starts looking for free partitions
}

// ownedPartition is a running consumer and its lease state.
type ownedPartition struct {
	renewed    time.Time // start of the last successful Acquire or Renew
	fence      *leaseFence
	stop, work context.CancelFunc
	done       chan struct{}
}

func newOwnership(n *Node) *ownership {
	h := fnv.New32a()
	h.Write([]byte(n.cfg.NodeID))
	return &ownership{n: n, owned: map[int]*ownedPartition{}, first: int(h.Sum32() % uint32(n.cfg.Partitions))}
}

// fenceMargin is how long before its expiry in the backend this node stops
// trusting a lease: LeaseTTL/10. It absorbs the time between the start of a
// Renew (where the node's clock starts counting) and the moment the backend
// sets the new expiry, and clock-rate differences between node and backend.
func (n *Node) fenceMargin() time.Duration { return n.cfg.LeaseTTL / 10 }

// claimGrace is how long a new owner waits after acquiring a partition
// before it claims the pending entries and reads, and the min-idle of that
// first claim: LeaseTTL/10, within [10ms, 100ms]. The previous owner read every
// pending entry while it held the lease, so before this node acquired it; it
// stopped touching the partition fenceMargin before its lease could expire,
// and its calls in flight were cut (their connections closed) at that
// moment. The grace adds a second margin for a call that Redis serves a
// little after the client gave up on it (a blocked read served by an
// append), so the claim never takes entries from a live owner's in-flight
// batch, and no late read of the previous owner can leave entries pending
// behind the new owner's reads. Every pending entry is then at least
// claimGrace idle, so the claim takes them all, oldest first, and the
// partition's order holds.
func (n *Node) claimGrace() time.Duration {
	return min(max(n.cfg.LeaseTTL/10, 10*time.Millisecond), 100*time.Millisecond)
}

// run rebalances every LeaseTTL/3 until ctx is done, then stops every
// consumer (letting in-flight batches finish within ShutdownTimeout),
// releases the leases and unregisters the node. The next round's timer is
// armed when a round ends (so a round that overran its period is followed
// by the next one at once, and a fake clock sees the round finish).
func (o *ownership) run(ctx context.Context) {
	n := o.n
	every := n.cfg.LeaseTTL / 3
	o.rebalance(ctx)
	t := n.cfg.Clock.NewTimer(every)
	defer t.Stop()
	sleepCtx(ctx, n.claimGrace()) // the consumers' takeover wait: ready once they read
	n.ready.Store(!n.draining.Load())
	for {
		select {
		case <-ctx.Done():
			o.shutdown(ctx)
			return
		case <-t.C():
			o.rebalance(ctx)
			t.Reset(every)
		}
	}
}

// rebalance is one ownership round. Each step is bounded by LeaseTTL/3, so
// that an unreachable backend cannot hold the round past the next one.
func (o *ownership) rebalance(ctx context.Context) {
	n := o.n
	ttl := n.cfg.LeaseTTL
	step := func() (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, ttl/3) }

	o.renew(ctx)

	hctx, cancel := step()
	if err := n.backend.Nodes.Heartbeat(hctx, n.cfg.NodeID, ttl); err != nil && ctx.Err() == nil {
		n.log.Warn("node heartbeat", "err", err)
	}
	cancel()
	share := len(o.owned)
	lctx, cancel := step()
	if live, err := n.backend.Nodes.Live(lctx); err == nil {
		share = (n.cfg.Partitions + max(len(live), 1) - 1) / max(len(live), 1)
	} else if ctx.Err() == nil {
		n.log.Warn("listing live nodes", "err", err)
	}
	cancel()

	var released []int
	for p := n.cfg.Partitions - 1; p >= 0 && len(o.owned) > share; p-- {
		if _, ok := o.owned[p]; ok {
			o.stopPartitions([]int{p}, true)
			rctx, cancel := step()
			o.release(rctx, p)
			cancel()
			released = append(released, p)
		}
	}
	if len(released) > 0 {
		n.log.Info("partitions released to rebalance", "partitions", released, "owned", len(o.owned), "share", share)
	}

	actx, cancel := step()
	defer cancel()
	var acquired []int
	for i := 0; i < n.cfg.Partitions && len(o.owned) < share && actx.Err() == nil; i++ {
		p := (o.first + i) % n.cfg.Partitions
		if _, ok := o.owned[p]; ok {
			continue
		}
		start := n.cfg.Clock.Now()
		ok, err := n.backend.Leases.Acquire(actx, p, n.cfg.NodeID, ttl)
		if err != nil {
			if ctx.Err() == nil {
				n.log.Warn("acquiring partition lease", "partition", p, "err", err)
			}
			continue
		}
		if ok {
			o.startPartition(ctx, p, start)
			acquired = append(acquired, p)
		}
	}
	if len(acquired) > 0 {
		n.metrics.leaseChanges.WithLabelValues("acquired").Add(float64(len(acquired)))
		n.log.Info("partitions acquired", "partitions", acquired, "owned", len(o.owned), "share", share)
	}
}

// renew renews every lease held, within LeaseTTL/3 for all of them. A lease
// another node holds now (Renew answers false) is stopped at once; a lease
// that could not be renewed is stopped once its fence has passed (its
// consumer already stopped touching the partition then).
func (o *ownership) renew(ctx context.Context) {
	n := o.n
	ttl := n.cfg.LeaseTTL
	rctx, cancel := context.WithTimeout(ctx, ttl/3)
	defer cancel()
	for _, p := range slices.Sorted(maps.Keys(o.owned)) {
		op := o.owned[p]
		start := n.cfg.Clock.Now()
		ok, err := n.backend.Leases.Renew(rctx, p, n.cfg.NodeID, ttl)
		switch {
		case err == nil && ok:
			op.renewed = start
			op.fence.extend(start, ttl-n.fenceMargin())
		case err == nil && !ok:
			op.fence.revoke()
			n.log.Error("partition lease no longer held (it expired before renewal, or another node took it), stopping its consumer", "partition", p, "since_last_renewal", clock.Since(n.cfg.Clock, op.renewed).Round(time.Millisecond))
			n.metrics.leaseChanges.WithLabelValues("lost").Inc()
			o.stopPartitions([]int{p}, false)
		case ctx.Err() != nil:
			return
		case !op.fence.valid():
			op.fence.revoke()
			n.log.Error("partition lease could not be renewed in time, stopping its consumer", "partition", p,
				"last_renewed", op.renewed.Format(time.RFC3339Nano), "err", err)
			n.metrics.leaseChanges.WithLabelValues("expired").Inc()
			o.stopPartitions([]int{p}, false)
		default:
			n.log.Warn("renewing partition lease", "partition", p, "err", err)
		}
	}
}

// startPartition starts the consumer of partition p, whose lease was
// acquired by a call that started at acquired. Its work context is detached
// from ctx so that a shutdown finishes the in-flight batch; stopPartitions
// cancels it.
func (o *ownership) startPartition(ctx context.Context, p int, acquired time.Time) {
	n := o.n
	fence := newLeaseFence(n.cfg.Clock)
	fence.extend(acquired, n.cfg.LeaseTTL-n.fenceMargin())
	c := newConsumer(n, p, fence)
	stop, cancelStop := context.WithCancel(ctx)
	work, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	op := &ownedPartition{renewed: acquired, fence: fence, stop: cancelStop, work: cancelWork, done: make(chan struct{})}
	o.owned[p] = op
	n.consumersMu.Lock()
	n.consumers[p] = c
	n.consumersMu.Unlock()
	n.metrics.partitions.Set(float64(len(o.owned)))
	go func() {
		defer close(op.done)
		c.run(stop, work)
	}()
}

// stopPartitions stops the consumers of partitions ps and waits for them.
// With graceful, their in-flight batches are finished (within one
// ShutdownTimeout for all of them); otherwise they are abandoned at once
// (their entries stay pending for the next owner).
func (o *ownership) stopPartitions(ps []int, graceful bool) {
	n := o.n
	for _, p := range ps {
		o.owned[p].stop()
		if !graceful {
			o.owned[p].work()
		}
	}
	t := time.NewTimer(n.cfg.ShutdownTimeout)
	defer t.Stop()
	for _, p := range ps {
		op := o.owned[p]
		select {
		case <-op.done:
		case <-t.C:
			n.log.Warn("partition consumers did not finish their batch in time, abandoning them", "timeout", n.cfg.ShutdownTimeout)
			for _, q := range ps {
				o.owned[q].work()
			}
			<-op.done
		}
	}
	for _, p := range ps {
		<-o.owned[p].done
		o.owned[p].work()
		o.owned[p].fence.revoke()
		delete(o.owned, p)
	}
	n.consumersMu.Lock()
	for _, p := range ps {
		delete(n.consumers, p)
	}
	n.consumersMu.Unlock()
	n.metrics.partitions.Set(float64(len(o.owned)))
	for _, p := range ps {
		n.metrics.forgetPartition(p)
	}
}

// release frees the lease of partition p; false when it could not (the
// lease then expires after LeaseTTL).
func (o *ownership) release(ctx context.Context, p int) bool {
	if err := o.n.backend.Leases.Release(ctx, p, o.n.cfg.NodeID); err != nil {
		o.n.log.Warn("releasing partition lease", "partition", p, "err", err)
		return false
	}
	o.n.metrics.leaseChanges.WithLabelValues("released").Inc()
	return true
}

// shutdown stops every consumer gracefully, then releases the leases and
// unregisters the node with a short, fresh deadline (ctx is done).
func (o *ownership) shutdown(ctx context.Context) {
	n := o.n
	parts := slices.Sorted(maps.Keys(o.owned))
	o.stopPartitions(parts, true)
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), n.cfg.ShutdownTimeout)
	defer cancel()
	released := parts[:0:0]
	for _, p := range parts {
		if o.release(cctx, p) {
			released = append(released, p)
		}
	}
	if len(parts) > 0 {
		n.log.Info("partition leases released for the next owners", "partitions", released, "not_released", len(parts)-len(released))
	}
	if err := n.backend.Nodes.Remove(cctx, n.cfg.NodeID); err != nil {
		n.log.Warn("unregistering node", "err", err)
	}
}
