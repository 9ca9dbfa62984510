package client

import (
	"github.com/hashicorp/golang-lru/v2/simplelru"

	streamerv1 "github.com/streamerd/streamer/proto/streamer/v1"
)

// dedup drops events already delivered, by event id, remembering the most
// recent size ids (least recently seen are forgotten first). It is owned by
// one goroutine and not safe for concurrent use.
type dedup struct {
	seen *simplelru.LRU[string, struct{}]
}

func newDedup(size int) *dedup {
	l, err := simplelru.NewLRU[string, struct{}](size, nil)
	if err != nil { // only for size <= 0, which options reject
		panic(err)
	}
	return &dedup{seen: l}
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
		if id == "" || !d.seen.Contains(id) {
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
			d.seen.Add(id, struct{}{})
		}
	}
	return kept, dropped
}
