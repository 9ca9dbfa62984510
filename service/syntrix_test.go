package service

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	streamerv1 "github.com/streamerd/streamer/proto/streamer/v1"
	syntrixv1 "github.com/streamerd/streamer/proto/syntrix/streamer/v1"
	"github.com/streamerd/streamer/store/memory"
)

// syntrixGateway is a client of syntrix.streamer.v1 that behaves like
// Syntrix's gateway: UUID subscription ids, heartbeats with a timestamp.
type syntrixGateway struct {
	t      *testing.T
	stream grpc.BidiStreamingClient[syntrixv1.GatewayMessage, syntrixv1.StreamerMessage]
	msgs   chan *syntrixv1.StreamerMessage
	ended  chan error
	cancel context.CancelFunc
}

func (h *harness) syntrix(t *testing.T) *syntrixGateway {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := syntrixv1.NewStreamerServiceClient(h.conn).Stream(ctx)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	g := &syntrixGateway{t: t, stream: stream, msgs: make(chan *syntrixv1.StreamerMessage, 4096), ended: make(chan error, 1), cancel: cancel}
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				g.ended <- err
				close(g.msgs)
				return
			}
			g.msgs <- m
		}
	}()
	t.Cleanup(cancel)
	return g
}

func (g *syntrixGateway) send(m *syntrixv1.GatewayMessage) {
	g.t.Helper()
	if err := g.stream.Send(m); err != nil {
		g.t.Fatalf("send: %v", err)
	}
}

func (g *syntrixGateway) next() *syntrixv1.StreamerMessage {
	g.t.Helper()
	select {
	case m, ok := <-g.msgs:
		if !ok {
			g.t.Fatalf("stream ended: %v", <-g.ended)
		}
		return m
	case <-time.After(waitTimeout):
		g.t.Fatal("no message")
	}
	return nil
}

func (g *syntrixGateway) subscribe(id, database, collection string, filters ...*syntrixv1.Filter) *syntrixv1.SubscribeResponse {
	g.t.Helper()
	g.send(&syntrixv1.GatewayMessage{Payload: &syntrixv1.GatewayMessage_Subscribe{Subscribe: &syntrixv1.SubscribeRequest{
		SubscriptionId: id, Database: database, Collection: collection, Filters: filters}}})
	r := g.next().GetSubscribeResponse()
	if r == nil || r.GetSubscriptionId() != id {
		g.t.Fatalf("got %v, want the SubscribeResponse of %s", r, id)
	}
	return r
}

// deliveries reads n EventDeliveries and renders them
// "subs op document_id data".
func (g *syntrixGateway) deliveries(n int) []string {
	g.t.Helper()
	var out []string
	for range n {
		d := g.next().GetDelivery()
		if d == nil {
			g.t.Fatal("not a delivery")
		}
		ev := d.GetEvent()
		out = append(out, fmt.Sprintf("%s %s %s %s", strings.Join(d.GetSubscriptionIds(), ","), ev.GetOperation(), ev.GetDocumentId(), ev.GetDocumentData()))
	}
	return out
}

func sf(field, op string, v *syntrixv1.Value) *syntrixv1.Filter {
	return &syntrixv1.Filter{Field: field, Op: op, Value: v}
}
func sstr(s string) *syntrixv1.Value {
	return &syntrixv1.Value{Kind: &syntrixv1.Value_StringValue{StringValue: s}}
}
func sint(i int64) *syntrixv1.Value {
	return &syntrixv1.Value{Kind: &syntrixv1.Value_IntValue{IntValue: i}}
}

const (
	uuidA = "6f1d2c1e-8b1a-4a53-9f5c-0d7a3e2b9c41"
	uuidB = "0b7e6c55-2f0e-4f0e-8a9e-3e5f1c2d4b6a"
	uuidC = "c3a1e9d2-7b4f-4c8e-9d1a-5f6e7a8b9c0d"
)

