package bench

import (
	"context"
	"fmt"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/streamerd/streamer/client"
	streamerv1 "github.com/streamerd/streamer/proto/streamer/v1"
	syntrixv1 "github.com/streamerd/streamer/proto/syntrix/streamer/v1"
)

// benchGateway is what the harness needs of a gateway: the client
// library's Conn, or a client of Syntrix's streamer service
// (Config.Syntrix).
type benchGateway interface {
	Subscribe(ctx context.Context, s client.Subscription) error
	Deliveries() <-chan client.Delivery
	Err() error
	Stats() client.Stats
	Close() error
}

// syntrixGateway talks to a node as Syntrix's gateway does: one
// syntrix.streamer.v1 stream, subscriptions answered by id, one
// EventDelivery per event, handed over as client Deliveries.
type syntrixGateway struct {
	cc     *grpc.ClientConn
	stream grpc.BidiStreamingClient[syntrixv1.GatewayMessage, syntrixv1.StreamerMessage]
	cancel context.CancelFunc
	out    chan client.Delivery

	sendMu  sync.Mutex
	mu      sync.Mutex
	waiting map[string]chan *syntrixv1.SubscribeResponse
	err     error
}

func dialSyntrix(ctx context.Context, addr string) (*syntrixGateway, error) {
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stream, err := syntrixv1.NewStreamerServiceClient(cc).Stream(sctx)
	if err != nil {
		cancel()
		_ = cc.Close()
		return nil, fmt.Errorf("bench: Syntrix stream to %s: %w", addr, err)
	}
	g := &syntrixGateway{cc: cc, stream: stream, cancel: cancel, out: make(chan client.Delivery, 1024),
		waiting: map[string]chan *syntrixv1.SubscribeResponse{}}
	go g.receive()
	return g, nil
}

func (g *syntrixGateway) receive() {
	defer close(g.out)
	for {
		m, err := g.stream.Recv()
		if err != nil {
			g.mu.Lock()
			if g.err == nil { // Close sets ErrClosed first
				g.err = err
			}
			for _, w := range g.waiting {
				close(w)
			}
			g.waiting = nil
			g.mu.Unlock()
			return
		}
		switch x := m.GetPayload().(type) {
		case *syntrixv1.StreamerMessage_SubscribeResponse:
			g.mu.Lock()
			w := g.waiting[x.SubscribeResponse.GetSubscriptionId()]
			delete(g.waiting, x.SubscribeResponse.GetSubscriptionId())
			g.mu.Unlock()
			if w != nil {
				w <- x.SubscribeResponse
			}
		case *syntrixv1.StreamerMessage_Delivery:
			ev := x.Delivery.GetEvent()
			op := streamerv1.Operation_OPERATION_UPDATE
			switch ev.GetOperation() {
			case syntrixv1.OperationType_OPERATION_TYPE_INSERT:
				op = streamerv1.Operation_OPERATION_CREATE
			case syntrixv1.OperationType_OPERATION_TYPE_DELETE:
				op = streamerv1.Operation_OPERATION_DELETE
			}
			g.out <- client.Delivery{Matches: []client.Match{{
				Event: &streamerv1.ChangeEvent{EventId: ev.GetEventId(), Tenant: ev.GetDatabase(), Collection: ev.GetCollection(),
					DocumentId: ev.GetDocumentId(), Document: ev.GetDocumentData(), TimestampMs: ev.GetTimestamp()},
				Operation: op, SubscriptionIDs: x.Delivery.GetSubscriptionIds(),
			}}}
		}
	}
}

// Subscribe sends a SubscribeRequest and waits for its response.
// Syntrix's filters have no CEL.
func (g *syntrixGateway) Subscribe(ctx context.Context, s client.Subscription) error {
	req := &syntrixv1.SubscribeRequest{SubscriptionId: s.ID, Database: s.Tenant, Collection: s.Collection}
	switch {
	case s.CEL != "":
		return fmt.Errorf("bench: subscription %s: Syntrix's filters have no CEL (use a mix without cel)", s.ID)
	case s.DocumentID != "":
		req.Filters = []*syntrixv1.Filter{{Field: "_id", Op: "==", Value: &syntrixv1.Value{Kind: &syntrixv1.Value_StringValue{StringValue: s.DocumentID}}}}
	default:
		for _, f := range s.Filters {
			v, ok := f.Value.(string)
			if !ok {
				return fmt.Errorf("bench: subscription %s: filter value %v is not a string", s.ID, f.Value)
			}
			req.Filters = append(req.Filters, &syntrixv1.Filter{Field: f.Field, Op: f.Op, Value: &syntrixv1.Value{Kind: &syntrixv1.Value_StringValue{StringValue: v}}})
		}
	}
	w := make(chan *syntrixv1.SubscribeResponse, 1)
	g.mu.Lock()
	if g.waiting == nil {
		err := g.err
		g.mu.Unlock()
		return fmt.Errorf("bench: Syntrix stream ended: %w", err)
	}
	g.waiting[s.ID] = w
	g.mu.Unlock()
	g.sendMu.Lock()
	err := g.stream.Send(&syntrixv1.GatewayMessage{Payload: &syntrixv1.GatewayMessage_Subscribe{Subscribe: req}})
	g.sendMu.Unlock()
	if err != nil {
		return err
	}
	select {
	case r, ok := <-w:
		switch {
		case !ok:
			return fmt.Errorf("bench: Syntrix stream ended: %w", g.Err())
		case !r.GetSuccess():
			return fmt.Errorf("bench: subscription %s refused: %s", s.ID, r.GetError())
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (g *syntrixGateway) Deliveries() <-chan client.Delivery { return g.out }

func (g *syntrixGateway) Err() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.err
}

// Stats is zero: Syntrix's gateways keep none of the client library's.
func (g *syntrixGateway) Stats() client.Stats { return client.Stats{} }

// Close ends the stream.
func (g *syntrixGateway) Close() error {
	g.mu.Lock()
	if g.err == nil {
		g.err = client.ErrClosed
	}
	g.mu.Unlock()
	g.cancel()
	for range g.out { // drain until the receiver ends
	}
	return g.cc.Close()
}
