package bench

import (
	"context"
	"time"
)

// The scale scenario (Config.Scale): the run starts with one node and,
// during the measured phase, grows the pool to four nodes and shrinks it
// back to one, a node at a time, at equal intervals (a seventh of the
// duration each). Nodes leave gracefully (what SIGTERM does: sessions
// closed, batches finished, leases released). The gateways and publishers
// use the first node, which stays.

// scaleNodes is the pool's size after each step.
var scaleNodes = []int{2, 3, 4, 3, 2, 1}

// ScaleStep is one step of the scale scenario.
type ScaleStep struct {
	From, To int
	// AtSec is when the step began, in seconds since the measured phase
	// began; BalancedSec how long the partitions took to be spread over
	// the new pool (-1: not before the next step).
	AtSec, BalancedSec float64
	// Latency of the matches received from the step to the next one.
	P50Ms, P99Ms, MaxMs float64
}

// scale runs the steps from start on; the returned channel yields them once
// the last one is done (or ctx ended). The summary prints them: this
// goroutine does not share the progress writer.
func (r *run) scale(ctx context.Context, start time.Time) <-chan []ScaleStep {
	out := make(chan []ScaleStep, 1)
	go func() {
		live := []int{0}
		var steps []ScaleStep
		defer func() { out <- steps }()
		every := r.cfg.Duration / time.Duration(len(scaleNodes)+1)
		for k, want := range scaleNodes {
			at := start.Add(every * time.Duration(k+1))
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Until(at)):
			}
			step := ScaleStep{From: len(live), To: want, AtSec: time.Since(start).Seconds(), BalancedSec: -1}
			if want > len(live) {
				if err := r.cl.addNode(ctx); err != nil {
					r.cl.log.Error("scale: adding a node", "err", err) // the progress writer is not this goroutine's
					return
				}
				live = append(live, len(r.cl.nodes)-1)
			} else {
				r.cl.stopNode(live[len(live)-1])
				live = live[:len(live)-1]
			}
			next := at.Add(every)
			for time.Now().Before(next) && ctx.Err() == nil {
				if r.cl.balanced(ctx, live) {
					step.BalancedSec = time.Since(start).Seconds() - step.AtSec
					break
				}
				time.Sleep(20 * time.Millisecond) // polling Redis for the leases' owners
			}
			steps = append(steps, step)
		}
	}()
	return out
}

// scaleLatencies fills each step's latency from the timeline: the matches
// received from the step's second to the next step's.
func (r *run) scaleLatencies(steps []ScaleStep) {
	r.tl.mu.Lock() // late matches may still be recorded
	defer r.tl.mu.Unlock()
	for i := range steps {
		from := int(steps[i].AtSec)
		to := len(r.tl.seconds)
		if i+1 < len(steps) {
			to = int(steps[i+1].AtSec)
		}
		h := NewHistogram(coarseBits)
		for s := from; s < to && s < len(r.tl.seconds); s++ {
			h.Merge(r.tl.seconds[s].lat)
		}
		steps[i].P50Ms, steps[i].P99Ms, steps[i].MaxMs = ms(h.Quantile(0.5)), ms(h.Quantile(0.99)), ms(h.Max())
	}
}