// TestSyntrixService checks every message and path of the Syntrix
// streamer service over the node's sessions.
func TestSyntrixService(t *testing.T) {
	h := startNode(t, Config{Syntrix: &SyntrixConfig{Tenants: []string{"acme"}}}, memory.Config{Partitions: 4})
	g := h.syntrix(t)

	if r := g.subscribe(uuidA, "acme", "rooms", sf("n", ">=", sint(2))); !r.GetSuccess() || r.GetError() != "" {
		t.Fatalf("subscribe: %v", r)
	}
	if r := g.subscribe(uuidB, "acme", "rooms", sf("_id", "==", sstr("r1"))); !r.GetSuccess() {
		t.Fatalf("document subscription: %v", r)
	}
	big := &syntrixv1.Value{Kind: &syntrixv1.Value_ListValue{ListValue: &syntrixv1.ListValue{Values: []*syntrixv1.Value{sint(9007199254740993)}}}}
	if r := g.subscribe(uuidC, "acme", "rooms", sf("n", "in", big)); r.GetSuccess() || !strings.Contains(r.GetError(), "2^53") {
		t.Fatalf("int_value beyond 2^53 in a list: %v", r)
	}
	if r := g.subscribe(uuidC, "globex", "rooms"); r.GetSuccess() || !strings.Contains(r.GetError(), "--syntrix-tenants") {
		t.Fatalf("a tenant not allowed: %v", r)
	}
	if r := g.subscribe(uuidC, "acme", "rooms", sf("n", "~", sint(1))); r.GetSuccess() || !strings.Contains(r.GetError(), "operator") {
		t.Fatalf("an invalid operator: %v", r)
	}
	if r := g.subscribe(uuidC, "acme", "rooms", sf("tags", "contains", sstr("x")), sf("n", "==", sint(9007199254740993))); !r.GetSuccess() {
		t.Fatalf("contains and an exact int beyond 2^53: %v", r)
	}

	h.publish(
		event("e1", "acme", "rooms", "r1", opCreate, `{"n":5,"_id":"r1","id":"r1","collection":"rooms"}`, ""),
		event("e2", "acme", "rooms", "r2", opCreate, `{"n":9007199254740993,"tags":["x"]}`, ""),
		event("e2b", "acme", "rooms", "r5", opCreate, `{"n":9007199254740992,"tags":["x"]}`, ""), // the same double: not the same integer
		event("e3", "acme", "rooms", "r1", opUpdate, `{"n":1}`, `{"n":5}`),                       // leaves n >= 2
		event("e4", "globex", "rooms", "r1", opCreate, `{"n":5}`, ""),
	)
	got := g.deliveries(5)
	joined := strings.Join(got, "\n")
	for _, w := range []string{
		` OPERATION_TYPE_INSERT r1 {"n":5}`,
		uuidA + "," + uuidC + ` OPERATION_TYPE_INSERT r2 {"n":9007199254740993,"tags":["x"]}`,
		uuidA + ` OPERATION_TYPE_INSERT r5 {"n":9007199254740992,"tags":["x"]}`,
		uuidA + ` OPERATION_TYPE_DELETE r1 {"n":1}`,
		uuidB + ` OPERATION_TYPE_UPDATE r1 {"n":1}`,
	} {
		if !strings.Contains(joined, w) {
			t.Errorf("deliveries lack %q:\n%s", w, joined)
		}
	}

	// One delivery carries the event's fields.
	h.publish(event("e5", "acme", "rooms", "r3", opCreate, `{"n":3}`, ""))
	d := g.next().GetDelivery()
	ev := d.GetEvent()
	if ev.GetEventId() != "e5" || ev.GetDatabase() != "acme" || ev.GetCollection() != "rooms" || ev.GetTimestamp() == 0 ||
		time.Since(time.UnixMilli(ev.GetTimestamp())) > time.Minute || len(d.GetSubscriptionIds()) != 1 {
		t.Fatalf("delivery %v", d)
	}

	// Heartbeats are echoed; an unsubscribe gets no answer.
	g.send(&syntrixv1.GatewayMessage{Payload: &syntrixv1.GatewayMessage_Unsubscribe{Unsubscribe: &syntrixv1.UnsubscribeRequest{SubscriptionId: uuidA}}})
	g.send(&syntrixv1.GatewayMessage{Payload: &syntrixv1.GatewayMessage_Heartbeat{Heartbeat: &syntrixv1.Heartbeat{GatewayId: "gw-1", Timestamp: 1234}}})
	if m := g.next(); m.GetHeartbeatAck().GetTimestamp() != 1234 {
		t.Fatalf("got %v, want the heartbeat's echo", m)
	}
	h.publish(event("e6", "acme", "rooms", "r4", opCreate, `{"n":4}`, ""), event("e7", "acme", "rooms", "r1", opUpdate, `{"n":2}`, ""))
	if got := g.deliveries(1); !strings.HasPrefix(got[0], uuidB+" OPERATION_TYPE_UPDATE r1") {
		t.Fatalf("after unsubscribing %s: %v", uuidA, got)
	}

	// The stream's end drops its subscriptions at once.
	live := func() int {
		gws, err := h.backend.Subscriptions.Live(h.ctx())
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, gw := range gws {
			if strings.HasPrefix(gw, syntrixGatewayPrefix) {
				if c, _ := h.backend.Subscriptions.Count(h.ctx(), gw); c > 0 {
					n++
				}
			}
		}
		return n
	}
	if live() != 1 {
		t.Fatalf("%d Syntrix gateways with subscriptions, want 1", live())
	}
	g.cancel()
	waitFor(t, "the ended stream's subscriptions dropped", func() bool { return live() == 0 })
	if v := h.metricValue("streamer_syntrix_streams_total"); v != 1 {
		t.Errorf("streamer_syntrix_streams_total = %v", v)
	}
}

