package bench

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/streamerd/streamer/client"
	"github.com/streamerd/streamer/match"
	streamerv1 "github.com/streamerd/streamer/proto/streamer/v1"
)

// tenant of every event and subscription of a run.
const tenant = "bench"

// markerDoc is the document id of marker events; each gateway has one
// marker subscription per collection (id "m<c>"), which nothing else
// matches.
const markerDoc = "marker"

// subKind is the kind of a generated subscription.
type subKind uint8

const (
	kindEquality subKind = iota
	kindDocID
	kindCEL
)

// subSpec is one generated subscription: the same criterion in the client's
// form (sent to the node) and in match's (evaluated by the verifier).
type subSpec struct {
	kind       subKind
	collection int
	sub        client.Subscription
	crit       match.Criterion
}

// workload generates a run's subscriptions and events deterministically
// from the seed: event seq always has the same collection, document id,
// operation and document, so the verifier regenerates what was published
// instead of storing it.
type workload struct {
	seed        uint64
	collections int
	distinct    int
	documents   int
	gateways    int
	perGateway  int // subscriptions per gateway
	nCEL, nDoc  int // of each gateway's: the first nCEL are CEL, the next nDoc document ids
	collNames   []string
}

func newWorkload(cfg Config) *workload {
	w := &workload{seed: cfg.Seed, collections: cfg.Collections, distinct: cfg.DistinctValues, documents: cfg.Documents,
		gateways: cfg.Gateways, perGateway: cfg.SubsPerGateway}
	s := cfg.SubsPerGateway
	w.nCEL = int(math.Round(float64(s) * cfg.Mix.CEL / 100))
	w.nDoc = min(int(math.Round(float64(s)*cfg.Mix.DocumentID/100)), s-w.nCEL)
	w.collNames = make([]string, w.collections)
	for c := range w.collNames {
		w.collNames[c] = collectionName(c)
	}
	return w
}

// spec returns gateway g's subscription i (id "s<i>"). It is computed
// from the seed at each call rather than kept: the run's heap then holds
// the nodes' and gateways' subscriptions, not a third copy for the bench,
// which the garbage collector would mark in every collection.
func (w *workload) spec(g, i int) subSpec {
	kind := kindEquality
	switch {
	case i < w.nCEL:
		kind = kindCEL
	case i < w.nCEL+w.nDoc:
		kind = kindDocID
	}
	return w.subscription("s"+strconv.Itoa(i), kind, w.rand(1, uint64(g), uint64(i)))
}

// subscription builds a subscription of the kind from the random values h.
func (w *workload) subscription(id string, kind subKind, h randSeq) subSpec {
	c := int(h.next() % uint64(w.collections))
	sp := subSpec{kind: kind, collection: c}
	sp.sub = client.Subscription{ID: id, Tenant: tenant, Collection: collectionName(c)}
	switch kind {
	case kindEquality:
		v := "u" + strconv.FormatUint(h.next()%uint64(w.distinct), 10)
		sp.sub.Filters = []client.Filter{{Field: "user", Op: "==", Value: v}}
		sp.crit.Filters = []match.Filter{{Field: "user", Op: match.OpEqual, Value: v}}
	case kindDocID:
		d := docName(int(h.next() % uint64(w.documents)))
		sp.sub.DocumentID, sp.crit.DocumentID = d, d
	case kindCEL:
		var expr string
		if h.next()%3 < 2 { // indexable through its equality conjunct
			expr = fmt.Sprintf(`doc.user == "u%d" && doc.score >= %d.0`, h.next()%uint64(w.distinct), h.next()%1000)
		} else { // no equality conjunct: evaluated for every event of the collection
			expr = fmt.Sprintf(`doc.score > %d.5 && id.endsWith("%d")`, 900+h.next()%100, h.next()%10)
		}
		sp.sub.CEL, sp.crit.CEL = expr, expr
	}
	return sp
}

// markerSubscriptions returns a gateway's marker subscriptions, one per
// collection.
func (w *workload) markerSubscriptions() []client.Subscription {
	out := make([]client.Subscription, w.collections)
	for c := range out {
		out[c] = client.Subscription{ID: "m" + strconv.Itoa(c), Tenant: tenant, Collection: collectionName(c), DocumentID: markerDoc}
	}
	return out
}

// eventSpec is the content of event seq, without its time stamp.
type eventSpec struct {
	collection int
	doc        int // document id index
	user       int
	score      int // hundredths: the document's score is score/100
	region     int
	op         streamerv1.Operation
}

// event returns the content of event seq: uniform collection, document,
// user, score and region; a quarter creates, the rest updates (no
// pre-images, so a subscription gets the event exactly when its criterion
// matches the document).
func (w *workload) event(seq uint64) eventSpec {
	h := w.rand(2, seq, 0)
	e := eventSpec{
		collection: int(h.next() % uint64(w.collections)),
		doc:        int(h.next() % uint64(w.documents)),
		user:       int(h.next() % uint64(w.distinct)),
		score:      int(h.next() % 100_000),
		region:     int(h.next() % 8),
		op:         streamerv1.Operation_OPERATION_UPDATE,
	}
	if h.next()%4 == 0 {
		e.op = streamerv1.Operation_OPERATION_CREATE
	}
	return e
}

