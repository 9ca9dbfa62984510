package client

import (
	streamerv1 "github.com/streamerd/streamer/proto/streamer/v1"
)

// dedup drops events already delivered, by event id, remembering the ids of
// the last size distinct events delivered (the one delivered first is
// forgotten first): a ring of ids and a set, with no per-id list node. It is
// owned by one goroutine and not safe for concurrent use.
type dedup struct {
	seen map[string]struct{}
	ring []string // ids in delivery order, grown up to size
	next int      // once the ring is full: the slot of the oldest id
	size int
}

func newDedup(size int) *dedup {
	if size <= 0 { // options reject it
		panic("client: dedup size must be positive")
	}
	return &dedup{seen: make(map[string]struct{}, min(size, 1<<12)), size: size}
}

// remember adds id, forgetting the oldest id beyond size.
func (d *dedup) remember(id string) {
	if _, ok := d.seen[id]; ok {
		return
	}
	d.seen[id] = struct{}{}
	if len(d.ring) < d.size {
		d.ring = append(d.ring, id)
		return
	}
	delete(d.seen, d.ring[d.next])
	d.ring[d.next] = id
	if d.next++; d.next == d.size {
		d.next = 0
	}
}

// filter returns the matches of one delivery whose event ids were not seen
// in an earlier delivery, and how many distinct events it dropped. One event
// may appear in several matches of the same delivery (one per effective
// operation); those are kept together. Every id of the delivery is then
// remembered. Events without an id are always kept.
func (d *dedup) filter(matches []*streamerv1.EventMatch) (kept []*streamerv1.EventMatch, dropped int) {
	kept = matches // fast path: no duplicate, no copy
	var dupIDs map[string]bool
	for i, m := range matches {
		id := m.GetEvent().GetEventId()
		if _, seen := d.seen[id]; id == "" || !seen {
			if dupIDs != nil {
				kept = append(kept, m)
			}
			continue
		}
		if dupIDs == nil {
			dupIDs = map[string]bool{}
			kept = append(make([]*streamerv1.EventMatch, 0, len(matches)-1), matches[:i]...)
		}
		if !dupIDs[id] {
			dupIDs[id] = true
			dropped++
		}
	}
	for _, m := range matches {
		if id := m.GetEvent().GetEventId(); id != "" {
			d.remember(id)
		}
	}
	return kept, dropped
}
