package memory

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/streamerd/streamer/store"
)

// Outboxes is the memory store.Outboxes: one stream per gateway, capped at
// OutboxMaxLen entries. Obtain it from New.
type Outboxes struct {
	life     *lifecycle
	maxLen   int64
	maxBytes int64 // 0: no byte cap

	mu      sync.Mutex
	streams map[string]*stream[[]byte]
	waiting map[string]*waiters // gateways with blocked Reads; removed when none is left
	retired map[string]retirement
}

// retirement is what Retire leaves of a gateway's outbox incarnation.
type retirement struct {
	at     streamID         // the id Retire returned
	fences map[int]streamID // partition → first position of the next incarnation
}

// fenced reports whether an item routed from partition p at position pos
// belongs to a retired incarnation.
func (r retirement) fenced(p int, pos string) bool {
	if pos == "" || r.fences == nil {
		return false
	}
	id, err := parseCursor(pos)
	return err == nil && id.compare(r.fences[p]) < 0
}

var _ store.Outboxes = (*Outboxes)(nil)

// waiters are the Reads blocked on one gateway's outbox.
type waiters struct {
	wake chan struct{} // closed and replaced by every append to the outbox
	n    int           // number of blocked Reads
}

func newOutboxes(life *lifecycle, maxLen, maxBytes int64) *Outboxes {
	return &Outboxes{
		life:     life,
		maxLen:   maxLen,
		maxBytes: maxBytes,
		streams:  map[string]*stream[[]byte]{},
		waiting:  map[string]*waiters{},
		retired:  map[string]retirement{},
	}
}

// Append implements store.Outboxes.
func (o *Outboxes) Append(ctx context.Context, items []store.OutboxItem) ([]string, error) {
	if err := o.life.check(ctx); err != nil || len(items) == 0 {
		return nil, err
	}
	copies := make([][]byte, len(items))
	for i, it := range items {
		if err := needName("gateway", it.Gateway); err != nil {
			return nil, fmt.Errorf("memory: outbox item %d: %w", i, err)
		}
		if it.Position != "" {
			if _, err := parseCursor(it.Position); err != nil {
				return nil, fmt.Errorf("memory: outbox item %d: position: %w", i, err)
			}
		}
		copies[i] = clone(it.Payload)
	}
	ids := make([]string, len(items))
	now := time.Now()
	o.mu.Lock()
	defer o.mu.Unlock()
	for i, it := range items {
		if o.retired[it.Gateway].fenced(it.Partition, it.Position) {
			continue
		}
		s := o.stream(it.Gateway)
		ids[i] = s.add(copies[i], now)
		s.capTo(o.maxLen)
		s.capBytes(o.maxBytes)
		if w := o.waiting[it.Gateway]; w != nil {
			close(w.wake)
			w.wake = make(chan struct{})
		}
	}
	return ids, nil
}

// stream returns gateway's stream, made on first use. The caller holds mu.
func (o *Outboxes) stream(gateway string) *stream[[]byte] {
	s := o.streams[gateway]
	if s == nil {
		s = &stream[[]byte]{sizeOf: func(b []byte) int64 { return int64(len(b)) }}
		o.streams[gateway] = s
	}
	return s
}

// Read implements store.Outboxes.
func (o *Outboxes) Read(ctx context.Context, gateway, after string, count int, block time.Duration) ([]store.Entry, error) {
	cursor, err := o.args(ctx, "read", gateway, after)
	if err != nil {
		return nil, err
	}
	var timeout *time.Timer
	for {
		entries, w, wake := o.readOrWait(gateway, cursor, count, block > 0)
		if w == nil {
			return entries, nil
		}
		if timeout == nil {
			timeout = time.NewTimer(block)
			defer timeout.Stop()
		}
		woken, err := o.life.wait(ctx, wake, timeout)
		o.mu.Lock()
		if w.n--; w.n == 0 {
			delete(o.waiting, gateway)
		}
		o.mu.Unlock()
		if !woken {
			return nil, err
		}
	}
}

// Fetch implements store.Outboxes.
func (o *Outboxes) Fetch(ctx context.Context, gateway, after string, count int, block time.Duration) ([]store.Entry, bool, error) {
	entries, err := o.Read(ctx, gateway, after, count, block)
	if err != nil || len(entries) == 0 {
		return nil, false, err
	}
	lost, err := o.Lost(ctx, gateway, after)
	if err != nil {
		return nil, false, err
	}
	return entries, lost, nil
}

