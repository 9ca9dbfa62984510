package memory

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/streamerd/streamer/store"
)

// EventLog is the memory store.EventLog: each partition is a stream read by
// one consumer group, with its last-delivered id and pending list, plus a
// dead-letter stream. Obtain it from New.
type EventLog struct {
	life     *lifecycle
	outboxes *Outboxes // RouteRead's
	maxLen   int64
	parts    []*partition
}

var (
	_ store.EventLog = (*EventLog)(nil)
	_ store.Router   = (*EventLog)(nil)
)

// deadValue is the value of a dead-letter stream entry.
type deadValue struct {
	original store.Entry
	reason   string
}

// partition is one stream of the log and the group's state on it.
type partition struct {
	mu        sync.Mutex
	log       stream[[]byte]
	dead      stream[deadValue]
	delivered streamID // the group's last-delivered id
	pending   pendingList
	wake      chan struct{} // closed and replaced by every append
}

func newEventLog(life *lifecycle, partitions int, maxLen int64) *EventLog {
	l := &EventLog{life: life, maxLen: maxLen, parts: make([]*partition, partitions)}
	for i := range l.parts {
		l.parts[i] = &partition{wake: make(chan struct{})}
	}
	return l
}

// Partitions implements store.EventLog.
func (l *EventLog) Partitions() int { return len(l.parts) }

// partition returns partition p after the checks every method starts with.
func (l *EventLog) partition(ctx context.Context, op string, p int) (*partition, error) {
	if err := l.life.check(ctx); err != nil {
		return nil, err
	}
	if p < 0 || p >= len(l.parts) {
		return nil, fmt.Errorf("memory: %s partition %d of %d: %w", op, p, len(l.parts), store.ErrBadPartition)
	}
	return l.parts[p], nil
}

// Append implements store.EventLog.
func (l *EventLog) Append(ctx context.Context, p int, payloads ...[]byte) ([]string, error) {
	part, err := l.partition(ctx, "append to", p)
	if err != nil || len(payloads) == 0 {
		return nil, err
	}
	copies := make([][]byte, len(payloads))
	for i, pl := range payloads {
		copies[i] = clone(pl)
	}
	ids := make([]string, len(payloads))
	now := time.Now()
	part.mu.Lock()
	defer part.mu.Unlock()
	for i, pl := range copies {
		ids[i] = part.log.add(pl, now)
		part.log.capTo(l.maxLen)
	}
	close(part.wake)
	part.wake = make(chan struct{})
	return ids, nil
}

// AppendMany implements store.EventLog.
func (l *EventLog) AppendMany(ctx context.Context, appends []store.PartitionAppend) {
	for i := range appends {
		a := &appends[i]
		a.IDs, a.Err = l.Append(ctx, a.P, a.Payloads...)
	}
}

// RouteRead implements store.EventLog.
func (l *EventLog) RouteRead(ctx context.Context, p int, consumer string, items []store.OutboxItem, ack []string, count int, block time.Duration) ([]store.Entry, bool, error) {
	if _, err := l.partition(ctx, "read", p); err != nil {
		return nil, false, err
	}
	if err := needName("consumer", consumer); err != nil {
		return nil, false, err
	}
	for _, id := range ack { // refused before anything is appended
		if _, _, err := store.ParseID(id); err != nil {
			return nil, false, fmt.Errorf("memory: ack on partition %d: %w", p, err)
		}
	}
	if _, err := l.outboxes.Append(ctx, items); err != nil {
		return nil, false, err
	}
	// Appended: the acknowledgement must follow whatever happens to ctx now.
	// Redis runs both in one script; a batch appended but reported unrouted
	// would be appended again by its consumer.
	if err := l.Ack(context.WithoutCancel(ctx), p, ack...); err != nil {
		return nil, false, err
	}
	entries, err := l.Read(ctx, p, consumer, count, block)
	return entries, true, err
}

// Read implements store.EventLog.
func (l *EventLog) Read(ctx context.Context, p int, consumer string, count int, block time.Duration) ([]store.Entry, error) {
	part, err := l.partition(ctx, "read", p)
	if err != nil {
		return nil, err
	}
	if err := needName("consumer", consumer); err != nil {
		return nil, err
	}
	var timeout *time.Timer
	for {
		entries, wake := part.deliver(consumer, count)
		if len(entries) > 0 || block <= 0 {
			return entries, nil
		}
		if timeout == nil {
			timeout = time.NewTimer(block)
			defer timeout.Stop()
		}
		if woken, err := l.life.wait(ctx, wake, timeout); !woken {
			return nil, err
		}
	}
}

