package gateway_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"

	"github.com/streamerd/streamer/gateway"
)

// syntrixMsg is a Syntrix envelope as a client reads it.
type syntrixMsg struct {
	ID      string `json:"id"`
	Type    string `json:"type"`
	Payload struct {
		Code      string            `json:"code"`
		Message   string            `json:"message"`
		SubID     string            `json:"subId"`
		Documents []json.RawMessage `json:"documents"`
		Delta     *struct {
			Type      string         `json:"type"`
			ID        string         `json:"id"`
			Document  map[string]any `json:"document"`
			Timestamp int64          `json:"timestamp"`
		} `json:"delta"`
	} `json:"payload"`
	raw string
}

// syntrixClient is a /realtime/ws connection.
type syntrixClient struct {
	t testing.TB
	c *websocket.Conn
}

// dialSyntrix opens /realtime/ws, with header set on the upgrade.
func (e *env) dialSyntrix(t testing.TB, header http.Header, query string) (*syntrixClient, *http.Response, error) {
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	u := "ws" + strings.TrimPrefix(e.url, "http") + "/realtime/ws"
	if query != "" {
		u += "?" + query
	}
	c, resp, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPHeader: header})
	if err != nil {
		return nil, resp, err
	}
	c.SetReadLimit(16 << 20)
	t.Cleanup(func() { _ = c.CloseNow() })
	return &syntrixClient{t: t, c: c}, resp, nil
}

func (e *env) syntrix(t testing.TB) *syntrixClient {
	t.Helper()
	c, resp, err := e.dialSyntrix(t, nil, "")
	if err != nil {
		t.Fatalf("dial /realtime/ws: %v (%s)", err, status(resp))
	}
	return c
}

func (c *syntrixClient) send(v any) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	b, ok := v.([]byte)
	if !ok {
		var err error
		if b, err = json.Marshal(v); err != nil {
			c.t.Fatal(err)
		}
	}
	if err := c.c.Write(ctx, websocket.MessageText, b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// next returns the next message but heartbeats.
func (c *syntrixClient) next() syntrixMsg {
	c.t.Helper()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		_, b, err := c.c.Read(ctx)
		cancel()
		if err != nil {
			c.t.Fatalf("read: %v", err)
		}
		var m syntrixMsg
		if err := json.Unmarshal(b, &m); err != nil {
			c.t.Fatalf("message %s: %v", b, err)
		}
		m.raw = string(b)
		if m.Type != "heartbeat" {
			return m
		}
	}
}

func (c *syntrixClient) expect(typ, id string) syntrixMsg {
	c.t.Helper()
	m := c.next()
	if m.Type != typ || m.ID != id {
		c.t.Fatalf("got %s, want a %q message with id %q", m.raw, typ, id)
	}
	return m
}

func (c *syntrixClient) auth(tok string) {
	c.t.Helper()
	c.send(map[string]any{"id": "auth-init", "type": "auth", "payload": map[string]any{"token": tok}})
	if m := c.expect("auth_ack", "auth-init"); strings.Contains(m.raw, "payload") {
		c.t.Fatalf("auth_ack with a payload: %s", m.raw)
	}
}

func (c *syntrixClient) subscribe(id, collection string, filters []map[string]any, includeData, snapshot bool) {
	c.t.Helper()
	if filters == nil {
		filters = []map[string]any{}
	}
	c.send(map[string]any{"id": id, "type": "subscribe", "payload": map[string]any{
		"query":       map[string]any{"collection": collection, "filters": filters, "orderBy": []any{}, "limit": 10},
		"includeData": includeData, "sendSnapshot": snapshot}})
	c.expect("subscribe_ack", id)
}

