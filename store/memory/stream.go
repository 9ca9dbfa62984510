package memory

import (
	"cmp"
	"sort"
	"time"

	"github.com/streamerd/streamer/store"
)

// streamID is a parsed stream id; the zero value is "0-0", before every id
// a stream generates.
type streamID struct{ ms, seq uint64 }

// parseCursor parses a cursor; "" is the zero id.
func parseCursor(s string) (streamID, error) {
	if s == "" {
		return streamID{}, nil
	}
	ms, seq, err := store.ParseID(s)
	return streamID{ms, seq}, err
}

func (a streamID) compare(b streamID) int {
	if c := cmp.Compare(a.ms, b.ms); c != 0 {
		return c
	}
	return cmp.Compare(a.seq, b.seq)
}

func (a streamID) String() string { return store.FormatID(a.ms, a.seq) }

// streamEntry is one entry of a stream; key caches id.String().
type streamEntry[V any] struct {
	id    streamID
	key   string
	value V
}

// stream is an in-memory Redis stream: entries in increasing id order, the
// last generated id and the greatest deleted id. Not safe for concurrent
// use; its owner locks.
type stream[V any] struct {
	entries    []streamEntry[V]
	last       streamID // last generated id; zero when none
	maxDeleted streamID // greatest deleted id; zero when none

	// sizeOf, when set, weighs each value; bytes is the weight of the
	// entries held (see capBytes).
	sizeOf func(V) int64
	bytes  int64
}

// add appends v with a new id generated as Redis does: the current time in
// milliseconds, or the last id's millisecond with the next sequence number
// when the clock has not moved past it.
func (s *stream[V]) add(v V, now time.Time) string {
	id := streamID{ms: uint64(max(now.UnixMilli(), 0))}
	if id.compare(s.last) <= 0 {
		id = s.last
		if id.seq++; id.seq == 0 {
			id.ms++
		}
	}
	s.last = id
	if s.sizeOf != nil {
		s.bytes += s.sizeOf(v)
	}
	key := id.String()
	s.entries = append(s.entries, streamEntry[V]{id: id, key: key, value: v})
	return key
}

// capTo deletes the oldest entries beyond n.
func (s *stream[V]) capTo(n int64) {
	if extra := int64(len(s.entries)) - n; extra > 0 {
		s.drop(int(extra))
	}
}

// capBytes deletes the oldest entries but the newest while the entries
// weigh more than max (sizeOf); max <= 0: no cap.
func (s *stream[V]) capBytes(max int64) {
	if max <= 0 || s.sizeOf == nil {
		return
	}
	k, over := 0, s.bytes-max
	for over > 0 && k < len(s.entries)-1 {
		over -= s.sizeOf(s.entries[k].value)
		k++
	}
	s.drop(k)
}

// trimThrough deletes the entries with id <= upTo.
func (s *stream[V]) trimThrough(upTo streamID) {
	s.drop(s.firstAfter(upTo))
}

// dropBefore deletes the entries with id < x.
func (s *stream[V]) dropBefore(x streamID) {
	s.drop(sort.Search(len(s.entries), func(i int) bool { return s.entries[i].id.compare(x) >= 0 }))
}

// drop deletes the k oldest entries, recording the greatest deleted id.
func (s *stream[V]) drop(k int) {
	if k <= 0 {
		return
	}
	s.maxDeleted = s.entries[k-1].id // entries only ever leave from the front
	if s.sizeOf != nil {
		for _, e := range s.entries[:k] {
			s.bytes -= s.sizeOf(e.value)
		}
	}
	clear(s.entries[:k]) // release values for the garbage collector
	s.entries = s.entries[k:]
}

// firstAfter returns the index of the first entry with id > x.
func (s *stream[V]) firstAfter(x streamID) int {
	return sort.Search(len(s.entries), func(i int) bool { return s.entries[i].id.compare(x) > 0 })
}

// after returns up to count (count <= 0: all) entries with id > x.
func (s *stream[V]) after(x streamID, count int) []streamEntry[V] {
	rest := s.entries[s.firstAfter(x):]
	if count > 0 && len(rest) > count {
		rest = rest[:count]
	}
	return rest
}

// lookup returns the entry with id x, if still present.
func (s *stream[V]) lookup(x streamID) (streamEntry[V], bool) {
	i := sort.Search(len(s.entries), func(i int) bool { return s.entries[i].id.compare(x) >= 0 })
	if i < len(s.entries) && s.entries[i].id == x {
		return s.entries[i], true
	}
	return streamEntry[V]{}, false
}