// deliver hands up to count new entries to consumer, making them pending.
// With none it returns nil and the channel the next append closes.
func (part *partition) deliver(consumer string, count int) ([]store.Entry, <-chan struct{}) {
	part.mu.Lock()
	defer part.mu.Unlock()
	fresh := part.log.after(part.delivered, count)
	if len(fresh) == 0 {
		return nil, part.wake
	}
	now := time.Now()
	out := make([]store.Entry, len(fresh))
	for i, e := range fresh {
		out[i] = store.Entry{ID: e.key, Payload: e.value} // stored bytes are never modified
		part.pending.add(e.id, consumer, now)
	}
	part.delivered = fresh[len(fresh)-1].id
	return out, nil
}

// Ack implements store.EventLog.
func (l *EventLog) Ack(ctx context.Context, p int, ids ...string) error {
	part, err := l.partition(ctx, "ack on", p)
	if err != nil {
		return err
	}
	parsed := make([]streamID, len(ids))
	for i, id := range ids {
		ms, seq, err := store.ParseID(id)
		if err != nil {
			return fmt.Errorf("memory: ack on partition %d: %w", p, err)
		}
		parsed[i] = streamID{ms, seq}
	}
	part.mu.Lock()
	defer part.mu.Unlock()
	for _, id := range parsed {
		part.pending.remove(id)
	}
	part.dropAcked()
	return nil
}

// dropAcked deletes the entries the group can never read again: those delivered and
// no longer pending. Read only returns entries after the last-delivered id and
// ClaimPending only pending ones, so in memory, where nothing else reads the log,
// keeping them until MaxLen would only hold garbage (and make every GC scan it).
func (part *partition) dropAcked() {
	if first, ok := part.pending.first(); ok {
		part.log.dropBefore(first)
		return
	}
	part.log.trimThrough(part.delivered)
}

// ClaimPending implements store.EventLog.
func (l *EventLog) ClaimPending(ctx context.Context, p int, consumer string, minIdle time.Duration, count int) ([]store.Entry, error) {
	part, err := l.partition(ctx, "claim on", p)
	if err != nil {
		return nil, err
	}
	if err := needName("consumer", consumer); err != nil {
		return nil, err
	}
	now := time.Now()
	part.mu.Lock()
	defer part.mu.Unlock()
	var out []store.Entry
	var trimmed []streamID
	for id, pe := range part.pending.all() {
		if count > 0 && len(out) >= count {
			break
		}
		if now.Sub(pe.delivered) < minIdle {
			continue
		}
		e, ok := part.log.lookup(id)
		if !ok {
			trimmed = append(trimmed, id)
			continue
		}
		pe.consumer, pe.delivered = consumer, now
		pe.deliveries++
		out = append(out, store.Entry{ID: e.key, Payload: e.value})
	}
	for _, id := range trimmed {
		part.pending.remove(id)
	}
	return out, nil
}

// Pending implements store.EventLog.
func (l *EventLog) Pending(ctx context.Context, p int) (int64, error) {
	part, err := l.partition(ctx, "count pending of", p)
	if err != nil {
		return 0, err
	}
	part.mu.Lock()
	defer part.mu.Unlock()
	return int64(part.pending.len()), nil
}

// DeadLetter implements store.EventLog.
func (l *EventLog) DeadLetter(ctx context.Context, p int, e store.Entry, reason string) error {
	part, err := l.partition(ctx, "dead-letter on", p)
	if err != nil {
		return err
	}
	e.Payload = clone(e.Payload)
	part.mu.Lock()
	defer part.mu.Unlock()
	part.dead.add(deadValue{original: e, reason: reason}, time.Now())
	part.dead.capTo(l.maxLen)
	return nil
}

// DeadLetters implements store.EventLog.
func (l *EventLog) DeadLetters(ctx context.Context, p int, count int) ([]store.DeadLetter, error) {
	part, err := l.partition(ctx, "list dead letters of", p)
	if err != nil {
		return nil, err
	}
	part.mu.Lock()
	defer part.mu.Unlock()
	dead := part.dead.after(streamID{}, count)
	out := make([]store.DeadLetter, len(dead))
	for i, d := range dead {
		orig := store.Entry{ID: d.value.original.ID, Payload: clone(d.value.original.Payload)}
		out[i] = store.DeadLetter{ID: d.key, Original: orig, Reason: d.value.reason}
	}
	return out, nil
}
