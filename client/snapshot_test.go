package client_test

import (
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/streamerd/streamer/client"
	streamerv1 "github.com/streamerd/streamer/proto/streamer/v1"
	"github.com/streamerd/streamer/service"
	"github.com/streamerd/streamer/store/memory"
)

// propDoc is a document of the property test: its version v grows with
// every change of the document (a delete included), and the change's event
// id is "<doc id>.<v>".
type propDoc struct {
	Status string  `json:"status"`
	W      float64 `json:"w"`
	V      int     `json:"v"`
}

// criteria of the property test's subscriptions, with the same predicate
// in Go.
var propCriteria = []struct {
	name string
	sub  func(id string) client.Subscription
	keep func(propDoc) bool
}{
	{"filter", func(id string) client.Subscription {
		return client.Subscription{ID: id, Tenant: "t", Collection: "docs", Filters: []client.Filter{{Field: "status", Op: "==", Value: "hot"}}}
	}, func(d propDoc) bool { return d.Status == "hot" }},
	{"cel", func(id string) client.Subscription {
		return client.Subscription{ID: id, Tenant: "t", Collection: "docs", CEL: `doc.status == "hot" && doc.w > 50.0`}
	}, func(d propDoc) bool { return d.Status == "hot" && d.W > 50 }},
}

// TestSnapshotProperty: writers change documents continuously (with
// pre-images, so that leaving documents are deletes for a subscription)
// while clients subscribe with a snapshot at random moments. Each client
// applies the snapshot, then every change; at the end its view equals the
// final set of matching documents, and no change was applied twice or
// out of order (every document's version only grows in its view).
func TestSnapshotProperty(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := testSeed(); s != 0 {
		seed = s
	}
	t.Logf("seed %d (STREAMER_SNAPSHOT_SEED=%d reproduces the schedule)", seed, seed)
	n := startNode(t, service.Config{Documents: memory.NewDocuments(0), SnapshotPageBytes: 2048}, memory.Config{Partitions: 4}, nil)
	pub := publisher(t, n.addr)

	const (
		writers   = 3
		perWriter = 25 // documents each writer owns
		writes    = 400
		clients   = 8
	)
	var (
		mu    sync.Mutex
		final = map[string]propDoc{} // the writers' documents, deleted ones absent
		done  = make(chan struct{})
	)
	var writersWG sync.WaitGroup
	progress := make(chan int, writers*writes)
	for w := range writers {
		rng := rand.New(rand.NewPCG(seed, uint64(w)))
		writersWG.Go(func() {
			versions := map[string]int{}
			state := map[string]*propDoc{}
			for range writes {
				id := fmt.Sprintf("w%d-d%02d", w, rng.IntN(perWriter))
				versions[id]++
				v := versions[id]
				old := state[id]
				var ev *streamerv1.ChangeEvent
				evID := id + "." + strconv.Itoa(v)
				switch {
				case old != nil && rng.IntN(5) == 0:
					before, _ := json.Marshal(old)
					ev = event(evID, "t", "docs", id, streamerv1.Operation_OPERATION_DELETE, "", string(before))
					state[id] = nil
				default:
					d := &propDoc{Status: []string{"hot", "cold"}[rng.IntN(2)], W: float64(rng.IntN(101)), V: v}
					doc, _ := json.Marshal(d)
					op, before := streamerv1.Operation_OPERATION_CREATE, ""
					if old != nil {
						b, _ := json.Marshal(old)
						op, before = streamerv1.Operation_OPERATION_UPDATE, string(b)
					}
					ev = event(evID, "t", "docs", id, op, string(doc), before)
					state[id] = d
				}
				publish(t, pub, ev)
				progress <- 1
			}
			mu.Lock()
			for id, d := range state {
				if d != nil {
					final[id] = *d
				}
			}
			mu.Unlock()
		})
	}

	// Clients subscribe while the writers write.
	type view struct {
		crit    int
		docs    map[string]propDoc
		applied map[string]int // version last applied per document
		errs    []string
	}
	views := make([]*view, clients)
	var clientsWG sync.WaitGroup
	rng := rand.New(rand.NewPCG(seed, 99))
	written := 0
	for i := range clients {
		for target := (i + 1) * writers * writes / (clients + 1); written < target; written++ {
			<-progress
		}
		v := &view{crit: rng.IntN(len(propCriteria)), docs: map[string]propDoc{}, applied: map[string]int{}}
		views[i] = v
		c := dial(t, n.addr)
		sub := propCriteria[v.crit].sub(fmt.Sprintf("c%d", i))
		sub.Snapshot = &client.SnapshotRequest{}
		subscribe(t, c, sub)
		clientsWG.Go(func() {
			apply := func(id string, ver int, d *propDoc) {
				if ver <= v.applied[id] {
					v.errs = append(v.errs, fmt.Sprintf("%s version %d applied after version %d", id, ver, v.applied[id]))
				}
				v.applied[id] = ver
				if d == nil {
					delete(v.docs, id)
				} else {
					v.docs[id] = *d
				}
			}
			timeout := time.After(2 * waitLimit)
			for {
				select {
				case d := <-c.Deliveries():
					switch {
					case d.Snapshot != nil:
						if d.Snapshot.GetPage() == 0 {
							clear(v.docs)
						}
						for _, sd := range d.Snapshot.GetDocuments() {
							var doc propDoc
							if err := json.Unmarshal(sd.GetDocument(), &doc); err != nil {
								v.errs = append(v.errs, err.Error())
							}
							apply(sd.GetDocumentId(), doc.V, &doc)
						}
					case d.Resync != nil, d.Dropped != nil:
						v.errs = append(v.errs, fmt.Sprintf("unexpected %+v", d))
					}
					for _, m := range d.Matches {
						id := m.Event.GetDocumentId()
						if id == "end" {
							return
						}
						ver, _ := strconv.Atoi(m.Event.GetEventId()[strings.LastIndexByte(m.Event.GetEventId(), '.')+1:])
						if m.Operation == streamerv1.Operation_OPERATION_DELETE {
							apply(id, ver, nil)
							continue
						}
						var doc propDoc
						if err := json.Unmarshal(m.Event.GetDocument(), &doc); err != nil {
							v.errs = append(v.errs, err.Error())
						}
						apply(id, ver, &doc)
					}
				case <-timeout:
					v.errs = append(v.errs, "timed out before the end marker")
					return
				case <-done:
					return
				}
			}
		})
	}
	writersWG.Wait()
	// The end marker matches both criteria and follows every write in the
	// partition: a client that has it has every change before it.
	publish(t, pub, event("end", "t", "docs", "end", streamerv1.Operation_OPERATION_CREATE, `{"status":"hot","w":100,"v":1}`, ""))
	clientsWG.Wait()
	close(done)

	for i, v := range views {
		c := propCriteria[v.crit]
		want := map[string]propDoc{}
		for id, d := range final {
			if c.keep(d) {
				want[id] = d
			}
		}
		if len(v.errs) > 0 {
			t.Errorf("client %d (%s): %s", i, c.name, strings.Join(v.errs, "; "))
		}
		if !maps.Equal(v.docs, want) {
			t.Errorf("client %d (%s): view of %d documents, want the %d matching ones\n got %v\nwant %v", i, c.name, len(v.docs), len(want), v.docs, want)
		}
	}
}

// testSeed reads STREAMER_SNAPSHOT_SEED (0 when unset).
func testSeed() uint64 {
	s, _ := strconv.ParseUint(strings.TrimSpace(os.Getenv("STREAMER_SNAPSHOT_SEED")), 10, 64)
	return s
}
