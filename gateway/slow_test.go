package gateway_test

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/streamerd/streamer/gateway"
	"github.com/streamerd/streamer/internal/clock"
)

// smallBuffers makes the kernel buffer little of a connection, so that a
// peer that stops reading blocks the writer after a few KiB instead of
// megabytes.
const smallBuffers = 4096

type smallWriteBufferListener struct{ net.Listener }

func (l smallWriteBufferListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(smallBuffers)
	}
	return c, err
}

// smallReadBufferClient dials with a small receive buffer (set before
// connecting, so the TCP window stays small).
func smallReadBufferClient() *http.Client {
	d := &net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, smallBuffers)
		}); err != nil {
			return err
		}
		return serr
	}}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
}

// TestSlowClientIsCut subscribes a client that never reads and one that
// does, publishes until the slow client's socket buffers and send queue
// overflow, and checks that the reader got every event meanwhile (it is
// never held back by the slow one), and that the slow client is closed with
// 1008 "slow consumer: …" and counted.
func TestSlowClientIsCut(t *testing.T) {
	const queue, events = 8, 300
	e := newEnv(t, envOptions{
		cfg:      gateway.Config{SendQueue: queue, WriteTimeout: time.Minute},
		listener: func(l net.Listener) net.Listener { return smallWriteBufferListener{l} },
	})
	tok := token(t, "acme")

	c, resp, err := e.tryDialWS(tok, "", smallReadBufferClient())
	if err != nil {
		t.Fatalf("slow client: %v (%s)", err, status(resp))
	}
	slow := &wsClient{t: t, c: c}
	t.Cleanup(func() { _ = c.CloseNow() })
	slow.subscribe("s", "orders", nil)
	fast := e.dialWS(t, tok)
	fast.subscribe("f", "orders", nil)

	// Publish in chunks smaller than the queue, each read by the fast
	// client before the next: its queue never overflows, while the slow
	// client's socket buffers and then queue fill up.
	pad := strings.Repeat("x", 4000)
	const chunk = queue / 2
	sent := 0
	for ; e.gw.Stats().SlowDisconnects == 0; sent += chunk {
		if sent >= events {
			t.Fatalf("%d events of 4 KB did not overflow the slow client's queue of %d", sent, queue)
		}
		evs := make([]event, chunk)
		for i := range evs {
			evs[i] = event{Tenant: "acme", Collection: "orders", ID: "d", Op: "update", Doc: json.RawMessage(`{"pad":"` + pad + `"}`)}
		}
		evs = e.publish(evs...)
		for _, ev := range evs {
			if m := fast.next(); m.Type != "event" || m.EventID != ev.EventID {
				t.Fatalf("fast client got %+v, want event %s", m, ev.EventID)
			}
		}
	}
	if st := e.gw.Stats(); st.SlowDisconnects != 1 || st.WSConnections == 0 {
		t.Fatalf("stats %+v, want exactly one slow disconnect", st)
	}

	// Reading now drains what was buffered, then the close frame (the
	// gateway's writer was blocked on the full socket until now).
	var err2 error
	for n := 0; ; n++ {
		m, err := slow.read()
		if err != nil {
			err2 = err
			break
		}
		if m.Type != "subscribed" && m.Type != "event" {
			t.Fatalf("slow client got %+v", m)
		}
		if n > sent {
			t.Fatal("the slow client received every event: it was never cut")
		}
	}
	t.Logf("cut after %d events were published", sent)
	var ce websocket.CloseError
	if !asCloseError(err2, &ce) || ce.Code != websocket.StatusPolicyViolation || !strings.Contains(ce.Reason, "slow consumer") {
		t.Fatalf("slow client ended with %v, want close 1008 with reason \"slow consumer…\"", err2)
	}
	if got := e.gwMetric(`streamer_gateway_slow_disconnects_total{transport="ws"}`); got != "1" {
		t.Fatalf("slow disconnects metric = %s", got)
	}

	// The fast client is unaffected.
	ev := e.publish(event{Tenant: "acme", Collection: "orders", ID: "d", Op: "update", Doc: json.RawMessage(`{}`)})[0]
	if m := fast.next(); m.EventID != ev.EventID {
		t.Fatalf("fast client got %+v after the cut", m)
	}
	waitFor(t, "the slow connection to be gone", func() bool { return e.gw.Stats().WSConnections == 1 })
}

func asCloseError(err error, ce *websocket.CloseError) bool {
	if websocket.CloseStatus(err) == -1 {
		return false
	}
	for err != nil {
		if c, ok := err.(websocket.CloseError); ok {
			*ce = c
			return true
		}
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return false
		}
		err = u.Unwrap()
	}
	return false
}