// events reads n event messages and renders them "subId type id n=<n>".
func (c *syntrixClient) events(n int) []string {
	c.t.Helper()
	var out []string
	for range n {
		m := c.next()
		if m.Type != "event" || m.ID != "" || m.Payload.Delta == nil {
			c.t.Fatalf("got %s, want an event", m.raw)
		}
		s := m.Payload.SubID + " " + m.Payload.Delta.Type + " " + m.Payload.Delta.ID
		if n, ok := m.Payload.Delta.Document["n"]; ok {
			s += " n=" + jsonText(n)
		}
		out = append(out, s)
	}
	return out
}

func jsonText(v any) string { b, _ := json.Marshal(v); return string(b) }

// TestSyntrixWebSocket checks every message and error path of
// /realtime/ws against Syntrix's protocol (docs/SYNTRIX.md).
func TestSyntrixWebSocket(t *testing.T) {
	e := newEnv(t, envOptions{cfg: gateway.Config{SyntrixHeartbeat: 50 * time.Millisecond}})
	tok := token(t, "acme")

	t.Run("a token in the query string is refused", func(t *testing.T) {
		for _, q := range []string{"access_token=" + tok, "token=" + tok} {
			if _, resp, err := e.dialSyntrix(t, nil, q); err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("?%s…: %v %s, want 401", q[:6], err, status(resp))
			}
		}
	})
	t.Run("a bad Authorization header is refused, a good one authenticates", func(t *testing.T) {
		if _, resp, err := e.dialSyntrix(t, http.Header{"Authorization": {"Bearer nope"}}, ""); err == nil || resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("bad header: %v %s", err, status(resp))
		}
		c, _, err := e.dialSyntrix(t, http.Header{"Authorization": {"Bearer " + tok}}, "")
		if err != nil {
			t.Fatal(err)
		}
		c.subscribe("pre", "orders", nil, true, false)
	})
	t.Run("auth errors carry Syntrix's codes and texts", func(t *testing.T) {
		c := e.syntrix(t)
		c.send(map[string]any{"id": "s0", "type": "subscribe", "payload": map[string]any{"query": map[string]any{"collection": "orders"}}})
		if m := c.expect("error", "s0"); m.Payload.Code != "unauthorized" || m.Payload.Message != "auth required" {
			t.Fatalf("subscribe before auth: %s", m.raw)
		}
		c.send(map[string]any{"id": "u0", "type": "unsubscribe", "payload": map[string]any{"id": "s0"}})
		if m := c.expect("error", "u0"); m.Payload.Code != "unauthorized" {
			t.Fatalf("unsubscribe before auth: %s", m.raw)
		}
		c.send(map[string]any{"id": "a1", "type": "auth", "payload": map[string]any{"tok": "x"}})
		if m := c.expect("error", "a1"); m.Payload.Code != "invalid_auth" || m.Payload.Message != "invalid payload" {
			t.Fatalf("bad payload: %s", m.raw)
		}
		c.send(map[string]any{"id": "a2", "type": "auth", "payload": map[string]any{"token": "nope"}})
		if m := c.expect("error", "a2"); m.Payload.Code != "unauthorized" || m.Payload.Message != "invalid token" {
			t.Fatalf("bad token: %s", m.raw)
		}
		// Unknown types and unreadable messages are ignored.
		c.send([]byte(`{"type":"whatever","id":"w"}`))
		c.send([]byte(`not json`))
		// A payload sent as a JSON string, and the newer SDK's database.
		inner, _ := json.Marshal(map[string]any{"token": tok, "database": "main"})
		c.send(map[string]any{"id": "a3", "type": "auth", "payload": string(inner)})
		c.expect("auth_ack", "a3")
		// Another tenant's token on the same connection is refused.
		c.send(map[string]any{"id": "a4", "type": "auth", "payload": map[string]any{"token": token(t, "globex")}})
		if m := c.expect("error", "a4"); m.Payload.Code != "unauthorized" {
			t.Fatalf("another tenant's token: %s", m.raw)
		}
	})
	t.Run("filters, operators and invalid ones", func(t *testing.T) {
		c := e.syntrix(t)
		c.auth(tok)
		c.send(map[string]any{"id": "bad", "type": "subscribe", "payload": map[string]any{"query": map[string]any{"collection": "items",
			"filters": []map[string]any{{"field": "n", "op": "~=", "value": 1}}}, "includeData": true, "sendSnapshot": false}})
		if m := c.expect("error", "bad"); m.Payload.Code != "" || !strings.HasPrefix(m.Payload.Message, "Invalid filter expression: ") {
			t.Fatalf("invalid filter: %s", m.raw)
		}
		c.send(map[string]any{"id": "nocoll", "type": "subscribe", "payload": map[string]any{"query": map[string]any{"collection": ""}}})
		if m := c.expect("error", "nocoll"); !strings.Contains(m.Payload.Message, "collection is required") {
			t.Fatalf("no collection: %s", m.raw)
		}
		f := func(field, op string, v any) []map[string]any {
			return []map[string]any{{"field": field, "op": op, "value": v}}
		}
		c.subscribe("eq", "items", f("n", "==", 5), true, false)
		c.subscribe("ne", "items", f("n", "!=", 5), true, false)
		c.subscribe("gt", "items", f("n", ">", 5), true, false)
		c.subscribe("ge", "items", f("n", ">=", 5), true, false)
		c.subscribe("lt", "items", f("n", "<", 5), true, false)
		c.subscribe("le", "items", f("n", "<=", 5), true, false)
		c.subscribe("in", "items", f("tag", "in", []any{"a", "b"}), true, false)
		c.subscribe("ac", "items", f("tags", "array-contains", "x"), true, false)
		c.subscribe("co", "items", f("tags", "contains", "x"), true, false)
		c.subscribe("dot", "items", f("meta.kind", "==", "k"), true, false)
		e.publish(
			event{Tenant: "acme", Collection: "items", ID: "i1", Op: "create", Doc: json.RawMessage(`{"n":5,"tag":"a","tags":["x"],"meta":{"kind":"k"}}`)},
			event{Tenant: "acme", Collection: "items", ID: "i2", Op: "create", Doc: json.RawMessage(`{"n":7}`)},
			event{Tenant: "acme", Collection: "items", ID: "i3", Op: "create", Doc: json.RawMessage(`{"tag":"c"}`)}, // no n: only the filters on other fields may match
			event{Tenant: "globex", Collection: "items", ID: "g1", Op: "create", Doc: json.RawMessage(`{"n":5}`)},
		)
		got := map[string]bool{}
		for _, s := range c.events(10) {
			got[s] = true
		}
		for _, want := range []string{"eq create items/i1 n=5", "ge create items/i1 n=5", "le create items/i1 n=5", "in create items/i1 n=5",
			"ac create items/i1 n=5", "co create items/i1 n=5", "dot create items/i1 n=5", "ne create items/i2 n=7", "gt create items/i2 n=7", "ge create items/i2 n=7"} {
			if !got[want] {
				t.Errorf("missing event %q; got %v", want, got)
			}
		}
	})
	t.Run("events: one per subscription, flattened documents, enter and leave, replace, unsubscribe", func(t *testing.T) {
		c := e.syntrix(t)
		c.auth(tok)
		hot := []map[string]any{{"field": "status", "op": "==", "value": "hot"}}
		c.subscribe("sub-1", "orders", hot, true, false)
		c.subscribe("sub-2", "orders", nil, false, false)
		c.subscribe("sub-3", "orders", hot, true, false)
		c.subscribe("sub-3", "orders", nil, true, false) // replaces: every document now
		ev := e.publish(event{Tenant: "acme", Collection: "orders", ID: "o1", Op: "create", Doc: json.RawMessage(`{"_id":"o1","status":"hot","n":1}`)})[0]
		seen := map[string]syntrixMsg{}
		for range 3 {
			m := c.next()
			if m.Type != "event" {
				t.Fatalf("got %s", m.raw)
			}
			if _, dup := seen[m.Payload.SubID]; dup {
				t.Fatalf("two events for %s", m.Payload.SubID)
			}
			seen[m.Payload.SubID] = m
		}
		d := seen["sub-1"].Payload.Delta
		if d.Type != "create" || d.ID != "orders/o1" || d.Timestamp != int64(ev.TS) || d.Document["id"] != "o1" || d.Document["collection"] != "orders" ||
			d.Document["status"] != "hot" || d.Document["_id"] != nil {
			t.Fatalf("sub-1's event: %s", seen["sub-1"].raw)
		}
		if seen["sub-2"].Payload.Delta.Document != nil || strings.Contains(seen["sub-2"].raw, "document") {
			t.Fatalf("includeData false: %s", seen["sub-2"].raw)
		}
		// o1 leaves "hot": a delete for sub-1, an update for the others.
		e.publish(event{Tenant: "acme", Collection: "orders", ID: "o1", Op: "update", Doc: json.RawMessage(`{"status":"cold","n":2}`), Before: json.RawMessage(`{"status":"hot","n":1}`)})
		got := map[string]bool{}
		for _, s := range c.events(3) {
			got[s] = true
		}
		if !got["sub-1 delete orders/o1 n=2"] || !got["sub-2 update orders/o1"] || !got["sub-3 update orders/o1 n=2"] {
			t.Fatalf("leave: %v", got)
		}
		c.send(map[string]any{"id": "unsub-sub-2", "type": "unsubscribe", "payload": map[string]any{"id": "sub-2"}})
		c.expect("unsubscribe_ack", "unsub-sub-2")
		c.send(map[string]any{"id": "unsub-x", "type": "unsubscribe", "payload": map[string]any{"id": "never"}})
		c.expect("unsubscribe_ack", "unsub-x")
		e.publish(event{Tenant: "acme", Collection: "orders", ID: "o1", Op: "delete"})
		got = map[string]bool{}
		for _, s := range c.events(2) {
			got[s] = true
		}
		if !got["sub-3 delete orders/o1"] || len(got) != 2 {
			t.Fatalf("after unsubscribing sub-2: %v", got)
		}
	})
	t.Run("sendSnapshot: the filtered documents after the ack, then the changes", func(t *testing.T) {
		e.publish(
			event{Tenant: "acme", Collection: "rooms", ID: "r1", Op: "create", Doc: json.RawMessage(`{"open":true,"_id":"r1"}`)},
			event{Tenant: "acme", Collection: "rooms", ID: "r2", Op: "create", Doc: json.RawMessage(`{"open":false}`)},
		)
		c := e.syntrix(t)
		c.auth(tok)
		c.subscribe("s", "rooms", []map[string]any{{"field": "open", "op": "==", "value": true}}, true, true)
		m := c.expect("snapshot", "s")
		if m.Payload.SubID != "s" || len(m.Payload.Documents) != 1 || string(m.Payload.Documents[0]) != `{"collection":"rooms","id":"r1","open":true}` {
			t.Fatalf("snapshot: %s", m.raw)
		}
		e.publish(event{Tenant: "acme", Collection: "rooms", ID: "r2", Op: "update", Doc: json.RawMessage(`{"open":true}`), Before: json.RawMessage(`{"open":false}`)})
		if got := c.events(1); got[0] != "s create rooms/r2" {
			t.Fatalf("after the snapshot: %v", got)
		}
	})
	t.Run("heartbeats", func(t *testing.T) {
		c := e.syntrix(t)
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()
		_, b, err := c.c.Read(ctx)
		if err != nil || string(b) != `{"type":"heartbeat"}` {
			t.Fatalf("first message %s, %v", b, err)
		}
	})
}

