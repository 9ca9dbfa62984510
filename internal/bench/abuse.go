package bench

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/streamerd/streamer/client"
	streamerv1 "github.com/streamerd/streamer/proto/streamer/v1"
)

// Abuse kinds: a noisy neighbour, a tenant of its own ("abuser") next to the
// workload's, that the well-behaved tenants must not feel.
//   - cel: 50 subscriptions whose CEL concatenates a 100 kB document field
//     five times (accepted: linear in the document; each evaluation stops at
//     the cost limit), on 100 events/s. The node ends them after three
//     events; the abuser subscribes each again as soon as it is told (the
//     node refuses them during its cooldown). The runaway expression this
//     replaces, a concatenation in a loop over a list, is refused at
//     subscribe.
//   - docs: one subscription to everything, on 40 documents/s of 900 kB;
//   - subs: 90,000 subscriptions (one gateway's, under the default limit of
//     100,000), on 500 events/s matching one of them each.
var AbuseKinds = []string{"cel", "docs", "subs"}

// abuseTenant is the noisy neighbour's tenant and collection.
const abuseTenant, abuseCollection = "abuser", "abuse"

// abuser is a running noisy neighbour: its gateway, which reads and drops
// its deliveries, and its publisher.
type abuser struct {
	conn    *client.Conn
	pub     *client.Publisher
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	ended   atomic.Int64 // subscriptions the node ended, which the abuser subscribes again
	refused atomic.Int64 // of those subscriptions again, the ones the node refused
}

// startAbuse connects the noisy neighbour of kind to the node at addr,
// subscribes it, and starts publishing its load.
func startAbuse(ctx context.Context, kind, addr string) (*abuser, error) {
	conn, err := client.Dial(ctx, addr, client.WithGatewayID("abuser-"+kind), client.WithDeliveryBuffer(64),
		client.WithLogger(slog.New(slog.DiscardHandler))) // its ended subscriptions are counted, not logged
	if err != nil {
		return nil, fmt.Errorf("bench: abuse: %w", err)
	}
	a := &abuser{conn: conn}
	pctx, cancel := context.WithCancel(context.Background())
	a.cancel = cancel
	again := make(chan string, 1024)
	a.wg.Go(func() {
		defer close(again)
		for d := range conn.Deliveries() { // read and dropped: the abuser is not the one measured
			if d.Dropped != nil && d.Dropped.Code == streamerv1.ErrorCode_ERROR_CODE_COST_LIMIT {
				a.ended.Add(1)
				select {
				case again <- d.Dropped.SubscriptionID:
				default:
				}
			}
		}
	})
	var subs []client.Subscription
	switch kind {
	case "cel":
		for i := range 50 {
			subs = append(subs, client.Subscription{ID: fmt.Sprintf("cel%d", i), Tenant: abuseTenant, Collection: abuseCollection,
				CEL: fmt.Sprintf(`(doc.s + doc.s + doc.s + doc.s + doc.s).size() > %d`, i)})
		}
	case "docs":
		subs = []client.Subscription{{ID: "all", Tenant: abuseTenant, Collection: abuseCollection}}
	case "subs":
		for i := range 90_000 {
			subs = append(subs, client.Subscription{ID: fmt.Sprintf("s%d", i), Tenant: abuseTenant, Collection: abuseCollection,
				DocumentID: fmt.Sprintf("d%d", i)})
		}
	default:
		a.stop()
		return nil, fmt.Errorf("bench: unknown abuse %q (want one of %s)", kind, strings.Join(AbuseKinds, ", "))
	}
	if err := subscribeAll(ctx, conn, subs); err != nil {
		a.stop()
		return nil, fmt.Errorf("bench: abuse: %w", err)
	}
	byID := map[string]client.Subscription{}
	for _, s := range subs {
		byID[s.ID] = s
	}
	a.wg.Go(func() { // subscribe again whatever the node ends
		for id := range again {
			if err := conn.Subscribe(pctx, byID[id]); err != nil { // refusals are part of abusing
				a.refused.Add(1)
			}
		}
	})
	if a.pub, err = client.NewPublisher(addr); err != nil {
		a.stop()
		return nil, err
	}
	a.wg.Go(func() { a.publish(pctx, kind) })
	return a, nil
}

// subscribeAll subscribes subs with subscribeWorkers calls in flight.
func subscribeAll(ctx context.Context, conn *client.Conn, subs []client.Subscription) error {
	var wg sync.WaitGroup
	errs := make(chan error, subscribeWorkers)
	for w := range subscribeWorkers {
		wg.Go(func() {
			for i := w; i < len(subs); i += subscribeWorkers {
				if err := conn.Subscribe(ctx, subs[i]); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// publish sends the abuse load until ctx ends, at the kind's rate, in one
// batch every 100 ms.
func (a *abuser) publish(ctx context.Context, kind string) {
	var perTick int
	var doc []byte
	switch kind {
	case "cel":
		perTick = 10
		doc = []byte(`{"s":"` + strings.Repeat("x", 100_000) + `"}`)
	case "docs":
		perTick = 4
		doc = []byte(`{"s":"` + strings.Repeat("y", 900_000) + `"}`)
	case "subs":
		perTick = 50
		doc = []byte(`{"n":1}`)
	}
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	seq := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		batch := make([]*streamerv1.ChangeEvent, perTick)
		for i := range batch {
			seq++
			batch[i] = &streamerv1.ChangeEvent{EventId: fmt.Sprintf("abuse-%d", seq), Tenant: abuseTenant, Collection: abuseCollection,
				DocumentId: fmt.Sprintf("d%d", seq%90_000), Operation: streamerv1.Operation_OPERATION_UPDATE, Document: doc,
				TimestampMs: time.Now().UnixMilli()}
		}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, _ = a.pub.Publish(cctx, batch) // refusals and timeouts are part of abusing
		cancel()
	}
}

// stop stops the load and closes the abuser's connections.
func (a *abuser) stop() {
	if a == nil {
		return
	}
	a.cancel()
	_ = a.conn.Close()
	a.wg.Wait()
	if a.pub != nil {
		_ = a.pub.Close()
	}
}
