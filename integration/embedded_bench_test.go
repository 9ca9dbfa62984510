package integration

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
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
	"github.com/streamerd/streamer/service"
	"github.com/streamerd/streamer/store/memory"
)

// The workload of BenchmarkEmbeddedEndToEnd.
const (
	benchGateways    = 4
	benchSubsPerGW   = 10_000
	benchCollections = 8     // spread over partitions (embedded; see benchEnv.collections)
	benchUsers       = 2_500 // distinct values of the equality-filtered field, per collection
	benchDocs        = 20_000
	benchBatch       = 256 // events per Publish call
	benchPublishers  = 4   // concurrent Publish calls in the max-throughput run
	benchTenant      = "bench"
)

// Per gateway: benchCollections marker subscriptions (document id
// "marker"), then this many CEL and document-id subscriptions, the rest
// equality filters.
const (
	benchCELPerGW   = 200
	benchDocIDPerGW = 800
)

// benchSubscriptions returns gateway g's subscriptions over collections
// collections: mostly equality filters on doc.user over many distinct
// values, some document-id and CEL subscriptions (indexable ones with a
// doc.user == … conjunct, and a few distinct scanned ones), and one marker
// subscription per collection.
func benchSubscriptions(g, collections int) []client.Subscription {
	subs := make([]client.Subscription, 0, benchSubsPerGW)
	coll := func(i int) string { return fmt.Sprintf("items%d", i%collections) }
	for c := range collections {
		subs = append(subs, client.Subscription{ID: fmt.Sprintf("marker%d", c), Tenant: benchTenant, Collection: coll(c), DocumentID: "marker"})
	}
	for i := range benchCELPerGW {
		var expr string
		if i%10 == 0 { // scanned: few distinct expressions, shared by identical subscriptions
			expr = fmt.Sprintf("doc.score > %d.5", 990+i%10)
		} else {
			expr = fmt.Sprintf(`doc.user == "u%d" && doc.score >= 50.0`, (g*7919+i*31)%benchUsers)
		}
		subs = append(subs, client.Subscription{ID: fmt.Sprintf("cel%d", i), Tenant: benchTenant, Collection: coll(i), CEL: expr})
	}
	for i := range benchDocIDPerGW {
		subs = append(subs, client.Subscription{ID: fmt.Sprintf("doc%d", i), Tenant: benchTenant, Collection: coll(i),
			DocumentID: fmt.Sprintf("d%d", (g*104729+i*13)%benchDocs)})
	}
	for i := 0; len(subs) < benchSubsPerGW; i++ {
		subs = append(subs, client.Subscription{ID: fmt.Sprintf("eq%d", i), Tenant: benchTenant, Collection: coll(i),
			Filters: []client.Filter{{Field: "user", Op: "==", Value: fmt.Sprintf("u%d", (g*1237+i)%benchUsers)}}})
	}
	return subs
}

// benchEvent returns event seq of run: an update of a random document of a
// random one of collections collections.
func benchEvent(run string, seq int, rnd *rand.Rand, collections int) *streamerv1.ChangeEvent {
	doc := fmt.Sprintf(`{"user":"u%d","score":%.2f,"region":"r%d","n":%d}`,
		rnd.IntN(benchUsers), rnd.Float64()*1000, rnd.IntN(8), seq)
	return &streamerv1.ChangeEvent{
		EventId: run + "-" + strconv.Itoa(seq), Tenant: benchTenant, Collection: fmt.Sprintf("items%d", rnd.IntN(collections)),
		DocumentId: fmt.Sprintf("d%d", rnd.IntN(benchDocs)), Operation: streamerv1.Operation_OPERATION_UPDATE,
		Document: []byte(doc), TimestampMs: time.Now().UnixMilli(),
	}
}

// benchRun is what the receivers need to know about the run in progress.
type benchRun struct {
	name    string
	sentAt  []atomic.Int64 // publish time (UnixNano) of each event, by seq
	markers sync.WaitGroup // one per gateway and collection

	mu         sync.Mutex
	latencies  []time.Duration // one per delivered (event, gateway) match
	deliveries atomic.Int64    // subscription ids delivered
}