// TestSyntrixDataLoss: a gateway that does not read while its outbox
// overflows gets its stream ended with DATA_LOSS (Syntrix's contract has
// no resync), not a silent gap.
func TestSyntrixDataLoss(t *testing.T) {
	h := startNode(t, Config{Syntrix: &SyntrixConfig{Tenants: []string{"*"}}, OutboxMaxLen: 20},
		memory.Config{Partitions: 1, OutboxMaxLen: 20})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := syntrixv1.NewStreamerServiceClient(h.conn).Stream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&syntrixv1.GatewayMessage{Payload: &syntrixv1.GatewayMessage_Subscribe{Subscribe: &syntrixv1.SubscribeRequest{
		SubscriptionId: uuidA, Database: "t", Collection: "c"}}}); err != nil {
		t.Fatal(err)
	}
	if m, err := stream.Recv(); err != nil || !m.GetSubscribeResponse().GetSuccess() {
		t.Fatalf("subscribe: %v %v", m, err)
	}
	// Not reading: gRPC's flow control stops the node's sends, the outbox
	// takes the rest up to its cap of 20 entries, then drops.
	doc, _ := json.Marshal(map[string]string{"pad": strings.Repeat("x", 4096)})
	for i := range 60 {
		evs := make([]*streamerv1.ChangeEvent, 100)
		for j := range evs {
			evs[j] = event(fmt.Sprintf("e%d-%d", i, j), "t", "c", fmt.Sprintf("d%d", j), opCreate, string(doc), "")
		}
		h.publish(evs...)
	}
	var got int
	for {
		_, err := stream.Recv()
		if err != nil {
			if status.Code(err) != codes.DataLoss || !strings.Contains(err.Error(), "reconnect and subscribe again") {
				t.Fatalf("stream ended with %v after %d deliveries, want DATA_LOSS", err, got)
			}
			break
		}
		got++
	}
	if got >= 6000 {
		t.Fatalf("all %d events delivered: the outbox never overflowed", got)
	}
	if v := h.metricValue("streamer_syntrix_data_loss_total"); v != 1 {
		t.Errorf("streamer_syntrix_data_loss_total = %v", v)
	}
}

// TestSyntrixSilentGateway: a gateway silent for StreamTTL has its stream
// ended (UNAVAILABLE), and its subscriptions go.
func TestSyntrixSilentGateway(t *testing.T) {
	h := startNode(t, Config{Syntrix: &SyntrixConfig{Tenants: []string{"*"}, StreamTTL: 300 * time.Millisecond}, GatewayTTL: time.Second}, memory.Config{Partitions: 1})
	g := h.syntrix(t)
	g.subscribe(uuidA, "t", "c")
	select {
	case <-g.msgs:
	case <-time.After(waitTimeout):
		t.Fatal("the silent gateway's stream was not ended")
	}
	if err := <-g.ended; status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "no message from the gateway") {
		t.Fatalf("ended with %v", err)
	}
}
