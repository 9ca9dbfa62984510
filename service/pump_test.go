package service

import (
	"context"
	"strings"
	"sync"
	"testing"

	"google.golang.org/protobuf/proto"

	streamerv1 "github.com/streamerd/streamer/proto/streamer/v1"
	"github.com/streamerd/streamer/store"
	"github.com/streamerd/streamer/store/memory"
)

func TestPumpSendsResyncWhenOutboxOverflowsUnderASlowGateway(t *testing.T) {
	const outboxCap = 3
	backend := memory.New(memory.Config{Partitions: 1, OutboxMaxLen: outboxCap})
	defer backend.Close()
	n, err := New(Config{OutboxMaxLen: outboxCap, Logger: testLogger()}, backend)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	batch := func(id string) []byte {
		b, _ := proto.Marshal(&streamerv1.OutboxBatch{Matches: []*streamerv1.EventMatch{{
			Event: &streamerv1.ChangeEvent{EventId: id}, Operation: opCreate, SubscriptionIds: []string{"s"}}}})
		return b
	}
	ids, err := backend.Outboxes.Append(ctx, []store.OutboxItem{{Gateway: "gw", Payload: batch("a")}})
	if err != nil {
		t.Fatal(err)
	}

	// A session whose owner does not take deliveries: the pump stalls.
	s := &session{n: n, log: n.log, gateway: "gw", out: make(chan outgoing, 1)}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() { s.pump(ctx, "") })

	if d := delivery(t, <-s.out); d.GetCursor() != ids[0] {
		t.Fatalf("first message %v, want the delivery of %s", d, ids[0])
	}
	// The gateway falls behind by more than the cap in one go.
	var items []store.OutboxItem
	for _, id := range []string{"b", "c", "d", "e", "f"} {
		items = append(items, store.OutboxItem{Gateway: "gw", Payload: batch(id)})
	}
	ids, err = backend.Outboxes.Append(ctx, items)
	if err != nil {
		t.Fatal(err)
	}
	rs := (<-s.out).msg.GetResync()
	if rs == nil || rs.GetCursor() != ids[len(ids)-1] || !strings.Contains(rs.GetReason(), "overflow") {
		t.Fatalf("got %v, want a Resync continuing after %s", rs, ids[len(ids)-1])
	}
	// Deliveries continue after the Resync cursor.
	more, err := backend.Outboxes.Append(ctx, []store.OutboxItem{{Gateway: "gw", Payload: batch("g")}})
	if err != nil {
		t.Fatal(err)
	}
	if d := delivery(t, <-s.out); d.GetCursor() != more[0] || d.GetMatches()[0].GetEvent().GetEventId() != "g" {
		t.Fatalf("after Resync got %v, want the delivery of %s", d, more[0])
	}
}

// delivery decodes the frame the node would send for o, as a gateway would.
func delivery(t *testing.T, o outgoing) *streamerv1.Delivery {
	t.Helper()
	if o.batch == nil {
		t.Fatalf("got %v, want a delivery", o.msg)
	}
	var m streamerv1.StreamerMessage
	if err := proto.Unmarshal(deliveryFrame(o.cursor, o.batch).bytes(), &m); err != nil || m.GetDelivery() == nil {
		t.Fatalf("delivery frame does not decode as a StreamerMessage with a Delivery: %v (%v)", &m, err)
	}
	return m.GetDelivery()
}