// benchEnv is the node(s) and gateways shared by the sub-benchmarks.
type benchEnv struct {
	addr        string
	collections int // the workload's collections
	publishers  int // concurrent Publish calls; 0 = benchPublishers
	pub         *client.Publisher
	conns       []*client.Conn
	run         atomic.Pointer[benchRun]
	fail        chan error
}

func BenchmarkEmbeddedEndToEnd(b *testing.B) {
	env := startBenchEnv(b)
	b.Run("max", func(b *testing.B) { env.measure(b, 0) })
	b.Run("rate=20000", func(b *testing.B) { env.measure(b, 20_000) })
}

func startBenchEnv(b *testing.B) *benchEnv {
	b.Helper()
	backend := memory.New(memory.Config{})
	node, err := service.New(service.Config{NodeID: "bench", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, backend)
	if err != nil {
		b.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := node.NewGRPCServer()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = srv.Serve(lis) })
	wg.Go(func() { _ = node.Run(ctx) })
	env := &benchEnv{addr: lis.Addr().String(), collections: benchCollections, fail: make(chan error, benchGateways)}
	b.Cleanup(func() {
		for _, c := range env.conns {
			_ = c.Close()
		}
		if env.pub != nil {
			_ = env.pub.Close()
		}
		cancel()
		srv.Stop()
		wg.Wait()
		_ = backend.Close()
	})
	admin := node.AdminHandler()
	testwait.For(b, "the node ready", func() bool {
		rec := httptest.NewRecorder()
		admin.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		return rec.Code == http.StatusOK
	})
	if env.pub, err = client.NewPublisher(env.addr); err != nil {
		b.Fatal(err)
	}

	env.subscribeGateways(ctx, b, func(int) []client.Option { return nil })
	for _, c := range env.conns {
		wg.Go(func() { env.receive(c) })
	}
	return env
}

// subscribeGateways dials benchGateways gateways to env.addr (gateway gi
// with opts(gi)) and subscribes benchSubscriptions. Close closes them.
func (env *benchEnv) subscribeGateways(ctx context.Context, b *testing.B, opts func(gi int) []client.Option) {
	b.Helper()
	start := time.Now()
	var g group
	env.conns = make([]*client.Conn, benchGateways)
	for gi := range benchGateways {
		c, err := client.Dial(ctx, env.addr, append([]client.Option{client.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))}, opts(gi)...)...)
		if err != nil {
			b.Fatal(err)
		}
		env.conns[gi] = c
		subs := benchSubscriptions(gi, env.collections)
		const workers = 32 // Subscribe calls in flight per gateway
		for w := range workers {
			g.Go(func() error {
				for i := w; i < len(subs); i += workers {
					if err := c.Subscribe(ctx, subs[i]); err != nil {
						return fmt.Errorf("gateway %d: %w", gi, err)
					}
				}
				return nil
			})
		}
	}
	if err := g.Wait(); err != nil {
		b.Fatal(err)
	}
	b.Logf("%d gateways × %d subscriptions in %v", benchGateways, benchSubsPerGW, time.Since(start).Round(time.Millisecond))
}

// receive records every match delivered to c in the current run, until c
// is closed.
func (env *benchEnv) receive(c *client.Conn) {
	for d := range c.Deliveries() {
		now := time.Now().UnixNano()
		run := env.run.Load()
		if d.Resync != nil || d.Dropped != nil {
			env.fail <- fmt.Errorf("gateway %s: %+v", c.GatewayID(), d)
			continue
		}
		if run == nil {
			continue
		}
		var lat []time.Duration
		for _, m := range d.Matches {
			id := m.Event.GetEventId()
			if m.Event.GetDocumentId() == "marker" {
				if strings.HasPrefix(id, run.name+"-marker") {
					run.markers.Done()
				}
				continue
			}
			rest, ok := strings.CutPrefix(id, run.name+"-")
			seq, err := strconv.Atoi(rest)
			if !ok || err != nil || seq >= len(run.sentAt) {
				continue // a straggler of an earlier run
			}
			run.deliveries.Add(int64(len(m.SubscriptionIDs)))
			lat = append(lat, time.Duration(now-run.sentAt[seq].Load()))
		}
		run.mu.Lock()
		run.latencies = append(run.latencies, lat...)
		run.mu.Unlock()
	}
}