// TestExpiredIdentityIsDisconnected checks that a connection ends when its
// token expires.
func TestExpiredIdentityIsDisconnected(t *testing.T) {
	fc := clock.NewFake(time.Now())
	e := newEnv(t, envOptions{cfg: gateway.Config{Clock: fc, Auth: authFunc(func(*http.Request) (gateway.Identity, error) {
		return gateway.Identity{Tenant: "acme", Expires: fc.Now().Add(time.Hour)}, nil
	})}})
	w := e.dialWS(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	read := make(chan error, 1)
	go func() { _, _, err := w.c.Read(ctx); read <- err }()
	var err error
	waitFor(t, "the connection closed", func() bool {
		select {
		case err = <-read:
			return true
		default:
			fc.Advance(10 * time.Minute) // the token's hour passes in steps
			return false
		}
	})
	var ce websocket.CloseError
	if !asCloseError(err, &ce) || ce.Code != websocket.StatusPolicyViolation || ce.Reason != "access token expired" {
		t.Fatalf("got %v, want close 1008 \"access token expired\"", err)
	}
}

type authFunc func(*http.Request) (gateway.Identity, error)

func (f authFunc) Authenticate(r *http.Request) (gateway.Identity, error) { return f(r) }

// TestSlowSSEClientIsCutAndResumes cuts an SSE stream that does not read,
// then reconnects it the way EventSource does, with the Last-Event-ID it
// saw: every event it missed is replayed, in order, with no resync.
func TestSlowSSEClientIsCutAndResumes(t *testing.T) {
	const queue = 8
	e := newEnv(t, envOptions{
		cfg:      gateway.Config{SendQueue: queue, SSEResumeWindow: time.Minute, WriteTimeout: time.Minute},
		listener: func(l net.Listener) net.Listener { return smallWriteBufferListener{l} },
	})
	tok := token(t, "acme")
	q := url.Values{"collection": {"orders"}}
	req, err := http.NewRequest("GET", e.sseURL(q), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := smallReadBufferClient().Do(req) // returns once subscribed
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("slow SSE stream: %v %v", resp, err)
	}
	slow := &sseClient{t: t, resp: resp, events: make(chan sseEvent, 1024), done: make(chan struct{})}
	t.Cleanup(func() { _ = resp.Body.Close() })
	fast := e.dialWS(t, tok)
	fast.subscribe("f", "orders", nil)

	pad := strings.Repeat("y", 4000)
	var published []string
	for e.gw.Stats().SlowDisconnects == 0 {
		if len(published) >= 300 {
			t.Fatalf("%d events did not overflow the SSE stream's queue of %d", len(published), queue)
		}
		evs := make([]event, queue/2)
		for i := range evs {
			evs[i] = event{Tenant: "acme", Collection: "orders", ID: "d", Op: "update", Doc: json.RawMessage(`{"pad":"` + pad + `"}`)}
		}
		for _, ev := range e.publish(evs...) {
			published = append(published, ev.EventID)
			if m := fast.next(); m.EventID != ev.EventID {
				t.Fatalf("fast client got %+v, want %s", m, ev.EventID)
			}
		}
	}
	if got := e.gwMetric(`streamer_gateway_slow_disconnects_total{transport="sse"}`); got != "1" {
		t.Fatalf("SSE slow disconnects = %s", got)
	}

	// The cut stream ends after what was already written.
	go slow.read()
	var seen []string
	for ev := range slow.events {
		switch ev.data.Type {
		case "subscribed":
		case "event":
			seen = append(seen, ev.id)
		default:
			t.Fatalf("slow stream got %s", ev.raw)
		}
	}
	if len(seen) == 0 || len(seen) >= len(published) || !slices.Equal(seen, published[:len(seen)]) {
		t.Fatalf("the cut stream saw %v of %v: want a proper prefix", seen, published)
	}

	// Reconnect with Last-Event-ID: the rest is replayed, then live.
	s := e.openSSE(t, q, tok, seen[len(seen)-1])
	s.expect("subscribed")
	for _, id := range published[len(seen):] {
		s.expectEvent(id)
	}
	live := e.publish(event{Tenant: "acme", Collection: "orders", ID: "d", Op: "update", Doc: json.RawMessage(`{}`)})[0]
	s.expectEvent(live.EventID)
	t.Logf("cut after %d events; %d replayed", len(published), len(published)-len(seen))
}
