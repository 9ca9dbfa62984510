package integration

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/streamerd/streamer/client"
	"github.com/streamerd/streamer/internal/testwait"
	streamerv1 "github.com/streamerd/streamer/proto/streamer/v1"
	"github.com/streamerd/streamer/store"
)

// The workload of the pool tests. Event i belongs to pair i%16 (a tenant's
// collection; the 16 pairs fall in the 16 partitions), and carries
// r = i/16, its rank within the pair, in fields the subscriptions filter
// on. Every subscription has a plain Go predicate over i that says which
// events it must receive: expectations never come from the node's matching.
const (
	workTenants = 4
	maxEvents   = 400_000 // capacity of the per-event bookkeeping
)

// pair is one tenant's collection.
type pair struct{ tenant, collection string }

type workload struct {
	run   string
	pairs []pair // index = partition
	pad   string // document padding
}

// newWorkload picks, for every partition p, a collection of tenant t<p%4>
// that lands in p. docBytes pads documents to about that size.
func newWorkload(run string, docBytes int) *workload {
	w := &workload{run: run, pairs: make([]pair, poolPartitions), pad: strings.Repeat("x", max(docBytes-60, 0))}
	for p := range w.pairs {
		tenant := fmt.Sprintf("t%d", p%workTenants)
		for k := 0; ; k++ {
			c := fmt.Sprintf("c%d", k)
			if store.PartitionOf(tenant, c, poolPartitions) == p {
				w.pairs[p] = pair{tenant, c}
				break
			}
		}
	}
	return w
}

// event returns event i.
func (w *workload) event(i int) *streamerv1.ChangeEvent {
	pr, r := w.pairs[i%poolPartitions], i/poolPartitions
	doc := fmt.Sprintf(`{"n":%d,"k":%d,"tag":"x%d","pad":%q}`, i, r%10, r%3, w.pad)
	return &streamerv1.ChangeEvent{
		EventId: w.run + "-" + strconv.Itoa(i), Tenant: pr.tenant, Collection: pr.collection,
		DocumentId: fmt.Sprintf("d%d", r%50), Operation: streamerv1.Operation_OPERATION_UPDATE,
		Document: []byte(doc), TimestampMs: time.Now().UnixMilli(),
	}
}

// seq parses an event id of this run; false for anything else.
func (w *workload) seq(id string) (int, bool) {
	rest, ok := strings.CutPrefix(id, w.run+"-")
	if !ok {
		return 0, false
	}
	i, err := strconv.Atoi(rest)
	return i, err == nil && i >= 0 && i < maxEvents
}

// subSpec is a subscription and the events it must receive.
type subSpec struct {
	sub     client.Subscription
	matches func(i int) bool
}

// tenantOf is gateway g's tenant: gateways only ever subscribe to their own
// tenant's data, as the reference gateway does.
func tenantOf(g int) string { return fmt.Sprintf("t%d", g%workTenants) }

// subscriptions returns gateway g's 20 subscriptions: five kinds on each of
// its tenant's four collections.
func (w *workload) subscriptions(g int) []subSpec {
	var out []subSpec
	for p, pr := range w.pairs {
		if pr.tenant != tenantOf(g) {
			continue
		}
		in := func(i int) bool { return i%poolPartitions == p }
		rank := func(i int) int { return i / poolPartitions }
		k := (g + p) % 10
		base := client.Subscription{Tenant: pr.tenant, Collection: pr.collection}
		add := func(kind string, s client.Subscription, m func(int) bool) {
			s.ID, s.Tenant, s.Collection = kind+"-"+pr.collection, base.Tenant, base.Collection
			out = append(out, subSpec{sub: s, matches: func(i int) bool { return in(i) && m(i) }})
		}
		add("all", client.Subscription{}, func(int) bool { return true })
		add("k", client.Subscription{Filters: []client.Filter{{Field: "k", Op: "==", Value: k}}}, func(i int) bool { return rank(i)%10 == k })
		add("cel", client.Subscription{CEL: "doc.k >= 7"}, func(i int) bool { return rank(i)%10 >= 7 })
		add("doc", client.Subscription{DocumentID: fmt.Sprintf("d%d", g%50)}, func(i int) bool { return rank(i)%50 == g%50 })
		add("in", client.Subscription{Filters: []client.Filter{{Field: "tag", Op: "in", Value: []any{"x0", "x2"}}}},
			func(i int) bool { return rank(i)%3 != 1 })
	}
	return out
}

