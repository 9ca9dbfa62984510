package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"slices"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/streamerd/streamer/match"
)

// verifyChunk is how many events a verification worker takes at a time.
const verifyChunk = 4096

// maxExamples is how many lost or unexpected pairs a failed run names.
const maxExamples = 5

// Completeness compares the (event, subscription) pairs that should have
// been delivered with those that were. Delivered = Expected − Lost +
// Unexpected + Duplicates.
type Completeness struct {
	// Expected pairs, computed by brute force: every published document
	// evaluated against every distinct criterion of its collection.
	Expected int64 `json:"expected"`
	// Delivered pairs, as handed to the gateways by the client library
	// (after its own duplicate filter).
	Delivered int64 `json:"delivered"`
	// Lost are expected pairs never delivered.
	Lost int64 `json:"lost"`
	// Duplicates are deliveries of a pair beyond its first.
	Duplicates int64 `json:"duplicates"`
	// Unexpected are delivered pairs whose criterion does not match the
	// event (or events and subscriptions the harness never made).
	Unexpected int64 `json:"unexpected"`
	// WrongOp are pairs delivered with an operation other than the event's
	// (the run publishes no pre-images, so they must be equal).
	WrongOp int64 `json:"wrong_op"`
	// Examples names a few lost and unexpected pairs.
	Examples []string `json:"examples,omitempty"`
}

// verifier computes expected pairs independently of the node's index.
type verifier struct {
	wl       *workload
	gateways int
	byColl   [][]*critGroup // distinct criteria per collection
	distinct int
}

// critGroup is one distinct criterion and the subscriptions that use it.
type critGroup struct {
	compiled *match.Compiled
	members  []member
}

type member struct {
	gateway int
	sub     uint32
}

func newVerifier(wl *workload) (*verifier, error) {
	eng, err := match.NewEngine(match.Config{})
	if err != nil {
		return nil, err
	}
	v := &verifier{wl: wl, gateways: wl.gateways, byColl: make([][]*critGroup, wl.collections)}
	seen := make([]map[string]*critGroup, wl.collections)
	for c := range seen {
		seen[c] = map[string]*critGroup{}
	}
	for g := range wl.gateways {
		for i := range wl.perGateway {
			sp := wl.spec(g, i)
			key, err := json.Marshal(sp.crit)
			if err != nil {
				return nil, err
			}
			cg := seen[sp.collection][string(key)]
			if cg == nil {
				compiled, err := eng.Compile(sp.crit)
				if err != nil {
					return nil, fmt.Errorf("bench: subscription %s: %w", sp.sub.ID, err)
				}
				cg = &critGroup{compiled: compiled}
				seen[sp.collection][string(key)] = cg
				v.byColl[sp.collection] = append(v.byColl[sp.collection], cg)
				v.distinct++
			}
			cg.members = append(cg.members, member{gateway: g, sub: uint32(i)})
		}
	}
	return v, nil
}

