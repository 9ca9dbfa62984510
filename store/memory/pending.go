package memory

import (
	"iter"
	"time"
)

// pendingEntry is the group's record of one delivered, unacknowledged entry.
type pendingEntry struct {
	consumer   string    // consumer it was last delivered or claimed to
	delivered  time.Time // when; idle time is measured from here
	deliveries int64     // times delivered or claimed
}

// pendingList is a consumer group's pending entries list (PEL) in id order.
// Ids are added in increasing order only (the group delivers in order), so
// order is an append-only slice; removed ids stay in it until compaction.
type pendingList struct {
	order []streamID
	byID  map[streamID]*pendingEntry
}

// add records id, greater than every id added before, as delivered to
// consumer at now.
func (pl *pendingList) add(id streamID, consumer string, now time.Time) {
	if pl.byID == nil {
		pl.byID = map[streamID]*pendingEntry{}
	}
	pl.byID[id] = &pendingEntry{consumer: consumer, delivered: now, deliveries: 1}
	pl.order = append(pl.order, id)
}

// remove forgets id if pending. It compacts order once removed ids
// outnumber pending ones, so order stays within twice the list's size.
func (pl *pendingList) remove(id streamID) {
	if _, ok := pl.byID[id]; !ok {
		return
	}
	delete(pl.byID, id)
	if len(pl.order) <= 2*len(pl.byID)+64 {
		return
	}
	kept := make([]streamID, 0, len(pl.byID))
	for _, id := range pl.order {
		if _, ok := pl.byID[id]; ok {
			kept = append(kept, id)
		}
	}
	pl.order = kept
}

func (pl *pendingList) len() int { return len(pl.byID) }

// all yields the pending entries oldest first. The caller must not remove
// entries while iterating.
func (pl *pendingList) all() iter.Seq2[streamID, *pendingEntry] {
	return func(yield func(streamID, *pendingEntry) bool) {
		for _, id := range pl.order {
			if pe, ok := pl.byID[id]; ok && !yield(id, pe) {
				return
			}
		}
	}
}

// first returns the oldest pending id.
func (pl *pendingList) first() (streamID, bool) {
	for i, id := range pl.order {
		if _, ok := pl.byID[id]; ok {
			pl.order = pl.order[i:] // removed ids before it are never needed again
			return id, true
		}
	}
	pl.order = pl.order[:0]
	return streamID{}, false
}