// publisher publishes the workload's events in order, retrying every event
// until a node has appended it (so a node or Redis failure never loses one;
// an ambiguous failure may append one twice, which the dedup layers drop).
type publisher struct {
	w      *workload
	pub    *client.Publisher
	next   atomic.Int64 // the next event to publish: all before it are appended
	sentAt []atomic.Int64
	calls  atomic.Int64
	retry  atomic.Int64 // calls or events sent again after a failure

	stop chan struct{}
	done chan struct{}
}

func newPublisher(t testing.TB, p *pool, w *workload) *publisher {
	t.Helper()
	pub, err := client.NewPublisher("pool", p.dialer(nil))
	if err != nil {
		t.Fatal(err)
	}
	pb := &publisher{w: w, pub: pub, sentAt: make([]atomic.Int64, maxEvents), stop: make(chan struct{}), done: make(chan struct{})}
	close(pb.done) // not running
	t.Cleanup(func() { pb.halt(); _ = pub.Close() })
	return pb
}

// publishBatch appends events [from, to) and returns once all are appended
// or ctx ends.
func (pb *publisher) publishBatch(ctx context.Context, from, to int) error {
	events := make([]*streamerv1.ChangeEvent, 0, to-from)
	now := time.Now().UnixNano()
	for i := from; i < to; i++ {
		events = append(events, pb.w.event(i))
		pb.sentAt[i].Store(now)
	}
	for len(events) > 0 {
		pb.calls.Add(1)
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		res, err := pb.pub.Publish(cctx, events)
		cancel()
		if err == nil {
			var failed []*streamerv1.ChangeEvent
			for i, r := range res {
				if r.GetError() != nil {
					failed = append(failed, events[i])
				}
			}
			if events = failed; len(events) == 0 {
				break
			}
		}
		pb.retry.Add(1)
		select { // retry pacing, not synchronisation
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	pb.next.Store(int64(to))
	return nil
}

// publishAll publishes events [from, to) in batches, as fast as possible.
func (pb *publisher) publishAll(t testing.TB, from, to, batch int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), poolWait)
	defer cancel()
	for i := from; i < to; i += batch {
		if err := pb.publishBatch(ctx, i, min(i+batch, to)); err != nil {
			t.Fatalf("publishing events %d…: %v", i, err)
		}
	}
}

// startContinuous publishes in the background at rate events/s in batches,
// until halt.
func (pb *publisher) startContinuous(rate, batch int) {
	pb.stop, pb.done = make(chan struct{}), make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-pb.stop
		cancel()
	}()
	go func() {
		defer close(pb.done)
		interval := time.Duration(batch) * time.Second / time.Duration(rate)
		next := time.Now()
		for i := int(pb.next.Load()); ctx.Err() == nil && i+batch <= maxEvents; i += batch {
			if err := pb.publishBatch(ctx, i, i+batch); err != nil {
				return
			}
			next = next.Add(interval)
			select { // pacing
			case <-ctx.Done():
				return
			case <-time.After(time.Until(next)):
			}
		}
	}()
}

// halt stops a continuous run and waits for it; the events published so far
// are [0, next).
func (pb *publisher) halt() {
	select {
	case <-pb.stop:
	default:
		close(pb.stop)
	}
	<-pb.done
}

// recorder checks what gateways receive against the workload.
type recorder struct {
	t    testing.TB
	w    *workload
	pub  *publisher
	regs *registrations

	mu  sync.Mutex
	gws []*gateway
	wg  sync.WaitGroup
}

// gateway is one client.Conn and what it received.
type gateway struct {
	g    int
	id   string
	conn *client.Conn
	from int // events from here on must all arrive (published after its subscriptions)
	subs map[string]*subRecord

	// Counters, under recorder.mu.
	delivered                                         int64 // distinct expected pairs (events from gw.from on)
	duplicates, foreign, unexpected, resyncs, dropped int
	latencies                                         []time.Duration
	firstAt                                           map[int]time.Time // first reception of each event, by index
	handed                                            int               // deliveries handed out so far: the position of the next
	resyncLog                                         []resyncMark      // every Resync, in order

	hold chan struct{} // while not nil, the reader does not read (a slow consumer); closed to resume
}

// resyncMark is where and when a gateway got a Resync.
type resyncMark struct {
	pos int
	at  time.Time
}

// subRecord is one subscription's received events.
type subRecord struct {
	spec     subSpec
	got      map[int]bool // by event index
	gotAt    map[int]int  // position (gateway.handed) of the first reception, by event index
	last     int          // greatest index received
	disorder int          // events received after a later one (first receptions only)
}

