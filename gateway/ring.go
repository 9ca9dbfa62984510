package gateway

import "sort"

// ring is the resume buffer for SSE Last-Event-ID: the most recent event
// bodies sent on SSE subscriptions, oldest first, bounded by maxBytes. Each
// entry belongs to one upstream subscription.
//
// Invariant that makes replay exact: if (upstream u, event e) is indexed,
// every event delivered on u after e is in the ring. It holds because the
// ring evicts oldest first, the hub records every event of u while u has an
// SSE member or hold, calls forget(u) when it stops recording u, and reset
// when events may have been lost upstream.
//
// Not safe for concurrent use; the hub's mutex guards it.
type ring struct {
	maxBytes int
	bytes    int
	seq      uint64
	entries  []ringEntry // entries[head:] are live, in seq order
	head     int
	index    map[ringKey]uint64 // → seq of the entry
}

type ringKey struct{ upstream, eventID string }

type ringEntry struct {
	seq      uint64
	upstream string
	eventID  string
	body     []byte
}

// ringEntryOverhead approximates an entry's memory beyond its body.
const ringEntryOverhead = 128

func newRing(maxBytes int) *ring {
	return &ring{maxBytes: maxBytes, index: map[ringKey]uint64{}}
}

func (e *ringEntry) size() int {
	return len(e.body) + len(e.upstream) + len(e.eventID) + ringEntryOverhead
}

// add records that body (event eventID) was delivered on upstream, evicting
// the oldest entries to stay within maxBytes. An entry that alone exceeds
// the bound empties the ring, so that no later replay can skip it.
func (r *ring) add(upstream, eventID string, body []byte) {
	if eventID == "" {
		return
	}
	e := ringEntry{upstream: upstream, eventID: eventID, body: body}
	if e.size() > r.maxBytes {
		r.reset()
		return
	}
	for r.bytes+e.size() > r.maxBytes {
		r.evict()
	}
	r.seq++
	e.seq = r.seq
	r.entries = append(r.entries, e)
	r.bytes += e.size()
	r.index[ringKey{upstream, eventID}] = e.seq
}

func (r *ring) evict() {
	old := &r.entries[r.head]
	k := ringKey{old.upstream, old.eventID}
	if r.index[k] == old.seq {
		delete(r.index, k)
	}
	r.bytes -= old.size()
	*old = ringEntry{}
	r.head++
	if r.head > len(r.entries)/2 { // compact, amortised O(1)
		n := copy(r.entries, r.entries[r.head:])
		clear(r.entries[n:])
		r.entries = r.entries[:n]
		r.head = 0
	}
}

// since returns the bodies delivered on upstream after eventID, oldest
// first, and whether eventID is known there. Not known means the caller
// cannot tell what was missed.
func (r *ring) since(upstream, eventID string) ([]ringEntry, bool) {
	seq, ok := r.index[ringKey{upstream, eventID}]
	if !ok {
		return nil, false
	}
	live := r.entries[r.head:]
	i := sort.Search(len(live), func(i int) bool { return live[i].seq > seq })
	var out []ringEntry
	for _, e := range live[i:] {
		if e.upstream == upstream {
			out = append(out, e)
		}
	}
	return out, true
}

// forget unindexes upstream's entries: the hub stops recording it, so its
// history would have gaps from now on.
func (r *ring) forget(upstream string) {
	for _, e := range r.entries[r.head:] {
		if e.upstream == upstream {
			delete(r.index, ringKey{e.upstream, e.eventID})
		}
	}
}

// reset empties the ring: events may have been lost upstream.
func (r *ring) reset() {
	clear(r.entries)
	r.entries = r.entries[:0]
	r.head = 0
	r.bytes = 0
	clear(r.index)
}

// len returns the number of entries.
func (r *ring) len() int { return len(r.entries) - r.head }
