package integration

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/streamerd/streamer/client"
	streamerv1 "github.com/streamerd/streamer/proto/streamer/v1"
	syntrixv1 "github.com/streamerd/streamer/proto/syntrix/streamer/v1"
)

// syntrixSub is the subscription the test's Syntrix gateway keeps, with
// a UUID id as Syntrix's gateway gives it.
const syntrixSub = "2c9f6a0e-5d1b-4e7a-9c3f-8b1d2e4f6a70"

// TestPoolSyntrixGatewayFailover: a client of Syntrix's streamer service
// that behaves like Syntrix's gateway subscribes through node A of a pool
// of two on Redis; node A is killed with SIGKILL: the gateway's stream ends
// with an error (never silently), it reconnects to node B, subscribes
// again with the same id, and the events published from then on reach it.
func TestPoolSyntrixGatewayFailover(t *testing.T) {
	p := newPool(t, nil, "--syntrix-tenants", "acme")
	a, b := p.start(), p.start()
	pub, err := client.NewPublisher(b.grpcAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	publish := func(ids ...string) {
		t.Helper()
		evs := make([]*streamerv1.ChangeEvent, len(ids))
		for i, id := range ids {
			evs[i] = &streamerv1.ChangeEvent{EventId: id, Tenant: "acme", Collection: "rooms", DocumentId: id,
				Operation: streamerv1.Operation_OPERATION_CREATE, Document: []byte(`{"n":1}`), TimestampMs: time.Now().UnixMilli()}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		res, err := pub.Publish(ctx, evs)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range res {
			if r.GetError() != nil {
				t.Fatal(r.GetError())
			}
		}
	}
	type stream struct {
		s      grpc.BidiStreamingClient[syntrixv1.GatewayMessage, syntrixv1.StreamerMessage]
		cancel context.CancelFunc
	}
	open := func(addr string) stream {
		t.Helper()
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cc.Close() })
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		s, err := syntrixv1.NewStreamerServiceClient(cc).Stream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Send(&syntrixv1.GatewayMessage{Payload: &syntrixv1.GatewayMessage_Subscribe{Subscribe: &syntrixv1.SubscribeRequest{
			SubscriptionId: syntrixSub, Database: "acme", Collection: "rooms"}}}); err != nil {
			t.Fatal(err)
		}
		if m, err := s.Recv(); err != nil || !m.GetSubscribeResponse().GetSuccess() {
			t.Fatalf("subscribe on %s: %v %v", addr, m, err)
		}
		return stream{s, cancel}
	}
	receive := func(s stream, ids ...string) {
		t.Helper()
		want := map[string]bool{}
		for _, id := range ids {
			want[id] = true
		}
		for len(want) > 0 {
			m, err := s.s.Recv()
			if err != nil {
				t.Fatalf("stream ended while %d events were missing: %v", len(want), err)
			}
			if d := m.GetDelivery(); d != nil {
				if d.GetSubscriptionIds()[0] != syntrixSub {
					t.Fatalf("delivery for %v", d.GetSubscriptionIds())
				}
				delete(want, d.GetEvent().GetEventId())
			}
		}
	}

	first := open(a.grpcAddr)
	publish("e1", "e2")
	receive(first, "e1", "e2")

	a.kill()
	errs := make(chan error, 1)
	go func() {
		for {
			if _, err := first.s.Recv(); err != nil {
				errs <- err
				return
			}
		}
	}()
	select {
	case err := <-errs:
		t.Logf("the stream through the killed node ended: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("the stream through the killed node did not end")
	}

	second := open(b.grpcAddr) // the gateway's reconnect, with the same id
	var ids []string
	for i := range 20 {
		ids = append(ids, fmt.Sprintf("f%d", i))
	}
	publish(ids...) // B takes A's partitions over after the lease; the events wait for it
	receive(second, ids...)
}