// TestSyntrixTenantClaim: Syntrix's tokens name the tenant in "tid".
func TestSyntrixTenantClaim(t *testing.T) {
	auth, err := gateway.NewJWTAuth(gateway.JWTConfig{Secret: testSecret, TenantClaim: "tid"})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, envOptions{cfg: gateway.Config{Auth: auth}})
	tok := signHS256(t, testSecret, jwt.MapClaims{"tid": "acme", "oid": "u1", "exp": time.Now().Add(time.Hour).Unix()})
	c := e.syntrix(t)
	c.auth(tok)
	c.subscribe("s", "orders", nil, true, false)
	e.publish(event{Tenant: "acme", Collection: "orders", ID: "o1", Op: "create", Doc: json.RawMessage(`{}`)},
		event{Tenant: "globex", Collection: "orders", ID: "o2", Op: "create", Doc: json.RawMessage(`{}`)})
	if got := c.events(1); got[0] != "s create orders/o1" {
		t.Fatalf("got %v", got)
	}
	c.send(map[string]any{"id": "a", "type": "auth", "payload": map[string]any{"token": token(t, "acme")}}) // "tenant", not "tid"
	if m := c.expect("error", "a"); m.Payload.Code != "unauthorized" {
		t.Fatalf("a token without tid: %s", m.raw)
	}
}

