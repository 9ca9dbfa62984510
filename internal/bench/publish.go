package bench

import (
	"context"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/streamerd/streamer/client"
	streamerv1 "github.com/streamerd/streamer/proto/streamer/v1"
)

// publishTick is the pacing step of a fixed-rate phase: every tick
// publishes the events due by then.
const publishTick = time.Millisecond

// publisher publishes a run's events through the Ingest service of the
// nodes (round-robin over Publishers, one per node).
type publisher struct {
	cfg  Config
	wl   *workload
	rec  *recorder
	tl   *timeline
	pubs []*client.Publisher

	next atomic.Uint64 // next event seq; every seq below it was published
	rr   atomic.Uint64
}

func newPublisher(cfg Config, wl *workload, rec *recorder, tl *timeline, addrs []string) (*publisher, error) {
	p := &publisher{cfg: cfg, wl: wl, rec: rec, tl: tl}
	for _, a := range addrs {
		pub, err := client.NewPublisher(a)
		if err != nil {
			p.close()
			return nil, err
		}
		p.pubs = append(p.pubs, pub)
	}
	return p, nil
}

func (p *publisher) close() {
	for _, pub := range p.pubs {
		_ = pub.Close()
	}
}

// published returns the number of events published so far (seq 0 to n-1).
func (p *publisher) published() uint64 { return p.next.Load() }

// send publishes one batch; a rejected event is an error.
func (p *publisher) send(ctx context.Context, batch []*streamerv1.ChangeEvent) error {
	pub := p.pubs[p.rr.Add(1)%uint64(len(p.pubs))]
	res, err := pub.Publish(ctx, batch)
	if err != nil {
		return fmt.Errorf("bench: publish: %w", err)
	}
	for _, r := range res {
		if e := r.GetError(); e != nil {
			return fmt.Errorf("bench: event %s rejected: %s: %s", r.GetEventId(), e.GetCode(), e.GetMessage())
		}
	}
	return nil
}

// run publishes phase ph for d: at cfg.Rate, or as fast as the system
// absorbs when it is 0. It returns once every event of the phase is
// published (acknowledged by a node).
func (p *publisher) run(ctx context.Context, ph phase, d time.Duration) error {
	if p.cfg.Rate > 0 {
		return p.paced(ctx, ph, d)
	}
	return p.saturate(ctx, ph, d)
}

// paced publishes at cfg.Rate: the events due by each tick (every
// publishTick) are handed to the publish workers; while all of them are
// busy, due events accumulate and leave together, up to cfg.Batch per
// Publish. Each event is stamped with the scheduled time of the tick it was
// due at, not the time it is actually sent: when publishing falls behind
// (the nodes push back), the delay counts in the latency instead of
// silently lowering the rate (no coordinated omission).
func (p *publisher) paced(ctx context.Context, ph phase, d time.Duration) error {
	pc, err := newPacer()
	if err != nil {
		return err
	}
	defer pc.close()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	batches := make(chan []*streamerv1.ChangeEvent)
	var wg sync.WaitGroup
	for range p.cfg.Publishers {
		wg.Go(func() {
			for b := range batches {
				if err := p.send(ctx, b); err != nil {
					cancel(err)
				}
				releaseEvents(b)
			}
		})
	}
	s := schedule{rate: p.cfg.Rate, start: time.Now()}
	total := uint64(p.cfg.Rate * d.Seconds())
	first := p.next.Load()
	sent := uint64(0)
loop:
	for sent < total {
		due := min(total, s.dueBy(time.Now()))
		if due == sent {
			ok, err := sleepUntil(ctx, pc, s.nextTick(time.Now()))
			if err != nil {
				cancel(err)
			}
			if !ok {
				break
			}
			continue
		}
		n := min(due-sent, uint64(p.cfg.Batch))
		batch := make([]*streamerv1.ChangeEvent, n)
		var tick time.Time // of the events counted in run
		run := 0
		for i := range batch {
			j := sent + uint64(i)
			stamp := s.dueAt(j)
			batch[i] = p.wl.changeEvent(ph, first+j, stamp)
			if !stamp.Equal(tick) {
				p.countPublished(ph, tick, run)
				tick, run = stamp, 0
			}
			run++
		}
		p.countPublished(ph, tick, run)
		select {
		case batches <- batch:
		case <-ctx.Done():
			break loop
		}
		sent += n
		p.next.Store(first + sent)
	}
	close(batches)
	wg.Wait()
	return context.Cause(ctx)
}

