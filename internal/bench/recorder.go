package bench

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/streamerd/streamer/client"
)

// recorder is the receiving side of a run: one goroutine per gateway reads
// its Deliveries and records every (event, subscription) pair it gets,
// publish→receive latencies of measured events, and marker arrivals.
type recorder struct {
	wl       *workload
	gateways int

	// maxSeen is the highest event seq any gateway has received; publishing
	// in max mode stays within MaxInFlight of it.
	maxSeen  atomic.Uint64
	progress chan struct{} // non-blocking signal: maxSeen moved

	pairsTotal atomic.Int64 // pairs received so far, for progress lines
	tl         *timeline

	markersMu sync.Mutex
	markers   [2]markerSet // by phase

	wg  sync.WaitGroup
	per []*gatewayRecord // by gateway, read after wg.Wait
}

// gatewayRecord is what one gateway received; owned by its receiver.
type gatewayRecord struct {
	pairs    []uint64 // seq<<32 | subscription index within the gateway
	wrongOp  int64    // pairs delivered with an operation other than the event's
	foreign  int64    // matches whose event or subscription id the harness did not make
	resyncs  int64
	dropped  int64
	finalErr error
}

// markerSet tracks the markers of one phase: every gateway must get every
// collection's marker.
type markerSet struct {
	seen map[[2]int]bool // (gateway, collection)
	done chan struct{}   // closed when complete
}

func newRecorder(wl *workload, gateways int, tl *timeline) *recorder {
	r := &recorder{wl: wl, gateways: gateways, tl: tl, progress: make(chan struct{}, 1)}
	for i := range r.markers {
		r.markers[i] = markerSet{seen: map[[2]int]bool{}, done: make(chan struct{})}
	}
	r.per = make([]*gatewayRecord, gateways)
	return r
}

// start runs the receiver of gateway g until conn's Deliveries is closed.
func (r *recorder) start(g int, conn benchGateway) {
	rec := &gatewayRecord{}
	r.per[g] = rec
	r.wg.Go(func() {
		for d := range conn.Deliveries() {
			r.delivery(g, rec, d)
		}
		rec.finalErr = conn.Err()
	})
}

// wait waits for every receiver to finish (after their Conns are closed).
func (r *recorder) wait() { r.wg.Wait() }

// markersDone returns a channel closed once every marker of ph arrived.
func (r *recorder) markersDone(ph phase) <-chan struct{} { return r.markers[ph].done }

func (r *recorder) delivery(g int, rec *gatewayRecord, d client.Delivery) {
	now := time.Now()
	switch {
	case d.Resync != nil:
		rec.resyncs++
		return
	case d.Dropped != nil:
		rec.dropped++
		return
	}
	var lat []time.Duration
	var pairs int64
	var top uint64
	for _, m := range d.Matches {
		id, ok := parseEventID(m.Event.GetEventId())
		if !ok {
			rec.foreign++
			continue
		}
		if id.marker {
			r.marker(id.phase, g, int(id.seq))
			continue
		}
		if m.Operation != r.wl.event(id.seq).op {
			rec.wrongOp += int64(len(m.SubscriptionIDs))
		}
		for _, sid := range m.SubscriptionIDs {
			i, ok := subIndex(sid)
			if !ok {
				rec.foreign++
				continue
			}
			rec.pairs = append(rec.pairs, id.seq<<32|uint64(i))
			pairs++
		}
		top = max(top, id.seq)
		if id.phase == phaseMeasure {
			lat = append(lat, now.Sub(time.Unix(0, id.stamp)))
		}
	}
	r.pairsTotal.Add(pairs)
	r.tl.received(now, pairs, lat)
	for {
		cur := r.maxSeen.Load()
		if top <= cur || r.maxSeen.CompareAndSwap(cur, top) {
			break
		}
	}
	select {
	case r.progress <- struct{}{}:
	default:
	}
}

// marker records the arrival of ph's marker of collection c at gateway g.
func (r *recorder) marker(ph phase, g, c int) {
	r.markersMu.Lock()
	defer r.markersMu.Unlock()
	ms := &r.markers[ph]
	k := [2]int{g, c}
	if ms.seen[k] {
		return
	}
	ms.seen[k] = true
	if len(ms.seen) == r.gateways*r.wl.collections {
		close(ms.done)
	}
}

// subIndex reads a subscription id "s<i>".
func subIndex(id string) (uint32, bool) {
	if len(id) < 2 || id[0] != 's' {
		return 0, false
	}
	n, err := strconv.ParseUint(id[1:], 10, 32)
	return uint32(n), err == nil
}

// timeline accumulates per-second throughput and latency of the measured
// phase, and the overall latency histogram. Safe for concurrent use.
type timeline struct {
	mu      sync.Mutex
	start   time.Time // zero until the measured phase starts
	seconds []*second
	overall *Histogram
}

// second is one second of the measured phase, by wall time since its
// start.
type second struct {
	published int64 // events published (stamped) in this second
	pairs     int64 // (event, subscription) pairs received
	lat       *Histogram
}

func newTimeline() *timeline { return &timeline{overall: NewHistogram(preciseBits)} }

// begin starts the measured phase at t.
func (tl *timeline) begin(t time.Time) {
	tl.mu.Lock()
	tl.start = t
	tl.mu.Unlock()
}

// at returns the second of t, growing the timeline; nil before begin.
// Called with mu held.
func (tl *timeline) at(t time.Time) *second {
	if tl.start.IsZero() || t.Before(tl.start) {
		return nil
	}
	i := int(t.Sub(tl.start) / time.Second)
	for len(tl.seconds) <= i {
		tl.seconds = append(tl.seconds, &second{lat: NewHistogram(coarseBits)})
	}
	return tl.seconds[i]
}

// published counts n events published at t.
func (tl *timeline) published(t time.Time, n int) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	if s := tl.at(t); s != nil {
		s.published += int64(n)
	}
}

// received counts pairs received at t and the latencies of the measured
// events among them.
func (tl *timeline) received(t time.Time, pairs int64, lat []time.Duration) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	s := tl.at(t)
	if s == nil {
		return
	}
	s.pairs += pairs
	for _, d := range lat {
		s.lat.Record(d)
		tl.overall.Record(d)
	}
}

// snapshot returns second i's counters and latency quantiles (ok false when
// the timeline has no such second yet).
func (tl *timeline) snapshot(i int) (published, pairs int64, p50, p99 time.Duration, ok bool) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	if i < 0 || i >= len(tl.seconds) {
		return 0, 0, 0, 0, false
	}
	s := tl.seconds[i]
	return s.published, s.pairs, s.lat.Quantile(0.5), s.lat.Quantile(0.99), true
}

// Second is one second of the measured phase in a Result.
type Second struct {
	// T is the second's start, in seconds since the measured phase began.
	T int `json:"t"`
	// Published is the number of events published (stamped) in it.
	Published int64 `json:"published"`
	// Deliveries is the number of (event, subscription) pairs received.
	Deliveries int64 `json:"deliveries"`
	// P50Ms and P99Ms are the latencies of the matches received in it.
	P50Ms float64 `json:"p50_ms"`
	P99Ms float64 `json:"p99_ms"`
}

// result returns the timeline's seconds.
func (tl *timeline) result() []Second {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	out := make([]Second, len(tl.seconds))
	for i, s := range tl.seconds {
		out[i] = Second{T: i, Published: s.published, Deliveries: s.pairs,
			P50Ms: ms(s.lat.Quantile(0.5)), P99Ms: ms(s.lat.Quantile(0.99))}
	}
	return out
}

// ms converts d to fractional milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
