package client

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"

	streamerv1 "github.com/streamerd/streamer/proto/streamer/v1"
)

// testLogger logs through t, shown only for failed tests and with -v.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// waitLimit bounds every wait of the tests on a condition.
const waitLimit = 10 * time.Second

// fakeNode is a scripted Streamer server: each Stream becomes a fakeSession
// that the test drives message by message.
type fakeNode struct {
	streamerv1.UnimplementedStreamerServer
	sessions chan *fakeSession
	wg       sync.WaitGroup // receivers, which outlive their handler briefly
}

type fakeSession struct {
	st   grpc.BidiStreamingServer[streamerv1.GatewayMessage, streamerv1.StreamerMessage]
	recv chan *streamerv1.GatewayMessage // closed when the client's side ends
	end  chan error                      // the handler returns what is sent here
}

func (f *fakeNode) Stream(st grpc.BidiStreamingServer[streamerv1.GatewayMessage, streamerv1.StreamerMessage]) error {
	s := &fakeSession{st: st, recv: make(chan *streamerv1.GatewayMessage, 10_000), end: make(chan error, 1)}
	ctx, cancel := context.WithCancel(st.Context())
	defer cancel()
	// The receiver ends when the stream does, right after this handler
	// returns; startFake's cleanup waits for it.
	f.wg.Go(func() {
		defer close(s.recv)
		for {
			m, err := st.Recv()
			if err != nil {
				return
			}
			select {
			case s.recv <- m:
			case <-ctx.Done():
				return
			}
		}
	})
	select {
	case f.sessions <- s:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-s.end:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// startFake serves a fakeNode on an in-process transport.
func startFake(t *testing.T, opts ...grpc.ServerOption) (*fakeNode, *InProcess) {
	t.Helper()
	p := NewInProcess()
	srv := grpc.NewServer(opts...)
	f := &fakeNode{sessions: make(chan *fakeSession, 16)}
	streamerv1.RegisterStreamerServer(srv, f)
	var wg sync.WaitGroup
	wg.Go(func() { _ = srv.Serve(p.Listener()) })
	t.Cleanup(func() {
		srv.Stop()
		wg.Wait()
		f.wg.Wait()
	})
	return f, p
}

func (f *fakeNode) next(t *testing.T) *fakeSession {
	t.Helper()
	select {
	case s := <-f.sessions:
		return s
	case <-time.After(waitLimit):
		t.Fatal("no session opened")
		return nil
	}
}

// expect returns the client's next message other than a heartbeat.
func (s *fakeSession) expect(t *testing.T) *streamerv1.GatewayMessage {
	t.Helper()
	for {
		m := s.expectAny(t)
		if m.GetHeartbeat() == nil {
			return m
		}
	}
}

func (s *fakeSession) expectAny(t *testing.T) *streamerv1.GatewayMessage {
	t.Helper()
	select {
	case m, ok := <-s.recv:
		if !ok {
			t.Fatal("client ended the stream")
		}
		return m
	case <-time.After(waitLimit):
		t.Fatal("no message from the client")
		return nil
	}
}

func (s *fakeSession) send(t *testing.T, m *streamerv1.StreamerMessage) {
	t.Helper()
	if err := s.st.Send(m); err != nil {
		t.Fatalf("send: %v", err)
	}
}

func registered(cursor string, resumed bool) *streamerv1.StreamerMessage {
	return &streamerv1.StreamerMessage{Msg: &streamerv1.StreamerMessage_Registered{Registered: &streamerv1.Registered{
		NodeId: "fake", Ttl: durationpb.New(30 * time.Second), Cursor: cursor, Resumed: resumed}}}
}

func subResult(id string, unsubscribed bool, code streamerv1.ErrorCode) *streamerv1.StreamerMessage {
	r := &streamerv1.SubscribeResult{SubscriptionId: id, Unsubscribed: unsubscribed}
	if code != 0 {
		r.Error = &streamerv1.Error{Code: code, Message: "fake refusal"}
	}
	return &streamerv1.StreamerMessage{Msg: &streamerv1.StreamerMessage_SubscribeResult{SubscribeResult: r}}
}

func delivery(cursor string, eventIDs ...string) *streamerv1.StreamerMessage {
	d := &streamerv1.Delivery{Cursor: cursor}
	for _, id := range eventIDs {
		d.Matches = append(d.Matches, &streamerv1.EventMatch{
			Event:     &streamerv1.ChangeEvent{EventId: id, Collection: "c", DocumentId: id},
			Operation: streamerv1.Operation_OPERATION_CREATE, SubscriptionIds: []string{"s"}})
	}
	return &streamerv1.StreamerMessage{Msg: &streamerv1.StreamerMessage_Delivery{Delivery: d}}
}

// dialFake dials the fake node, registers the first session with cursor
// and returns the Conn (closed at cleanup) and its session.
func dialFake(t *testing.T, f *fakeNode, p *InProcess, cursor string, opts ...Option) (*Conn, *fakeSession) {
	t.Helper()
	type result struct {
		c   *Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()
		c, err := Dial(ctx, InProcessAddr, append([]Option{p.Option(), WithBackoff(time.Millisecond, 10*time.Millisecond),
			WithLogger(testLogger(t))}, opts...)...)
		ch <- result{c, err}
	}()
	s := f.next(t)
	if reg := s.expect(t).GetRegister(); reg == nil || reg.GetResumeCursor() != "" {
		t.Fatalf("first message %v, want Register without cursor", reg)
	}
	s.send(t, registered(cursor, false))
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Cleanup(func() { _ = r.c.Close() })
	return r.c, s
}

// next returns the next Delivery, failing after waitLimit.
func nextDelivery(t *testing.T, c *Conn) Delivery {
	t.Helper()
	select {
	case d, ok := <-c.Deliveries():
		if !ok {
			t.Fatalf("deliveries closed: %v", c.Err())
		}
		return d
	case <-time.After(waitLimit):
		t.Fatal("no delivery")
		return Delivery{}
	}
}

func eventIDs(d Delivery) []string {
	var out []string
	for _, m := range d.Matches {
		out = append(out, m.Event.GetEventId())
	}
	return out
}

// subscribeAsync runs c.Subscribe in a goroutine; the result arrives on the
// returned channel.
func subscribeAsync(c *Conn, s Subscription) <-chan error {
	ch := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()
		ch <- c.Subscribe(ctx, s)
	}()
	return ch
}

func waitErr(t *testing.T, ch <-chan error) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(waitLimit):
		t.Fatal("call did not return")
		return nil
	}
}
