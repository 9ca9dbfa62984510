package service

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	streamerv1 "github.com/streamerd/streamer/proto/streamer/v1"
	"github.com/streamerd/streamer/store"
	"github.com/streamerd/streamer/store/memory"
)

func TestGracefulShutdownClosesSessionsWithAnError(t *testing.T) {
	h := startNode(t, Config{}, memory.Config{Partitions: 4})
	ctx := context.Background()
	g1 := h.watching("gw-1")
	g2, _ := h.connect("gw-2", "")
	pending := h.open("gw-3") // not registered yet

	h.stop()
	for _, g := range []*gateway{g1, g2, pending} {
		e := g.endError()
		if e.GetCode() != streamerv1.ErrorCode_ERROR_CODE_UNAVAILABLE || !strings.Contains(e.GetMessage(), "shutting down") {
			t.Errorf("gateway %s: error %v", g.id, e)
		}
	}
	// Intake is stopped.
	_, err := h.ingest.Publish(h.ctx(), &streamerv1.PublishRequest{Events: []*streamerv1.ChangeEvent{event("e", "t", "c", "d", opCreate, `{}`, "")}})
	if status.Code(err) != codes.Unavailable {
		t.Errorf("Publish after shutdown: %v, want Unavailable", err)
	}
	g := h.open("gw-4")
	if e := g.endError(); e.GetCode() != streamerv1.ErrorCode_ERROR_CODE_UNAVAILABLE {
		t.Errorf("new stream after shutdown: %v", e)
	}
	// Leases released, node unregistered, sessions released.
	for p := range 4 {
		if owner, err := h.backend.Leases.Owner(ctx, p); err != nil || owner != "" {
			t.Errorf("partition %d owner %q after shutdown (%v)", p, owner, err)
		}
	}
	if live, _ := h.backend.Nodes.Live(ctx); len(live) != 0 {
		t.Errorf("live nodes after shutdown: %v", live)
	}
	waitFor(t, "sessions released", func() bool {
		node, _, err := h.backend.Sessions.Current(ctx, "gw-1")
		return err == nil && node == ""
	})
	// Not ready any more.
	rec := httptest.NewRecorder()
	h.node.AdminHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("/readyz after shutdown: %d", rec.Code)
	}
}

func TestShutdownFinishesInFlightWorkAndANewNodeTakesOver(t *testing.T) {
	h := startNode(t, Config{ReadBatch: 8}, memory.Config{Partitions: 2})
	ctx := context.Background()
	g := h.watching("gw-1")
	g.close()
	const n = 200
	var evs []*streamerv1.ChangeEvent
	for i := range n {
		id := fmt.Sprintf("e%03d", i)
		evs = append(evs, event(id, "t", "c", id, opCreate, `{}`, ""))
	}
	h.publish(evs...)
	h.stop() // while the consumer is working through the events

	// Every batch read was finished: nothing is left pending.
	p := store.PartitionOf("t", "c", 2)
	if pending, err := h.backend.Log.Pending(ctx, p); err != nil || pending != 0 {
		t.Fatalf("pending after shutdown = %d, %v", pending, err)
	}

	// A new node over the same backend routes the rest: every event reaches
	// the outbox exactly once, in order.
	node, err := New(Config{NodeID: "second", Logger: testLogger()}, h.backend)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- node.Run(runCtx) }()
	defer func() { cancel(); <-done }()

	var got []string
	waitFor(t, "all events in the outbox", func() bool {
		entries, err := h.backend.Outboxes.Read(ctx, "gw-1", "", 0, 0)
		if err != nil {
			return false
		}
		got = got[:0]
		for _, e := range entries {
			var b streamerv1.OutboxBatch
			if err := proto.Unmarshal(e.Payload, &b); err != nil {
				t.Fatal(err)
			}
			for _, m := range b.GetMatches() {
				got = append(got, m.GetEvent().GetEventId())
			}
		}
		return len(got) >= n
	})
	for i, id := range got {
		if want := fmt.Sprintf("e%03d", i); id != want || i >= n {
			t.Fatalf("outbox event %d = %s, want %s (%d events)", i, id, want, len(got))
		}
	}
}

func TestAdminEndpoints(t *testing.T) {
	h := startNode(t, Config{}, memory.Config{Partitions: 2})
	srv := httptest.NewServer(h.node.AdminHandler())
	defer srv.Close()
	get := func(path string) (int, string) {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz = %d %q", code, body)
	}
	if code, body := get("/readyz"); code != 200 || body != "ready\n" {
		t.Errorf("/readyz = %d %q", code, body)
	}

	g, _ := h.connect("gw-1", "")
	g.mustSubscribe(&streamerv1.Subscription{SubscriptionId: "s", Tenant: "t", Collection: "c", Criterion: &streamerv1.Subscription_Cel{Cel: "doc.n > 1"}})
	g.mustSubscribe(&streamerv1.Subscription{SubscriptionId: "s2", Tenant: "t", Collection: "c", Criterion: &streamerv1.Subscription_Cel{Cel: "doc.n > 1"}})
	h.publish(event("e1", "t", "c", "d", opCreate, `{"n":2}`, ""), event("e2", "t", "c", "d", opUpdate, `{"n":"x"}`, ""))
	g.matchesUntil("e1")
	waitFor(t, "metrics", func() bool {
		return h.metricValue("streamer_deliveries_sent_total") >= 1 && h.metricValue("streamer_cel_evaluation_errors_total") >= 1
	})

	code, body := get("/metrics")
	if code != 200 {
		t.Fatalf("/metrics = %d", code)
	}
	for _, want := range []string{
		`streamer_publish_events_total{result="appended"} 2`,
		"streamer_events_processed_total 2",
		"streamer_events_matched_total 1",
		"streamer_matches_total 2",
		"streamer_sessions 1",
		"streamer_subscriptions_indexed 2",
		"streamer_partitions_owned 2",
		"streamer_cel_cache_hits_total",
		"streamer_cel_cache_misses_total",
		"streamer_cel_cache_evictions_total 0",
		"streamer_cel_cache_size 1",
		"streamer_dead_letters_total 0",
		"streamer_end_to_end_latency_seconds_count 1",
		"streamer_outbox_lag_seconds_count 1",
		"streamer_deliveries_sent_total 1",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}