// appendDocument appends event seq's document (JSON) to dst.
func (e eventSpec) appendDocument(dst []byte, seq uint64) []byte {
	return fmt.Appendf(dst, `{"user":"u%d","score":%d.%02d,"region":"r%d","n":%d}`,
		e.user, e.score/100, e.score%100, e.region, seq)
}

// changeEvent builds the event to publish; stamp is its publish time, in
// the event id.
//
// The event comes from eventPool, and goes back with releaseEvents once
// published: the load generator shares its heap with the nodes it measures.
func (w *workload) changeEvent(ph phase, seq uint64, stamp time.Time) *streamerv1.ChangeEvent {
	e := w.event(seq)
	ev := eventPool.Get().(*streamerv1.ChangeEvent)
	doc := ev.Document[:0]
	proto.Reset(ev)
	ev.EventId = eventID(ph, seq, stamp)
	ev.Tenant = tenant
	ev.Collection = w.collNames[e.collection]
	ev.DocumentId = docName(e.doc)
	ev.Operation = e.op
	ev.Document = e.appendDocument(doc, seq)
	ev.TimestampMs = stamp.UnixMilli()
	return ev
}

var eventPool = sync.Pool{New: func() any { return &streamerv1.ChangeEvent{Document: make([]byte, 0, 80)} }}

// releaseEvents returns published events to eventPool: nothing refers to
// them once Publish has returned.
func releaseEvents(evs []*streamerv1.ChangeEvent) {
	for i, ev := range evs {
		eventPool.Put(ev)
		evs[i] = nil
	}
}

// markerEvents returns the markers closing phase ph, one per collection.
func (w *workload) markerEvents(ph phase) []*streamerv1.ChangeEvent {
	now := time.Now()
	out := make([]*streamerv1.ChangeEvent, w.collections)
	for c := range out {
		out[c] = &streamerv1.ChangeEvent{
			EventId: "x" + strconv.Itoa(int(ph)) + "." + strconv.Itoa(c) + "." + strconv.FormatInt(now.UnixNano(), 10),
			Tenant:  tenant, Collection: collectionName(c), DocumentId: markerDoc,
			Operation: streamerv1.Operation_OPERATION_UPDATE, Document: []byte(`{}`), TimestampMs: now.UnixMilli(),
		}
	}
	return out
}

func collectionName(c int) string { return "items" + strconv.Itoa(c) }
func docName(d int) string        { return "d" + strconv.Itoa(d) }

// phase is a part of the run whose events are told apart by their id.
type phase uint8

const (
	phaseWarmup phase = iota
	phaseMeasure
)

func (p phase) String() string {
	if p == phaseWarmup {
		return "warmup"
	}
	return "measure"
}

// eventID is "<w|m><seq>.<publish time in ns>".
func eventID(ph phase, seq uint64, stamp time.Time) string {
	b := make([]byte, 0, 32)
	b = append(b, "wm"[ph])
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, '.')
	b = strconv.AppendInt(b, stamp.UnixNano(), 10)
	return string(b)
}

// parsedID is what an event id says.
type parsedID struct {
	marker bool
	phase  phase
	seq    uint64 // event sequence number; for a marker, its collection
	stamp  int64  // publish time, unix ns
}

// parseEventID reads an id made by eventID or markerEvents.
func parseEventID(id string) (parsedID, bool) {
	if len(id) < 2 {
		return parsedID{}, false
	}
	var p parsedID
	rest := id[1:]
	switch id[0] {
	case 'w':
		p.phase = phaseWarmup
	case 'm':
		p.phase = phaseMeasure
	case 'x':
		p.marker = true
		ph, r, ok := strings.Cut(rest, ".")
		n, err := strconv.ParseUint(ph, 10, 8)
		if !ok || err != nil || n > uint64(phaseMeasure) {
			return parsedID{}, false
		}
		p.phase, rest = phase(n), r
	default:
		return parsedID{}, false
	}
	a, b, ok := strings.Cut(rest, ".")
	if !ok {
		return parsedID{}, false
	}
	var err1, err2 error
	p.seq, err1 = strconv.ParseUint(a, 10, 64)
	p.stamp, err2 = strconv.ParseInt(b, 10, 64)
	return p, err1 == nil && err2 == nil
}

// randSeq is a deterministic sequence of pseudo-random numbers (SplitMix64).
type randSeq struct{ state uint64 }

// rand returns the sequence for (stream, a, b) under the workload's seed.
func (w *workload) rand(stream, a, b uint64) randSeq {
	return randSeq{state: mix64(w.seed ^ mix64(stream<<56^mix64(a)+b*0x9e3779b97f4a7c15))}
}

func (r *randSeq) next() uint64 {
	r.state += 0x9e3779b97f4a7c15
	return mix64(r.state)
}

// mix64 is SplitMix64's finaliser.
func mix64(x uint64) uint64 {
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}
