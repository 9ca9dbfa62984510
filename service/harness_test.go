package service

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/streamerd/streamer/internal/clock"
	"github.com/streamerd/streamer/internal/testwait"
	streamerv1 "github.com/streamerd/streamer/proto/streamer/v1"
	"github.com/streamerd/streamer/store"
	"github.com/streamerd/streamer/store/memory"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// waitTimeout bounds every wait of the tests for something to happen.
const waitTimeout = 10 * time.Second

// harness is one node over a memory backend, served by a real gRPC server on
// loopback, with clients using the generated stubs.
type harness struct {
	t        testing.TB
	node     *Node
	backend  *store.Backend
	addr     string
	conn     *grpc.ClientConn
	streamer streamerv1.StreamerClient
	ingest   streamerv1.IngestClient
	token    string // sent as the bearer token by the helpers when not empty

	cancelRun context.CancelFunc
	runDone   chan error
	stopOnce  sync.Once
}

// testLogger discards logs unless STREAMER_TEST_LOG is set.
func testLogger() *slog.Logger {
	if os.Getenv("STREAMER_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// startNode starts a node with cfg over a memory backend built with mcfg,
// and waits until it is ready. Everything is stopped by t.Cleanup.
func startNode(t testing.TB, cfg Config, mcfg memory.Config) *harness {
	t.Helper()
	backend := memory.New(mcfg)
	t.Cleanup(func() { _ = backend.Close() }) // runs after the node's cleanup
	return startNodeOn(t, cfg, backend)
}

// startNodeOn starts a node with cfg over backend, which several nodes may
// share (a pool), and waits until it is ready. The node, not the backend, is
// stopped by t.Cleanup.
func startNodeOn(t testing.TB, cfg Config, backend *store.Backend) *harness {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = testLogger()
	}
	if cfg.NodeID == "" {
		cfg.NodeID = "test-node"
	}
	node, err := New(cfg, backend)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := node.NewGRPCServer()
	var serveWG sync.WaitGroup
	serveWG.Go(func() { _ = srv.Serve(lis) })

	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{
		t: t, node: node, backend: backend, addr: lis.Addr().String(), conn: conn,
		streamer: streamerv1.NewStreamerClient(conn), ingest: streamerv1.NewIngestClient(conn),
		token: cfg.AuthToken, cancelRun: cancel, runDone: make(chan error, 1),
	}
	go func() { h.runDone <- node.Run(ctx) }()
	t.Cleanup(func() {
		h.stop()
		_ = conn.Close()
		srv.Stop()
		serveWG.Wait()
	})
	waitFor(t, "node ready", func() bool { return node.readiness(context.Background()) == nil })
	return h
}

// stop shuts the node down (Run returns) and fails if that takes too long.
func (h *harness) stop() {
	h.stopOnce.Do(func() {
		h.cancelRun()
		select {
		case err := <-h.runDone:
			if err != nil {
				h.t.Errorf("Run: %v", err)
			}
		case <-time.After(waitTimeout):
			h.t.Errorf("Run did not return within %v of its context being cancelled", waitTimeout)
		}
	})
}

// ctx returns a context carrying the bearer token, cancelled at cleanup.
func (h *harness) ctx() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	h.t.Cleanup(cancel)
	if h.token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+h.token)
	}
	return ctx
}

// waitFor polls cond until it holds, failing the test after testwait.Timeout.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	testwait.For(t, what, cond)
}

// fakeTime is a test's fake clock, started at the real time (a Redis
// backend sets PEXPIREAT from it).
type fakeTime struct {
	*clock.Fake
	t testing.TB
}

func newFakeTime(t testing.TB) *fakeTime { return &fakeTime{clock.NewFake(time.Now()), t} }

// step advances the fake time by d and waits until every round of work it
// started (ownership, janitor, session checks, probes) has finished.
func (f *fakeTime) step(d time.Duration) {
	f.t.Helper()
	testwait.Step(f.t, f.Fake, d)
}

// stepUntil steps by d until cond holds, failing the test with cond's last
// state after testwait.Timeout of real time.
func (f *fakeTime) stepUntil(what string, d time.Duration, cond func() (bool, any)) {
	f.t.Helper()
	testwait.StepUntil(f.t, f.Fake, what, d, cond)
}

// publish publishes events and fails unless every one was appended.
func (h *harness) publish(events ...*streamerv1.ChangeEvent) []*streamerv1.PublishResult {
	h.t.Helper()
	resp, err := h.ingest.Publish(h.ctx(), &streamerv1.PublishRequest{Events: events})
	if err != nil {
		h.t.Fatalf("Publish: %v", err)
	}
	for _, r := range resp.GetResults() {
		if r.GetError() != nil {
			h.t.Fatalf("Publish %s: %v", r.GetEventId(), r.GetError())
		}
	}
	return resp.GetResults()
}