func newRecorder(t testing.TB, w *workload, pub *publisher) *recorder {
	r := &recorder{t: t, w: w, pub: pub, regs: &registrations{}}
	t.Cleanup(r.closeAll)
	return r
}

// attach dials gateway g (preferring node prefer), subscribes its
// subscriptions and starts recording its deliveries. Extra options go to
// Dial; with read false, nobody reads its deliveries until startReading.
func (r *recorder) attach(p *pool, g int, prefer *nodeProc, read bool, opts ...client.Option) *gateway {
	r.t.Helper()
	id := fmt.Sprintf("%s-gw%d", r.w.run, g)
	ctx, cancel := context.WithTimeout(context.Background(), poolWait)
	defer cancel()
	opts = append([]client.Option{p.dialer(prefer), client.WithGatewayID(id), client.WithBackoff(20*time.Millisecond, 500*time.Millisecond),
		client.WithLogger(slog.New(r.regs.handler()))}, opts...)
	conn, err := client.Dial(ctx, "pool", opts...)
	if err != nil {
		r.t.Fatalf("gateway %s: %v", id, err)
	}
	gw := &gateway{g: g, id: id, conn: conn, subs: map[string]*subRecord{}, firstAt: map[int]time.Time{}}
	specs := r.w.subscriptions(g)
	for _, s := range specs {
		gw.subs[s.sub.ID] = &subRecord{spec: s, got: map[int]bool{}, gotAt: map[int]int{}, last: -1}
	}
	r.mu.Lock()
	r.gws = append(r.gws, gw)
	r.mu.Unlock()
	if read {
		r.startReading(gw)
	}
	for _, s := range specs {
		if err := conn.Subscribe(ctx, s.sub); err != nil {
			r.t.Fatalf("gateway %s: subscribe %s: %v", id, s.sub.ID, err)
		}
	}
	r.mu.Lock() // record reads it
	gw.from = int(r.pub.next.Load())
	r.mu.Unlock()
	return gw
}

// startReading starts the goroutine recording gw's deliveries.
func (r *recorder) startReading(gw *gateway) {
	r.wg.Go(func() {
		for d := range gw.conn.Deliveries() {
			r.record(gw, d, time.Now())
			r.mu.Lock()
			hold := gw.hold
			r.mu.Unlock()
			if hold != nil {
				<-hold
			}
		}
	})
}

func (r *recorder) record(gw *gateway, d client.Delivery, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	gw.handed++
	switch {
	case d.Resync != nil:
		gw.resyncs++
		gw.resyncLog = append(gw.resyncLog, resyncMark{pos: gw.handed, at: now})
		return
	case d.Dropped != nil:
		gw.dropped++
		return
	}
	for _, m := range d.Matches {
		i, ok := r.w.seq(m.Event.GetEventId())
		if !ok {
			continue // another run's event
		}
		if m.Event.GetTenant() != tenantOf(gw.g) {
			gw.foreign++
			continue
		}
		for _, id := range m.SubscriptionIDs {
			s := gw.subs[id]
			if s == nil || !s.spec.matches(i) {
				gw.unexpected++
				continue
			}
			if s.got[i] {
				gw.duplicates++
				continue
			}
			s.got[i] = true
			s.gotAt[i] = gw.handed
			if i < s.last {
				s.disorder++
			}
			s.last = max(s.last, i)
			if i >= gw.from {
				gw.delivered++
				gw.latencies = append(gw.latencies, now.Sub(time.Unix(0, r.pub.sentAt[i].Load())))
			}
			if _, seen := gw.firstAt[i]; !seen {
				gw.firstAt[i] = now
			}
		}
	}
}

// latencyOf returns the p50, p99 and maximum of publish → first reception
// at each gateway, over the events of index [from, to).
func (r *recorder) latencyOf(from, to int) (p50, p99, maxLat time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var l []time.Duration
	for _, gw := range r.gws {
		for i, at := range gw.firstAt {
			if i >= from && i < to {
				l = append(l, at.Sub(time.Unix(0, r.pub.sentAt[i].Load())))
			}
		}
	}
	if len(l) == 0 {
		return 0, 0, 0
	}
	slices.Sort(l)
	return l[len(l)/2], l[len(l)*99/100], l[len(l)-1]
}

// expected counts the pairs that must arrive at gws (all gateways when
// none): every event in [gw.from, upTo) matching each subscription.
func (r *recorder) expected(upTo int, gws ...*gateway) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(gws) == 0 {
		gws = r.gws
	}
	var n int64
	for _, gw := range gws {
		for _, s := range gw.subs {
			for i := gw.from; i < upTo; i++ {
				if s.spec.matches(i) {
					n++
				}
			}
		}
	}
	return n
}