// TestSyntrixSSE checks /realtime/sse and /realtime/v1/databases/{db}/sse.
func TestSyntrixSSE(t *testing.T) {
	e := newEnv(t, envOptions{cfg: gateway.Config{SyntrixHeartbeat: 50 * time.Millisecond}})
	tok := token(t, "acme")
	open := func(path string, withToken bool) *http.Response {
		req, _ := http.NewRequest("GET", e.url+path, nil)
		if withToken {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req) // no Origin header, as Node's fetch
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = resp.Body.Close() })
		return resp
	}
	if resp := open("/realtime/sse?collection=orders", false); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("without a token: %s", resp.Status)
	}
	if resp := open("/realtime/sse", true); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("without a collection: %s", resp.Status)
	}
	for _, path := range []string{"/realtime/sse?collection=" + url.QueryEscape("orders"), "/realtime/v1/databases/main/sse?collection=orders"} {
		resp := open(path, true)
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
			t.Fatalf("%s: %s %s", path, resp.Status, resp.Header.Get("Content-Type"))
		}
		blocks := make(chan string, 64)
		go func() {
			defer close(blocks)
			sc := bufio.NewScanner(resp.Body)
			var cur []string
			for sc.Scan() {
				if sc.Text() == "" {
					blocks <- strings.Join(cur, "\n")
					cur = nil
					continue
				}
				cur = append(cur, sc.Text())
			}
		}()
		next := func() string {
			select {
			case b, ok := <-blocks:
				if !ok {
					t.Fatal("stream ended")
				}
				return b
			case <-time.After(waitLimit):
				t.Fatal("no SSE block")
			}
			return ""
		}
		if b := next(); b != ": connected" {
			t.Fatalf("%s: first block %q", path, b)
		}
		heartbeat := false
		ev := e.publish(event{Tenant: "acme", Collection: "orders", ID: "o1", Op: "create", Doc: json.RawMessage(`{"n":1}`)})[0]
		for {
			b := next()
			if b == ": heartbeat" {
				heartbeat = true
				continue
			}
			if !strings.HasPrefix(b, "data: ") || strings.Contains(b, "\nid:") {
				t.Fatalf("%s: block %q", path, b)
			}
			var m syntrixMsg
			if err := json.Unmarshal([]byte(strings.TrimPrefix(b, "data: ")), &m); err != nil {
				t.Fatal(err)
			}
			if m.Type != "event" || m.Payload.SubID != "default" || m.Payload.Delta.ID != "orders/o1" || m.Payload.Delta.Document["n"] != 1.0 || m.Payload.Delta.Timestamp != int64(ev.TS) {
				t.Fatalf("%s: event %s", path, b)
			}
			break
		}
		for !heartbeat {
			heartbeat = next() == ": heartbeat"
		}
		_ = resp.Body.Close()
	}
}