// event builds a change event; doc and before are JSON ("" = absent).
func event(id, tenant, collection, docID string, op streamerv1.Operation, doc, before string) *streamerv1.ChangeEvent {
	ev := &streamerv1.ChangeEvent{
		EventId: id, Tenant: tenant, Collection: collection, DocumentId: docID, Operation: op,
		TimestampMs: time.Now().UnixMilli(),
	}
	if doc != "" {
		ev.Document = []byte(doc)
	}
	if before != "" {
		ev.Before = []byte(before)
	}
	return ev
}

// filterSub builds a subscription with one field filter.
func filterSub(id, tenant, collection, field, op string, value any) *streamerv1.Subscription {
	v, err := structpb.NewValue(value)
	if err != nil {
		panic(err)
	}
	return &streamerv1.Subscription{SubscriptionId: id, Tenant: tenant, Collection: collection,
		Criterion: &streamerv1.Subscription_Filters{Filters: &streamerv1.FieldFilters{Filters: []*streamerv1.FieldFilter{{Field: field, Op: op, Value: v}}}}}
}

// gateway is a test gateway: one Stream, with a receiver goroutine feeding
// msgs and a queue of received messages not consumed yet.
type gateway struct {
	t      testing.TB
	id     string
	stream grpc.BidiStreamingClient[streamerv1.GatewayMessage, streamerv1.StreamerMessage]
	cancel context.CancelFunc
	msgs   chan *streamerv1.StreamerMessage
	ended  chan error // the Recv error that ended the stream (io.EOF on a clean close)
	queue  []*streamerv1.StreamerMessage
	done   sync.WaitGroup
}

// open opens a Stream without sending anything.
func (h *harness) open(id string) *gateway {
	h.t.Helper()
	ctx, cancel := context.WithCancel(h.ctx())
	stream, err := h.streamer.Stream(ctx)
	if err != nil {
		cancel()
		h.t.Fatalf("Stream: %v", err)
	}
	g := &gateway{t: h.t, id: id, stream: stream, cancel: cancel,
		msgs: make(chan *streamerv1.StreamerMessage, 1024), ended: make(chan error, 1)}
	g.done.Go(func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				g.ended <- err
				close(g.msgs)
				return
			}
			g.msgs <- m
		}
	})
	h.t.Cleanup(g.close)
	return g
}

// connect opens a Stream and registers; it returns the Registered answer.
// reconnect is connect for a gateway coming back after a Redis outage: a
// registration refused as UNAVAILABLE (the node's Redis client may still
// report the outage's dial error for a moment after Redis is back) is
// tried again, as a gateway does, stepping ft between the attempts.
func (h *harness) reconnect(ft *fakeTime, id, resume string) (*gateway, *streamerv1.Registered) {
	h.t.Helper()
	var g *gateway
	var reg *streamerv1.Registered
	ft.stepUntil("gateway "+id+" registered again", time.Second, func() (bool, any) {
		g = h.open(id)
		g.send(&streamerv1.GatewayMessage{Msg: &streamerv1.GatewayMessage_Register{Register: &streamerv1.Register{GatewayId: id, ResumeCursor: resume}}})
		m := g.next()
		if reg = m.GetRegistered(); reg == nil {
			if m.GetError().GetCode() != streamerv1.ErrorCode_ERROR_CODE_UNAVAILABLE {
				h.t.Fatalf("gateway %s: first message is %v, want Registered", id, m)
			}
			g.close()
		}
		return reg != nil, m
	})
	return g, reg
}

func (h *harness) connect(id, resume string) (*gateway, *streamerv1.Registered) {
	h.t.Helper()
	g := h.open(id)
	g.send(&streamerv1.GatewayMessage{Msg: &streamerv1.GatewayMessage_Register{Register: &streamerv1.Register{GatewayId: id, ResumeCursor: resume}}})
	m := g.next()
	if m.GetRegistered() == nil {
		h.t.Fatalf("gateway %s: first message is %v, want Registered", id, m)
	}
	return g, m.GetRegistered()
}

// watching connects a new gateway id (no resume cursor) subscribed as "s"
// to the whole collection t/c, the subscription most tests need.
func (h *harness) watching(id string) *gateway {
	h.t.Helper()
	g, _ := h.connect(id, "")
	g.watchAll()
	return g
}

// watchAll subscribes as "s" to the whole collection t/c.
func (g *gateway) watchAll() {
	g.t.Helper()
	g.mustSubscribe(&streamerv1.Subscription{SubscriptionId: "s", Tenant: "t", Collection: "c"})
}

// close cancels the stream and waits for the receiver.
func (g *gateway) close() {
	g.cancel()
	g.done.Wait()
}

func (g *gateway) send(m *streamerv1.GatewayMessage) {
	g.t.Helper()
	if err := g.stream.Send(m); err != nil {
		g.t.Fatalf("gateway %s: Send: %v", g.id, err)
	}
}

// next returns the next message, queued first.
func (g *gateway) next() *streamerv1.StreamerMessage {
	g.t.Helper()
	return g.take("any message", func(*streamerv1.StreamerMessage) bool { return true })
}