// verify compares what was delivered for events [0, n) with the
// expectation. delivered[g] holds gateway g's pairs (seq<<32 | sub) and is
// sorted in place. done, when not nil, counts the events checked so far. It
// stops early, with a partial result, when ctx is done.
func (v *verifier) verify(ctx context.Context, n uint64, delivered [][]uint64, done *atomic.Uint64) Completeness {
	var wg sync.WaitGroup
	for _, d := range delivered {
		wg.Go(func() { slices.Sort(d) })
	}
	wg.Wait()

	var res Completeness
	var mu sync.Mutex
	var nextChunk atomic.Uint64
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			w := &verifyWorker{v: v, delivered: delivered, exp: make([][]uint32, v.gateways)}
			for {
				lo := nextChunk.Add(verifyChunk) - verifyChunk
				if lo >= n || ctx.Err() != nil {
					break
				}
				w.chunk(lo, min(lo+verifyChunk, n))
				if done != nil {
					done.Add(min(lo+verifyChunk, n) - lo)
				}
			}
			mu.Lock()
			res.Expected += w.res.Expected
			res.Lost += w.res.Lost
			res.Duplicates += w.res.Duplicates
			res.Unexpected += w.res.Unexpected
			for _, e := range w.res.Examples {
				if len(res.Examples) < maxExamples {
					res.Examples = append(res.Examples, e)
				}
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	for g, d := range delivered {
		res.Delivered += int64(len(d))
		// Pairs of events never published (seq >= n) are unexpected.
		beyond := d[sort.Search(len(d), func(i int) bool { return d[i]>>32 >= n }):]
		for i, p := range beyond {
			if i > 0 && p == beyond[i-1] {
				res.Duplicates++
				continue
			}
			res.Unexpected++
			if len(res.Examples) < maxExamples {
				res.Examples = append(res.Examples, fmt.Sprintf("unexpected: gateway %d got s%d for event %d, which was never published", g, uint32(p), p>>32))
			}
		}
	}
	slices.Sort(res.Examples)
	return res
}

// verifyWorker checks chunks of events.
type verifyWorker struct {
	v         *verifier
	delivered [][]uint64
	exp       [][]uint32 // per gateway: expected subscriptions of the current event
	doc       []byte
	res       Completeness
}

func (w *verifyWorker) chunk(lo, hi uint64) {
	cur := make([]int, len(w.delivered)) // per gateway: first pair of the chunk
	for g, d := range w.delivered {
		cur[g] = sort.Search(len(d), func(i int) bool { return d[i]>>32 >= lo })
	}
	for seq := lo; seq < hi; seq++ {
		w.expect(seq)
		for g, d := range w.delivered {
			end := cur[g]
			for end < len(d) && d[end]>>32 == seq {
				end++
			}
			w.compare(g, seq, w.exp[g], d[cur[g]:end])
			cur[g] = end
		}
	}
}

// expect fills w.exp with the subscriptions event seq matches, by
// evaluating every distinct criterion of its collection on its document.
func (w *verifyWorker) expect(seq uint64) {
	for g := range w.exp {
		w.exp[g] = w.exp[g][:0]
	}
	e := w.v.wl.event(seq)
	w.doc = e.appendDocument(w.doc[:0], seq)
	var doc map[string]any
	if err := json.Unmarshal(w.doc, &doc); err != nil {
		panic("bench: generated document is not JSON: " + err.Error())
	}
	id := docName(e.doc)
	for _, cg := range w.v.byColl[e.collection] {
		if cg.compiled.Match(doc, id) {
			for _, m := range cg.members {
				w.exp[m.gateway] = append(w.exp[m.gateway], m.sub)
			}
		}
	}
	for g := range w.exp {
		slices.Sort(w.exp[g])
		w.res.Expected += int64(len(w.exp[g]))
	}
}

// compare walks one event's expected (sorted, distinct) and delivered
// (sorted) subscriptions of gateway g.
func (w *verifyWorker) compare(g int, seq uint64, exp []uint32, del []uint64) {
	i, j := 0, 0
	for i < len(exp) || j < len(del) {
		if j > 0 && j < len(del) && del[j] == del[j-1] {
			w.res.Duplicates++
			j++
			continue
		}
		switch {
		case j == len(del) || (i < len(exp) && exp[i] < uint32(del[j])):
			w.res.Lost++
			w.example("lost: gateway %d never got s%d for event %d", g, exp[i], seq)
			i++
		case i == len(exp) || uint32(del[j]) < exp[i]:
			w.res.Unexpected++
			w.example("unexpected: gateway %d got s%d for event %d, which it does not match", g, uint32(del[j]), seq)
			j++
		default:
			i++
			j++
		}
	}
}

func (w *verifyWorker) example(format string, args ...any) {
	if len(w.res.Examples) < maxExamples {
		w.res.Examples = append(w.res.Examples, fmt.Sprintf(format, args...))
	}
}