// readOrWait returns up to count entries after cursor. When there are none
// and wait is true it registers the caller as a waiter and returns the
// waiters, whose count the caller must decrement once woken, and the
// channel the next append closes.
func (o *Outboxes) readOrWait(gateway string, cursor streamID, count int, wait bool) ([]store.Entry, *waiters, <-chan struct{}) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if s := o.streams[gateway]; s != nil {
		if found := s.after(cursor, count); len(found) > 0 {
			out := make([]store.Entry, len(found))
			for i, e := range found {
				out[i] = store.Entry{ID: e.key, Payload: e.value} // stored bytes are never modified
			}
			return out, nil, nil
		}
	}
	if !wait {
		return nil, nil, nil
	}
	w := o.waiting[gateway]
	if w == nil {
		w = &waiters{wake: make(chan struct{})}
		o.waiting[gateway] = w
	}
	w.n++
	return nil, w, w.wake
}

// Trim implements store.Outboxes.
func (o *Outboxes) Trim(ctx context.Context, gateway, upTo string) error {
	cursor, err := o.args(ctx, "trim", gateway, upTo)
	if err != nil {
		return err
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if s := o.streams[gateway]; s != nil {
		s.trimThrough(cursor)
	}
	return nil
}

// Last implements store.Outboxes.
func (o *Outboxes) Last(ctx context.Context, gateway string) (string, error) {
	if _, err := o.args(ctx, "read last id of", gateway, ""); err != nil {
		return "", err
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if s := o.streams[gateway]; s != nil {
		return s.last.String(), nil
	}
	return "", nil
}

// Lost implements store.Outboxes.
func (o *Outboxes) Lost(ctx context.Context, gateway, after string) (bool, error) {
	cursor, err := o.args(ctx, "check loss in", gateway, after)
	if err != nil {
		return false, err
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	s := o.streams[gateway]
	return s != nil && s.maxDeleted.compare(cursor) > 0, nil
}

// Len implements store.Outboxes.
func (o *Outboxes) Len(ctx context.Context, gateway string) (int64, error) {
	if _, err := o.args(ctx, "measure", gateway, ""); err != nil {
		return 0, err
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if s := o.streams[gateway]; s != nil {
		return int64(len(s.entries)), nil
	}
	return 0, nil
}

// Retire implements store.Outboxes.
func (o *Outboxes) Retire(ctx context.Context, gateway string, fences map[int]string) (string, error) {
	if _, err := o.args(ctx, "retire", gateway, ""); err != nil {
		return "", err
	}
	parsed := make(map[int]streamID, len(fences))
	for p, pos := range fences {
		id, err := parseCursor(pos)
		if err != nil {
			return "", fmt.Errorf("memory: outbox retire %s: fence of partition %d: %w", gateway, p, err)
		}
		parsed[p] = id
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	s := o.stream(gateway)
	// An id past every issued one, the way Redis would generate it now.
	s.add(nil, time.Now())
	s.drop(len(s.entries))
	r := o.retired[gateway]
	r.at = s.last
	if r.fences == nil {
		r.fences = map[int]streamID{}
	}
	for p, id := range parsed {
		if id.compare(r.fences[p]) > 0 {
			r.fences[p] = id
		}
	}
	o.retired[gateway] = r
	return r.at.String(), nil
}

// Retired implements store.Outboxes.
func (o *Outboxes) Retired(ctx context.Context, gateway string) (string, error) {
	if _, err := o.args(ctx, "read retirement of", gateway, ""); err != nil {
		return "", err
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if r, ok := o.retired[gateway]; ok {
		return r.at.String(), nil
	}
	return "", nil
}

// args runs the checks every method starts with and parses cursor.
func (o *Outboxes) args(ctx context.Context, op, gateway, cursor string) (streamID, error) {
	if err := o.life.check(ctx); err != nil {
		return streamID{}, err
	}
	if err := needName("gateway", gateway); err != nil {
		return streamID{}, fmt.Errorf("memory: outbox %s: %w", op, err)
	}
	id, err := parseCursor(cursor)
	if err != nil {
		return streamID{}, fmt.Errorf("memory: outbox %s %s: %w", op, gateway, err)
	}
	return id, nil
}
