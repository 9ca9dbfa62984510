package gateway_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/streamerd/streamer/internal/testbin"
	"github.com/streamerd/streamer/internal/testwait"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/goleak"

	"github.com/streamerd/streamer/client"
	"github.com/streamerd/streamer/gateway"
	streamerv1 "github.com/streamerd/streamer/proto/streamer/v1"
	"github.com/streamerd/streamer/service"
	"github.com/streamerd/streamer/store/memory"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.Cleanup(func(int) { testbin.Cleanup() }))
}

// waitLimit bounds every wait of the tests for something to happen.
const waitLimit = 20 * time.Second

// testSecret signs the tests' HS256 tokens.
var testSecret = []byte("gateway-test-secret-0123456789abcdef")

func testLogger() *slog.Logger {
	if os.Getenv("STREAMER_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// env is one embedded node (memory backend, real gRPC server on loopback),
// one gateway with its upstream client.Conn, and the gateway's public
// handler on a loopback HTTP server.
type env struct {
	t        testing.TB
	node     *service.Node
	nodeAddr string
	gw       *gateway.Gateway
	url      string // http://127.0.0.1:port of the public handler
	pub      *client.Publisher
	eventSeq atomic.Uint64
	stop     func(testing.TB)
}

// envOptions tune newEnv.
type envOptions struct {
	cfg gateway.Config // Upstream is set by newEnv; Auth defaults to HS256 with testSecret
	// listener wraps the public listener (e.g. to shrink socket buffers).
	listener func(net.Listener) net.Listener
	// noDocuments runs the node without a document source (snapshots
	// refused).
	noDocuments bool
}

func newEnv(t testing.TB, opts envOptions) *env {
	t.Helper()
	backend := memory.New(memory.Config{Partitions: 4})
	ncfg := service.Config{NodeID: "gw-test-node", Logger: testLogger()}
	if !opts.noDocuments {
		ncfg.Documents = memory.NewDocuments(0)
	}
	node, err := service.New(ncfg, backend)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := node.NewGRPCServer()
	nodeCtx, stopNode := context.WithCancel(context.Background())
	var nodeWG sync.WaitGroup
	nodeWG.Go(func() { _ = srv.Serve(lis) })
	nodeWG.Go(func() {
		if err := node.Run(nodeCtx); err != nil {
			t.Errorf("node.Run: %v", err)
		}
	})
	t.Cleanup(func() {
		stopNode()
		srv.Stop()
		nodeWG.Wait()
		_ = backend.Close()
	})

	dialCtx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	conn, err := client.Dial(dialCtx, lis.Addr().String(), client.WithLogger(testLogger()))
	if err != nil {
		t.Fatalf("client.Dial: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	pub, err := client.NewPublisher(lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pub.Close() })

	cfg := opts.cfg
	cfg.Upstream = conn
	if cfg.Auth == nil {
		auth, err := gateway.NewJWTAuth(gateway.JWTConfig{Secret: testSecret})
		if err != nil {
			t.Fatal(err)
		}
		cfg.Auth = auth
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger()
	}
	gw, err := gateway.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	gwCtx, stopGW := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	go func() { runDone <- gw.Run(gwCtx) }()

	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if opts.listener != nil {
		hl = opts.listener(hl)
	}
	hs := httptest.NewUnstartedServer(gw.Handler())
	hs.Listener.Close()
	hs.Listener = hl
	hs.Start()
	var once sync.Once
	stop := func(t testing.TB) {
		once.Do(func() {
			stopGW()
			select {
			case err := <-runDone:
				if err != nil {
					t.Errorf("gateway Run: %v", err)
				}
			case <-time.After(waitLimit):
				t.Errorf("gateway Run did not return within %v of its context ending", waitLimit)
			}
		})
	}
	t.Cleanup(func() {
		stop(t)
		hs.Close()
	})
	return &env{t: t, node: node, nodeAddr: lis.Addr().String(), gw: gw, url: hs.URL, pub: pub, stop: stop}
}

// stopGateway ends the gateway's Run now (it closes every connection).
func (e *env) stopGateway(t testing.TB) { e.stop(t) }

// token returns an HS256 token for tenant signed with testSecret, valid
// for an hour.
func token(t testing.TB, tenant string) string {
	return signHS256(t, testSecret, jwt.MapClaims{"tenant": tenant, "sub": "user-" + tenant, "exp": time.Now().Add(time.Hour).Unix()})
}

func signHS256(t testing.TB, secret []byte, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(secret)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// event is a change event to publish, in its JSON form.
type event = client.EventJSON

// publish publishes events, filling event ids (unique per env) and
// timestamps, and returns the events as published.
func (e *env) publish(evs ...event) []event {
	e.t.Helper()
	pb := make([]*streamerv1.ChangeEvent, len(evs))
	for i := range evs {
		if evs[i].EventID == "" {
			evs[i].EventID = fmt.Sprintf("ev-%d", e.eventSeq.Add(1))
		}
		if evs[i].TS == 0 {
			evs[i].TS = client.Millis(time.Now().UnixMilli())
		}
		p, err := evs[i].Proto()
		if err != nil {
			e.t.Fatalf("event %d: %v", i, err)
		}
		pb[i] = p
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	res, err := e.pub.Publish(ctx, pb)
	if err != nil {
		e.t.Fatalf("publish: %v", err)
	}
	for i, r := range res {
		if r.GetError() != nil {
			e.t.Fatalf("publish event %d rejected: %v", i, r.GetError())
		}
	}
	return evs
}

// waitFor polls cond until it holds or waitLimit passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	testwait.For(t, what, cond)
}

// nodeMetric returns the value of an unlabelled metric of the node.
func (e *env) nodeMetric(name string) string {
	return scrape(e.t, e.node.AdminHandler(), name)
}

// gwMetric returns the value of the gateway metric line starting with
// name (which may include labels).
func (e *env) gwMetric(name string) string {
	return scrape(e.t, e.gw.AdminHandler(), name)
}

func scrape(t testing.TB, h http.Handler, name string) string {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for line := range strings.Lines(rec.Body.String()) {
		if rest, ok := strings.CutPrefix(line, name+" "); ok {
			return strings.TrimSpace(rest)
		}
	}
	t.Fatalf("metric %s not found in:\n%s", name, rec.Body.String())
	return ""
}

// msg is any server message; ID is the subscription id for
// subscribed/unsubscribed/error and the document id for events.
type msg struct {
	Type       string          `json:"type"`
	ID         string          `json:"id"`
	Code       string          `json:"code"`
	Message    string          `json:"message"`
	Reason     string          `json:"reason"`
	Subs       []string        `json:"subs"`
	Op         string          `json:"op"`
	Collection string          `json:"collection"`
	Doc        json.RawMessage `json:"doc"`
	EventID    string          `json:"event_id"`
	TS         int64           `json:"ts"`
	Tenant     string          `json:"tenant"`
	// snapshot and snapshot_end
	Page      int32     `json:"page"`
	Docs      []snapDoc `json:"docs"`
	Documents int32     `json:"documents"`
	More      bool      `json:"more"`
	NextAfter string    `json:"next_after"`
}

type snapDoc struct {
	ID      string          `json:"id"`
	Doc     json.RawMessage `json:"doc"`
	EventID string          `json:"event_id"`
	TS      int64           `json:"ts"`
}

// wsClient is a WebSocket end user.
type wsClient struct {
	t testing.TB
	c *websocket.Conn
}

// dialWS connects to /v1/ws with token in the Authorization header (none
// when empty).
func (e *env) dialWS(t testing.TB, tok string) *wsClient {
	t.Helper()
	c, resp, err := e.tryDialWS(tok, "", nil)
	if err != nil {
		t.Fatalf("websocket dial: %v (response %v)", err, status(resp))
	}
	w := &wsClient{t: t, c: c}
	t.Cleanup(func() { _ = c.CloseNow() })
	return w
}

func (e *env) tryDialWS(tok, query string, hc *http.Client) (*websocket.Conn, *http.Response, error) {
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	opts := &websocket.DialOptions{HTTPHeader: http.Header{}, HTTPClient: hc}
	if tok != "" {
		opts.HTTPHeader.Set("Authorization", "Bearer "+tok)
	}
	u := "ws" + strings.TrimPrefix(e.url, "http") + "/v1/ws"
	if query != "" {
		u += "?" + query
	}
	c, resp, err := websocket.Dial(ctx, u, opts)
	if err == nil {
		c.SetReadLimit(4 << 20)
	}
	return c, resp, err
}

func status(resp *http.Response) string {
	if resp == nil {
		return "none"
	}
	return resp.Status
}

// in returns w reporting failures to t (a subtest).
func (w *wsClient) in(t testing.TB) *wsClient { return &wsClient{t: t, c: w.c} }

func (w *wsClient) send(v any) {
	w.t.Helper()
	var b []byte
	switch v := v.(type) {
	case string:
		b = []byte(v)
	default:
		var err error
		if b, err = json.Marshal(v); err != nil {
			w.t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if err := w.c.Write(ctx, websocket.MessageText, b); err != nil {
		w.t.Fatalf("websocket write: %v", err)
	}
}

// next reads the next message; it fails the test after waitLimit.
func (w *wsClient) next() msg {
	w.t.Helper()
	m, err := w.read()
	if err != nil {
		w.t.Fatalf("websocket read: %v", err)
	}
	return m
}

func (w *wsClient) read() (msg, error) {
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	_, b, err := w.c.Read(ctx)
	if err != nil {
		return msg{}, err
	}
	var m msg
	if err := json.Unmarshal(b, &m); err != nil {
		return msg{}, fmt.Errorf("message %s: %w", b, err)
	}
	return m, nil
}

// expect reads the next message and checks its type (and id when given).
func (w *wsClient) expect(typ, id string) msg {
	w.t.Helper()
	m := w.next()
	if m.Type != typ || (id != "" && m.ID != id) {
		w.t.Fatalf("got %+v, want a %q message for %q", m, typ, id)
	}
	return m
}

// subscribe sends a subscribe message and waits for "subscribed".
func (w *wsClient) subscribe(id, collection string, criterion map[string]any) {
	w.t.Helper()
	m := map[string]any{"type": "subscribe", "id": id, "collection": collection}
	for k, v := range criterion {
		m[k] = v
	}
	w.send(m)
	w.expect("subscribed", id)
}

// sseClient is an SSE end user reading one stream.
type sseClient struct {
	t      testing.TB
	resp   *http.Response
	events chan sseEvent
	done   chan struct{}
}

type sseEvent struct {
	id   string
	data msg
	raw  string
}

// sseURL returns the /v1/sse URL for the query q.
func (e *env) sseURL(q url.Values) string {
	return e.url + "/v1/sse?" + q.Encode()
}

// trySSE opens an SSE request; the caller closes the body.
func trySSE(u, tok, lastEventID string) (*http.Response, error) {
	req, err := http.NewRequest("GET", u, nil)
	if err != nil {
		return nil, err
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	if lastEventID != "" {
		req.Header.Set("Last-Event-ID", lastEventID)
	}
	req.Header.Set("Accept", "text/event-stream")
	return http.DefaultClient.Do(req)
}

// openSSE opens a stream that must be accepted, and parses its events in a
// goroutine that ends when the stream is closed.
func (e *env) openSSE(t testing.TB, q url.Values, tok, lastEventID string) *sseClient {
	t.Helper()
	resp, err := trySSE(e.sseURL(q), tok, lastEventID)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Fatalf("SSE %s: %s %s", q.Encode(), resp.Status, b)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		t.Fatalf("SSE Content-Type = %q", ct)
	}
	s := &sseClient{t: t, resp: resp, events: make(chan sseEvent, 1024), done: make(chan struct{})}
	go s.read()
	t.Cleanup(s.close)
	return s
}

func (s *sseClient) read() {
	defer close(s.done)
	defer close(s.events)
	br := bufio.NewReader(s.resp.Body)
	var ev sseEvent
	var data bytes.Buffer
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		switch {
		case line == "":
			if data.Len() > 0 {
				ev.raw = data.String()
				if err := json.Unmarshal(data.Bytes(), &ev.data); err != nil {
					ev.data = msg{Type: "unparsable"}
				}
				s.events <- ev
			}
			ev, data = sseEvent{}, bytes.Buffer{}
		case strings.HasPrefix(line, "data: "):
			data.WriteString(strings.TrimPrefix(line, "data: "))
		case strings.HasPrefix(line, "id: "):
			ev.id = strings.TrimPrefix(line, "id: ")
		}
	}
}

// close ends the stream and waits for the reader.
func (s *sseClient) close() {
	_ = s.resp.Body.Close()
	<-s.done
}

// next returns the next event; it fails the test after waitLimit or when
// the stream ends.
func (s *sseClient) next() sseEvent {
	s.t.Helper()
	select {
	case ev, ok := <-s.events:
		if !ok {
			s.t.Fatal("SSE stream ended")
		}
		return ev
	case <-time.After(waitLimit):
		s.t.Fatalf("no SSE event within %v", waitLimit)
	}
	return sseEvent{}
}
