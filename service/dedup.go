package service

// recentIDs remembers the ids of the last size events a partition consumer
// routed, to drop producer replays (Config.DedupSize). Ids of the read batch
// in progress are tentative: they count as seen at once (a replay within
// the batch is dropped too), and are remembered for good by commit, once the
// batch's outbox entries are appended, or forgotten by abort when the batch
// is retried. Ids are committed in routing order and the oldest is forgotten
// first; checking an id does not refresh it.
//
// It stores the ids themselves, not hashes of them: a hash collision would
// drop a genuine event without a trace, and keeping each id costs one small
// allocation per routed event, which a ring of strings and one map make
// cheaper than an LRU list (no list node, no second map for the batch).
type recentIDs struct {
	size  int
	seen  map[string]struct{} // the ring's ids and the batch's
	ring  []string            // committed ids, oldest first from next; grows up to size
	next  int                 // once the ring is full, its oldest id, which the next commit replaces
	batch []string            // tentative ids, in routing order
}

// newRecentIDs returns a recentIDs remembering size > 0 ids. Its memory
// grows with the ids committed, up to size.
func newRecentIDs(size int) *recentIDs {
	return &recentIDs{size: size, seen: map[string]struct{}{}}
}

// replayed reports whether id (not empty) was committed recently or is
// tentative, and otherwise makes it tentative.
func (r *recentIDs) replayed(id []byte) bool {
	if _, ok := r.seen[string(id)]; ok { // no allocation: the conversion is only a lookup key
		return true
	}
	s := string(id)
	r.seen[s] = struct{}{}
	r.batch = append(r.batch, s)
	return false
}

// commit remembers the tentative ids, forgetting the oldest beyond size.
func (r *recentIDs) commit() {
	for _, id := range r.batch {
		if len(r.ring) < r.size {
			r.ring = append(r.ring, id)
			continue
		}
		// The oldest id is never a tentative one, which was not in seen
		// when made tentative (it may be one committed earlier in this loop).
		delete(r.seen, r.ring[r.next])
		r.ring[r.next] = id
		if r.next++; r.next == r.size {
			r.next = 0
		}
	}
	r.batch = reuse(r.batch)
}

// abort forgets the tentative ids.
func (r *recentIDs) abort() {
	for _, id := range r.batch {
		delete(r.seen, id)
	}
	r.batch = reuse(r.batch)
}