// take returns the first message (queued or arriving) satisfying pred,
// queueing the others; it fails after waitTimeout or when the stream ends.
func (g *gateway) take(what string, pred func(*streamerv1.StreamerMessage) bool) *streamerv1.StreamerMessage {
	g.t.Helper()
	for i, m := range g.queue {
		if pred(m) {
			g.queue = slices.Delete(g.queue, i, i+1)
			return m
		}
	}
	timeout := time.After(waitTimeout)
	for {
		select {
		case m, ok := <-g.msgs:
			if !ok {
				g.t.Fatalf("gateway %s: stream ended while waiting for %s: %v", g.id, what, <-g.ended)
			}
			if pred(m) {
				return m
			}
			g.queue = append(g.queue, m)
		case <-timeout:
			g.t.Fatalf("gateway %s: timed out waiting for %s (queued: %v)", g.id, what, g.queue)
		}
	}
}

// takeNow returns the first message already received that satisfies pred,
// queueing the others, or nil: it does not wait (for tests that step a fake
// clock meanwhile).
func (g *gateway) takeNow(pred func(*streamerv1.StreamerMessage) bool) *streamerv1.StreamerMessage {
	for more := true; more; {
		select {
		case m, ok := <-g.msgs:
			if !ok {
				more = false
				break
			}
			g.queue = append(g.queue, m)
		default:
			more = false
		}
	}
	for i, m := range g.queue {
		if pred(m) {
			g.queue = slices.Delete(g.queue, i, i+1)
			return m
		}
	}
	return nil
}

// subscribe sends Subscribe and returns its SubscribeResult.
func (g *gateway) subscribe(sub *streamerv1.Subscription) *streamerv1.SubscribeResult {
	g.t.Helper()
	g.send(&streamerv1.GatewayMessage{Msg: &streamerv1.GatewayMessage_Subscribe{Subscribe: &streamerv1.Subscribe{Subscription: sub}}})
	return g.take("SubscribeResult", func(m *streamerv1.StreamerMessage) bool { return m.GetSubscribeResult() != nil }).GetSubscribeResult()
}

// mustSubscribe subscribes and fails on an error result.
func (g *gateway) mustSubscribe(sub *streamerv1.Subscription) {
	g.t.Helper()
	if res := g.subscribe(sub); res.GetError() != nil || res.GetSubscriptionId() != sub.GetSubscriptionId() {
		g.t.Fatalf("gateway %s: subscribe %s: %v", g.id, sub.GetSubscriptionId(), res)
	}
}

// delivery returns the next Delivery.
func (g *gateway) delivery() *streamerv1.Delivery {
	g.t.Helper()
	return g.take("Delivery", func(m *streamerv1.StreamerMessage) bool { return m.GetDelivery() != nil }).GetDelivery()
}

// matchesUntil collects delivered matches until every event of ids has
// been seen, and returns them in delivery order.
func (g *gateway) matchesUntil(ids ...string) []*streamerv1.EventMatch {
	g.t.Helper()
	missing := map[string]bool{}
	for _, id := range ids {
		missing[id] = true
	}
	var out []*streamerv1.EventMatch
	for len(missing) > 0 {
		for _, m := range g.delivery().GetMatches() {
			out = append(out, m)
			delete(missing, m.GetEvent().GetEventId())
		}
	}
	return out
}

// endError waits for the stream's Error message and the end of the stream,
// and returns the Error.
func (g *gateway) endError() *streamerv1.Error {
	g.t.Helper()
	e := g.take("Error", func(m *streamerv1.StreamerMessage) bool { return m.GetError() != nil }).GetError()
	select {
	case <-g.ended:
	case <-time.After(waitTimeout):
		g.t.Fatalf("gateway %s: stream not closed after Error %v", g.id, e)
	}
	return e
}

// summary is a compact rendering of matches for comparisons:
// "event_id:op:sub1,sub2".
func summary(ms []*streamerv1.EventMatch) []string {
	var out []string
	for _, m := range ms {
		s := m.GetEvent().GetEventId() + ":" + m.GetOperation().String()[len("OPERATION_"):] + ":"
		for i, id := range m.GetSubscriptionIds() {
			if i > 0 {
				s += ","
			}
			s += id
		}
		out = append(out, s)
	}
	return out
}

// labelledValue returns the value of a counter or gauge with the given
// label value (0 when absent).
func (h *harness) labelledValue(name, label, value string) float64 {
	h.t.Helper()
	families, err := h.node.metrics.registry.Gather()
	if err != nil {
		h.t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return m.GetCounter().GetValue() + m.GetGauge().GetValue()
				}
			}
		}
	}
	return 0
}

// metricValue returns the value of a metric without labels from the node's
// registry (0 when absent).
func (h *harness) metricValue(name string) float64 {
	h.t.Helper()
	families, err := h.node.metrics.registry.Gather()
	if err != nil {
		h.t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name || len(f.GetMetric()) == 0 {
			continue
		}
		m := f.GetMetric()[0]
		switch {
		case m.GetCounter() != nil:
			return m.GetCounter().GetValue()
		case m.GetGauge() != nil:
			return m.GetGauge().GetValue()
		}
	}
	return 0
}
