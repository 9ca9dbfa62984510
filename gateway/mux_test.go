package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"testing"

	"github.com/coder/websocket"
)

// TestMultiplexing connects 1,000 WebSocket clients subscribing with 10
// distinct criteria, each spelled two ways (filters in another order, CEL
// formatted differently), and checks that the gateway holds exactly 10
// upstream subscriptions — on its side and on the node's — that every
// client of a criterion receives its events, and that the last client
// leaving removes them.
func TestMultiplexing(t *testing.T) {
	const clients, distinct = 1000, 10
	e := newEnv(t, envOptions{})
	tok := token(t, "acme")

	// criterion i, in spelling v (0 or 1).
	criterion := func(i, v int) map[string]any {
		if i%2 == 0 {
			f := []map[string]any{
				{"field": "shard", "op": "==", "value": i},
				{"field": "total", "op": ">=", "value": 0},
			}
			if v == 1 {
				f[0], f[1] = f[1], f[0]
			}
			return map[string]any{"filters": f}
		}
		if v == 1 {
			return map[string]any{"cel": fmt.Sprintf("doc.shard==%d.0&&doc.total>=0.0", i)}
		}
		return map[string]any{"cel": fmt.Sprintf("doc.shard == %d.0 && doc.total >= 0.0", i)}
	}

	ws := make([]*wsClient, clients)
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	sem := make(chan struct{}, 64)
	for n := range clients {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			c, resp, err := e.tryDialWS(tok, "", nil)
			if err != nil {
				errs <- fmt.Errorf("client %d: dial: %v (%s)", n, err, status(resp))
				return
			}
			w := &wsClient{t: t, c: c}
			ws[n] = w
			m := map[string]any{"type": "subscribe", "id": "s" + strconv.Itoa(n), "collection": "orders"}
			for k, v := range criterion(n%distinct, (n/distinct)%2) {
				m[k] = v
			}
			b, _ := json.Marshal(m)
			if err := c.Write(context.Background(), websocket.MessageText, b); err != nil {
				errs <- fmt.Errorf("client %d: write: %v", n, err)
				return
			}
			got, err := w.read()
			if err != nil || got.Type != "subscribed" {
				errs <- fmt.Errorf("client %d: got %+v, %v; want subscribed", n, got, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, w := range ws {
			if w != nil {
				_ = w.c.CloseNow()
			}
		}
	})

	st := e.gw.Stats()
	if st.WSConnections != clients || st.ClientSubscriptions != clients || st.UpstreamSubscriptions != distinct {
		t.Fatalf("stats %+v, want %d connections and client subscriptions sharing %d upstream ones", st, clients, distinct)
	}
	if got := e.nodeMetric("streamer_subscriptions_indexed"); got != strconv.Itoa(distinct) {
		t.Fatalf("the node indexes %s subscriptions, want %d", got, distinct)
	}
	if got := e.gwMetric("streamer_gateway_upstream_subscriptions"); got != strconv.Itoa(distinct) {
		t.Fatalf("streamer_gateway_upstream_subscriptions = %s", got)
	}
	if got := e.gwMetric("streamer_gateway_client_subscriptions"); got != strconv.Itoa(clients) {
		t.Fatalf("streamer_gateway_client_subscriptions = %s", got)
	}

	// An event for criterion 3 reaches exactly its 100 clients, each with
	// its own subscription id; the others' first event is the next one.
	ev3 := e.publish(event{Tenant: "acme", Collection: "orders", ID: "d3", Op: "create", Doc: json.RawMessage(`{"shard":3,"total":1}`)})[0]
	ev4 := e.publish(event{Tenant: "acme", Collection: "orders", ID: "d4", Op: "create", Doc: json.RawMessage(`{"shard":4,"total":1}`)})[0]
	for n, w := range ws {
		want := ev3.EventID
		switch n % distinct {
		case 3:
		case 4:
			want = ev4.EventID
		default:
			continue
		}
		m := w.next()
		if m.Type != "event" || m.EventID != want || len(m.Subs) != 1 || m.Subs[0] != "s"+strconv.Itoa(n) {
			t.Fatalf("client %d got %+v, want event %s for s%d", n, m, want, n)
		}
	}

	// Unsubscribing all clients of criterion 5 but one keeps its upstream
	// subscription; the last one removes it.
	var five []int
	for n := range clients {
		if n%distinct == 5 {
			five = append(five, n)
		}
	}
	for i, n := range five {
		w := ws[n]
		w.send(map[string]any{"type": "unsubscribe", "id": "s" + strconv.Itoa(n)})
		w.expect("unsubscribed", "s"+strconv.Itoa(n))
		want := distinct
		if i == len(five)-1 {
			want = distinct - 1
		}
		if got := e.gw.Stats().UpstreamSubscriptions; got != want {
			t.Fatalf("after %d of %d unsubscribes: %d upstream subscriptions, want %d", i+1, len(five), got, want)
		}
	}

	// Clients that close (with a close frame) do not come back to resume:
	// their subscriptions go at once.
	var closing sync.WaitGroup
	for _, w := range ws {
		closing.Go(func() { _ = w.c.Close(websocket.StatusNormalClosure, "bye") })
	}
	closing.Wait()
	waitFor(t, "every subscription to be removed", func() bool {
		st := e.gw.Stats()
		return st.WSConnections == 0 && st.ClientSubscriptions == 0 && st.UpstreamSubscriptions == 0
	})
	waitFor(t, "the node to drop them", func() bool { return e.nodeMetric("streamer_subscriptions_indexed") == "0" })
}