var runCounter atomic.Int64

// measure publishes b.N events (as fast as env.publishers concurrent
// Publish calls go when rate is 0, else at rate events/s), then one marker
// per collection, and waits until every gateway has every marker: by then,
// partition order guarantees it has every match.
func (env *benchEnv) measure(b *testing.B, rate int) {
	run := &benchRun{name: fmt.Sprintf("r%d", runCounter.Add(1)), sentAt: make([]atomic.Int64, b.N)}
	run.markers.Add(benchGateways * env.collections)
	env.run.Store(run)
	defer env.run.Store(nil)

	publishers := cmp.Or(env.publishers, benchPublishers)
	batches := make(chan []*streamerv1.ChangeEvent, publishers)
	var g group
	for range publishers {
		g.Go(func() error {
			for batch := range batches {
				now := time.Now().UnixNano()
				for _, ev := range batch {
					seq, _ := strconv.Atoi(strings.TrimPrefix(ev.GetEventId(), run.name+"-"))
					run.sentAt[seq].Store(now)
				}
				res, err := env.pub.Publish(context.Background(), batch)
				if err != nil {
					return err
				}
				for _, r := range res {
					if r.GetError() != nil {
						return fmt.Errorf("rejected: %v", r.GetError())
					}
				}
			}
			return nil
		})
	}
	rnd := rand.New(rand.NewPCG(uint64(b.N), 1))
	batchSize, interval := benchBatch, time.Duration(0)
	if rate > 0 {
		// Small batches at a steady pace, 1 ms apart; a late batch is sent
		// at once, so the average rate holds unless the node saturates.
		batchSize = max(1, rate/1000)
		interval = time.Duration(batchSize) * time.Second / time.Duration(rate)
	}

	b.ResetTimer()
	start := time.Now()
	next := start
	for i := 0; i < b.N; i += batchSize {
		if interval > 0 {
			time.Sleep(time.Until(next)) // pacing, not synchronisation
			next = next.Add(interval)
		}
		batch := make([]*streamerv1.ChangeEvent, 0, batchSize)
		for seq := i; seq < min(i+batchSize, b.N); seq++ {
			batch = append(batch, benchEvent(run.name, seq, rnd, env.collections))
		}
		batches <- batch
	}
	close(batches)
	if err := g.Wait(); err != nil {
		b.Fatal(err)
	}
	var markers []*streamerv1.ChangeEvent
	for c := range env.collections {
		markers = append(markers, &streamerv1.ChangeEvent{EventId: fmt.Sprintf("%s-marker%d", run.name, c), Tenant: benchTenant,
			Collection: fmt.Sprintf("items%d", c), DocumentId: "marker", Operation: streamerv1.Operation_OPERATION_UPDATE, Document: []byte(`{}`)})
	}
	if _, err := env.pub.Publish(context.Background(), markers); err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() { run.markers.Wait(); close(done) }()
	select {
	case <-done:
	case err := <-env.fail:
		b.Fatal(err)
	case <-time.After(2 * time.Minute):
		b.Fatal("markers did not arrive")
	}
	elapsed := time.Since(start)
	b.StopTimer()

	run.mu.Lock()
	lat := run.latencies
	run.mu.Unlock()
	slices.Sort(lat)
	pct := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))]) / float64(time.Millisecond)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(run.deliveries.Load())/elapsed.Seconds(), "deliveries/s")
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(run.deliveries.Load())/float64(b.N), "subs/event")
}

// group runs functions concurrently and returns the first error of any.
type group struct {
	wg   sync.WaitGroup
	once sync.Once
	err  error
}

func (g *group) Go(f func() error) {
	g.wg.Go(func() {
		if err := f(); err != nil {
			g.once.Do(func() { g.err = err })
		}
	})
}

func (g *group) Wait() error {
	g.wg.Wait()
	return g.err
}