// countPublished adds n events due at tick to the timeline of the
// measured phase, in the middle of the tick they were due in.
func (p *publisher) countPublished(ph phase, tick time.Time, n int) {
	if ph == phaseMeasure && n > 0 {
		p.tl.published(tick.Add(-publishTick/2), n)
	}
}

// schedule is the timetable of a fixed-rate phase: event j (from 0) is due
// at the first tick by which rate × elapsed exceeds j.
type schedule struct {
	rate  float64
	start time.Time
}

// dueBy returns how many events are due by the last tick at or before t.
func (s schedule) dueBy(t time.Time) uint64 {
	return s.dueByTick(uint64(max(t.Sub(s.start), 0) / publishTick))
}

func (s schedule) dueByTick(k uint64) uint64 {
	return uint64(s.rate * (time.Duration(k) * publishTick).Seconds())
}

// dueAt returns the scheduled time of event j: its tick.
func (s schedule) dueAt(j uint64) time.Time {
	k := uint64(math.Ceil(float64(j+1) / (s.rate * publishTick.Seconds())))
	for k > 0 && s.dueByTick(k-1) > j { // correct float rounding both ways
		k--
	}
	for s.dueByTick(k) <= j {
		k++
	}
	return s.start.Add(time.Duration(k) * publishTick)
}

// nextTick returns the first tick after t.
func (s schedule) nextTick(t time.Time) time.Time {
	k := max(t.Sub(s.start), 0)/publishTick + 1
	return s.start.Add(k * publishTick)
}

// saturate publishes as fast as Publish returns with cfg.Publishers calls in
// flight, each stamped when sent, pausing while more than cfg.MaxInFlight
// events are ahead of the newest one any gateway received.
func (p *publisher) saturate(ctx context.Context, ph phase, d time.Duration) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for range p.cfg.Publishers {
		wg.Go(func() {
			for ctx.Err() == nil && time.Now().Before(deadline) {
				if !p.waitInFlight(ctx) {
					return
				}
				first := p.next.Add(uint64(p.cfg.Batch)) - uint64(p.cfg.Batch)
				stamp := time.Now()
				batch := make([]*streamerv1.ChangeEvent, p.cfg.Batch)
				for i := range batch {
					batch[i] = p.wl.changeEvent(ph, first+uint64(i), stamp)
				}
				if ph == phaseMeasure {
					p.tl.published(stamp, len(batch))
				}
				if err := p.send(ctx, batch); err != nil {
					cancel(err)
					return
				}
				releaseEvents(batch)
			}
		})
	}
	wg.Wait()
	return context.Cause(ctx)
}

// waitInFlight waits until the publishers are at most MaxInFlight events
// ahead of what the gateways received; false when ctx ended first.
func (p *publisher) waitInFlight(ctx context.Context) bool {
	limit := uint64(p.cfg.MaxInFlight)
	for {
		next, seen := p.next.Load(), p.rec.maxSeen.Load()
		if next <= seen+limit {
			return true
		}
		t := time.NewTimer(time.Millisecond)
		select {
		case <-p.rec.progress:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return false
		}
		t.Stop()
	}
}

// markers publishes the markers closing phase ph.
func (p *publisher) markers(ctx context.Context, ph phase) error {
	return p.send(ctx, p.wl.markerEvents(ph))
}

// sleepUntil waits on pc until t or ctx is done; false when ctx is done.
// It sleeps at most a tick at a time, so that ctx is checked as often.
func sleepUntil(ctx context.Context, pc *pacer, t time.Time) (bool, error) {
	for {
		if ctx.Err() != nil {
			return false, nil
		}
		d := time.Until(t)
		if d <= 0 {
			return true, nil
		}
		if err := pc.sleep(min(d, publishTick)); err != nil {
			return false, err
		}
	}
}
