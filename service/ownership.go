package service

import (
	"context"
	"hash/fnv"
	"time"
)

// ownership decides which partitions this node consumes, through the
// backend's leases and node registry, and starts and stops their consumers.
// Each round it heartbeats the node, computes its fair share
// ceil(P / live nodes), renews the leases it holds (stopping a partition at
// once when its lease is lost), releases extras beyond the share (finishing
// their in-flight batch first) and acquires free leases up to the share. An
// embedded node is the only live node, so it owns every partition.
type ownership struct {
	n     *Node
	owned map[int]*ownedPartition
	first int // where this node starts looking for free partitions
}

// ownedPartition is a running consumer and its lease state.
type ownedPartition struct {
	renewed    time.Time // start of the last successful Acquire or Renew
	stop, work context.CancelFunc
	done       chan struct{}
}

func newOwnership(n *Node) *ownership {
	h := fnv.New32a()
	h.Write([]byte(n.cfg.NodeID))
	return &ownership{n: n, owned: map[int]*ownedPartition{}, first: int(h.Sum32() % uint32(n.cfg.Partitions))}
}

// run rebalances every LeaseTTL/3 until ctx is done, then stops every
// consumer (letting in-flight batches finish within ShutdownTimeout),
// releases the leases and unregisters the node.
func (o *ownership) run(ctx context.Context) {
	n := o.n
	every := n.cfg.LeaseTTL / 3
	o.rebalance(ctx)
	n.ready.Store(!n.draining.Load())
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			o.shutdown(ctx)
			return
		case <-t.C:
			o.rebalance(ctx)
		}
	}
}

// rebalance is one ownership round.
func (o *ownership) rebalance(ctx context.Context) {
	n := o.n
	ttl := n.cfg.LeaseTTL
	if err := n.backend.Nodes.Heartbeat(ctx, n.cfg.NodeID, ttl); err != nil && ctx.Err() == nil {
		n.log.Warn("node heartbeat", "err", err)
	}
	share := len(o.owned)
	if live, err := n.backend.Nodes.Live(ctx); err == nil {
		share = (n.cfg.Partitions + max(len(live), 1) - 1) / max(len(live), 1)
	} else if ctx.Err() == nil {
		n.log.Warn("listing live nodes", "err", err)
	}

	for p, op := range o.owned {
		start := time.Now()
		ok, err := n.backend.Leases.Renew(ctx, p, n.cfg.NodeID, ttl)
		switch {
		case err == nil && ok:
			op.renewed = start
		case err == nil && !ok:
			n.log.Error("partition lease lost, stopping its consumer", "partition", p)
			o.stopPartitions([]int{p}, false)
		case time.Since(op.renewed) >= ttl:
			n.log.Error("partition lease could not be renewed in time, stopping its consumer", "partition", p, "err", err)
			o.stopPartitions([]int{p}, false)
		default:
			n.log.Warn("renewing partition lease", "partition", p, "err", err)
		}
	}

	for p := n.cfg.Partitions - 1; p >= 0 && len(o.owned) > share; p-- {
		if _, ok := o.owned[p]; ok {
			n.log.Info("releasing partition to rebalance", "partition", p)
			o.stopPartitions([]int{p}, true)
			o.release(ctx, p)
		}
	}

	var acquired []int
	for i := 0; i < n.cfg.Partitions && len(o.owned) < share && ctx.Err() == nil; i++ {
		p := (o.first + i) % n.cfg.Partitions
		if _, ok := o.owned[p]; ok {
			continue
		}
		start := time.Now()
		ok, err := n.backend.Leases.Acquire(ctx, p, n.cfg.NodeID, ttl)
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
		n.log.Info("partitions acquired", "partitions", acquired, "owned", len(o.owned), "share", share)
	}
}

// startPartition starts the consumer of partition p. Its work context is
// detached from ctx so that a shutdown finishes the in-flight batch;
// stopPartition cancels it.
func (o *ownership) startPartition(ctx context.Context, p int, renewed time.Time) {
	n := o.n
	c := newConsumer(n, p)
	stop, cancelStop := context.WithCancel(ctx)
	work, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	op := &ownedPartition{renewed: renewed, stop: cancelStop, work: cancelWork, done: make(chan struct{})}
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
		delete(o.owned, p)
	}
	n.consumersMu.Lock()
	for _, p := range ps {
		delete(n.consumers, p)
	}
	n.consumersMu.Unlock()
	n.metrics.partitions.Set(float64(len(o.owned)))
}

// release frees the lease of partition p.
func (o *ownership) release(ctx context.Context, p int) {
	if err := o.n.backend.Leases.Release(ctx, p, o.n.cfg.NodeID); err != nil {
		o.n.log.Warn("releasing partition lease", "partition", p, "err", err)
	}
}

// shutdown stops every consumer gracefully, then releases the leases and
// unregisters the node with a short, fresh deadline (ctx is done).
func (o *ownership) shutdown(ctx context.Context) {
	n := o.n
	parts := make([]int, 0, len(o.owned))
	for p := range o.owned {
		parts = append(parts, p)
	}
	o.stopPartitions(parts, true)
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), n.cfg.ShutdownTimeout)
	defer cancel()
	for _, p := range parts {
		o.release(cctx, p)
	}
	if err := n.backend.Nodes.Remove(cctx, n.cfg.NodeID); err != nil {
		n.log.Warn("unregistering node", "err", err)
	}
}