// received counts the distinct expected pairs gws (all when none) got.
func (r *recorder) received(gws ...*gateway) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(gws) == 0 {
		gws = r.gws
	}
	var n int64
	for _, gw := range gws {
		n += gw.delivered
	}
	return n
}

// waitComplete waits until gws (all gateways when none) have received every
// expected pair of events [0, upTo), and returns the count.
func (r *recorder) waitComplete(upTo int, gws ...*gateway) int64 {
	r.t.Helper()
	want := r.expected(upTo, gws...)
	if f := testwait.Until(poolWait, func() (bool, any) { return r.received(gws...) >= want, nil }); f != nil {
		r.t.Fatalf("after %v: %d of %d expected (event, subscription) pairs delivered; first missing: %s",
			poolWait, r.received(gws...), want, r.missing(upTo, 10))
	}
	return want
}

// missing describes up to n expected pairs not received.
func (r *recorder) missing(upTo, n int) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, gw := range r.gws {
		for id, s := range gw.subs {
			for i := gw.from; i < upTo && len(out) < n; i++ {
				if s.spec.matches(i) && !s.got[i] {
					out = append(out, fmt.Sprintf("%s/%s/event %d (partition %d)", gw.id, id, i, i%poolPartitions))
				}
			}
		}
	}
	return strings.Join(out, ", ")
}

// totals are the figures a test checks and logs.
type totals struct {
	duplicates, clientDuplicates, foreign, unexpected, disorder, resyncs, dropped, reconnects int
	p50, p99, maxLat                                                                          time.Duration
}

func (r *recorder) totals() totals {
	r.mu.Lock()
	defer r.mu.Unlock()
	var t totals
	var lat []time.Duration
	for _, gw := range r.gws {
		t.duplicates += gw.duplicates
		t.foreign += gw.foreign
		t.unexpected += gw.unexpected
		t.resyncs += gw.resyncs
		t.dropped += gw.dropped
		st := gw.conn.Stats()
		t.clientDuplicates += int(st.Duplicates)
		t.reconnects += int(st.Reconnects)
		for _, s := range gw.subs {
			t.disorder += s.disorder
		}
		lat = append(lat, gw.latencies...)
	}
	slices.Sort(lat)
	if len(lat) > 0 {
		t.p50, t.p99, t.maxLat = lat[len(lat)/2], lat[min(len(lat)-1, len(lat)*99/100)], lat[len(lat)-1]
	}
	return t
}

// check fails the test on any foreign, unexpected, out-of-order or resynced
// delivery, and logs the figures.
func (r *recorder) check(what string, events int, expected int64, elapsed time.Duration) totals {
	r.t.Helper()
	t := r.totals()
	r.t.Logf("%s: %d events, %d expected pairs, all delivered in %v; duplicates: %d after the client's dedup (+%d dropped by it); "+
		"reconnects %d; publish calls %d (%d retried); latency p50 %v p99 %v max %v",
		what, events, expected, elapsed.Round(time.Millisecond), t.duplicates, t.clientDuplicates, t.reconnects,
		r.pub.calls.Load(), r.pub.retry.Load(), t.p50.Round(time.Microsecond), t.p99.Round(time.Microsecond), t.maxLat.Round(time.Microsecond))
	if t.foreign != 0 || t.unexpected != 0 || t.disorder != 0 || t.resyncs != 0 || t.dropped != 0 {
		r.t.Errorf("foreign-tenant deliveries %d, unexpected pairs %d, out-of-order %d, resyncs %d, dropped subscriptions %d; want all 0",
			t.foreign, t.unexpected, t.disorder, t.resyncs, t.dropped)
	}
	return t
}

// closeAll closes every gateway and waits for the recording goroutines.
func (r *recorder) closeAll() {
	r.mu.Lock()
	gws := r.gws
	r.mu.Unlock()
	for _, gw := range gws {
		_ = gw.conn.Close()
	}
	r.wg.Wait()
}

// gatewaysOn returns the gateways whose latest registration was with node.
func (r *recorder) gatewaysOn(node string) []*gateway {
	r.mu.Lock()
	gws := r.gws
	r.mu.Unlock()
	var out []*gateway
	for _, gw := range gws {
		if regs := r.regs.since(gw.id, time.Time{}); len(regs) > 0 && regs[len(regs)-1].node == node {
			out = append(out, gw)
		}
	}
	return out
}
