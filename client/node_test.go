package client_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/streamerd/streamer/client"
	"github.com/streamerd/streamer/internal/testwait"
	streamerv1 "github.com/streamerd/streamer/proto/streamer/v1"
	"github.com/streamerd/streamer/service"
	"github.com/streamerd/streamer/store"
	"github.com/streamerd/streamer/store/memory"
)

// This file holds the harness of the end-to-end tests: a real node over the
// memory backend, served by a real gRPC server.

// waitLimit bounds every wait of the tests on a condition.
const waitLimit = 15 * time.Second

// testNode is one embedded node.
type testNode struct {
	node    *service.Node
	backend *store.Backend
	addr    string // TCP loopback address; empty for an in-process node
	token   string
	stop    func() // stops the node; also run at cleanup
}

// logger discards logs unless STREAMER_TEST_LOG is set.
func logger() *slog.Logger {
	if os.Getenv("STREAMER_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// startNode runs a node over a memory backend, serving lis (a TCP loopback
// listener when nil), until the test ends; it returns once the node is
// ready.
func startNode(t testing.TB, cfg service.Config, mcfg memory.Config, lis net.Listener) *testNode {
	t.Helper()
	backend := memory.New(mcfg)
	if cfg.Logger == nil {
		cfg.Logger = logger()
	}
	if cfg.NodeID == "" {
		cfg.NodeID = "test-node"
	}
	node, err := service.New(cfg, backend)
	if err != nil {
		t.Fatal(err)
	}
	tn := &testNode{node: node, backend: backend, token: cfg.AuthToken}
	if lis == nil {
		if lis, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		tn.addr = lis.Addr().String()
	}
	srv := node.NewGRPCServer()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = srv.Serve(lis) })
	runErr := make(chan error, 1)
	wg.Go(func() { runErr <- node.Run(ctx) })
	var once sync.Once
	tn.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-runErr; err != nil {
				t.Errorf("node Run: %v", err)
			}
			srv.Stop()
			wg.Wait()
			_ = backend.Close()
		})
	}
	t.Cleanup(tn.stop)
	admin := node.AdminHandler()
	waitFor(t, "node ready", func() bool {
		rec := httptest.NewRecorder()
		admin.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		return rec.Code == http.StatusOK
	})
	return tn
}

// waitFor polls cond until it holds, failing the test after waitLimit.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	testwait.For(t, what, cond)
}

// dial opens a Conn to addr with test-friendly options, closed at cleanup.
func dial(t testing.TB, addr string, opts ...client.Option) *client.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	c, err := client.Dial(ctx, addr, append([]client.Option{client.WithLogger(logger()),
		client.WithBackoff(5*time.Millisecond, 100*time.Millisecond)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func subscribe(t testing.TB, c *client.Conn, s client.Subscription) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if err := c.Subscribe(ctx, s); err != nil {
		t.Fatalf("subscribe %s: %v", s.ID, err)
	}
}

// publisher returns a Publisher to addr, closed at cleanup.
func publisher(t testing.TB, addr string, opts ...client.Option) *client.Publisher {
	t.Helper()
	p, err := client.NewPublisher(addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// publish publishes events and fails on any rejection.
func publish(t testing.TB, p *client.Publisher, events ...*streamerv1.ChangeEvent) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	res, err := p.Publish(ctx, events)
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	for i, r := range res {
		if r.GetError() != nil {
			t.Fatalf("event %d (%s) rejected: %v", i, events[i].GetEventId(), r.GetError())
		}
	}
}

// event builds a change event; doc and before are JSON ("" = none).
func event(id, tenant, collection, docID string, op streamerv1.Operation, doc, before string) *streamerv1.ChangeEvent {
	ev := &streamerv1.ChangeEvent{EventId: id, Tenant: tenant, Collection: collection, DocumentId: docID,
		Operation: op, TimestampMs: time.Now().UnixMilli()}
	if doc != "" {
		ev.Document = []byte(doc)
	}
	if before != "" {
		ev.Before = []byte(before)
	}
	return ev
}

// describe renders a match as "event_id op sub1,sub2" (subs sorted).
func describe(m client.Match) string {
	subs := slices.Clone(m.SubscriptionIDs)
	slices.Sort(subs)
	return fmt.Sprintf("%s %s %s", m.Event.GetEventId(), client.OperationName(m.Operation), strings.Join(subs, ","))
}

// receive reads c's deliveries until done(matches so far) holds, failing
// after waitLimit. Resync and Dropped items fail the test unless onOther
// handles them.
func receive(t testing.TB, c *client.Conn, done func([]client.Match) bool, onOther func(client.Delivery)) []client.Match {
	t.Helper()
	var got []client.Match
	timeout := time.NewTimer(waitLimit)
	defer timeout.Stop()
	for !done(got) {
		select {
		case d, ok := <-c.Deliveries():
			if !ok {
				t.Fatalf("deliveries closed: %v", c.Err())
			}
			if d.Resync != nil || d.Dropped != nil {
				if onOther == nil {
					t.Fatalf("unexpected %+v", d)
				}
				onOther(d)
			}
			got = append(got, d.Matches...)
		case <-timeout.C:
			t.Fatalf("timed out after %d matches", len(got))
		}
	}
	return got
}

// untilEvent is a receive condition: the event id was received.
func untilEvent(id string) func([]client.Match) bool {
	return func(ms []client.Match) bool {
		return len(ms) > 0 && ms[len(ms)-1].Event.GetEventId() == id ||
			slices.ContainsFunc(ms, func(m client.Match) bool { return m.Event.GetEventId() == id })
	}
}
