package store

import (
	"context"
	"time"
)

// Group is the one consumer group that reads every partition of the event
// log (Redis: XGROUP CREATE stm:{p:N}:events streamer 0 MKSTREAM, so entries
// appended before the first read are delivered too).
const Group = "streamer"

// Defaults that backend constructors apply to zero or negative settings.
const (
	// DefaultPartitions is the number of event log partitions.
	DefaultPartitions = 16
	// DefaultMaxLen is the retention of each event log partition, in entries.
	DefaultMaxLen = 1_000_000
	// DefaultOutboxMaxLen is the cap of each gateway outbox, in entries.
	DefaultOutboxMaxLen = 10_000
	// DefaultOutboxMaxBytes is the cap of each gateway outbox, in bytes of
	// payload (the newest entry is kept even when larger).
	DefaultOutboxMaxBytes = 64 << 20
)

// Entry is one stream entry.
type Entry struct {
	// ID is the entry's stream id "<ms>-<seq>", assigned by the backend when
	// the entry was appended.
	ID string
	// Payload is the bytes appended, opaque to the store. Nil and empty
	// payloads are stored alike and read back as empty (length 0). The
	// caller may keep it but must not modify it: a backend may share it
	// between reads (the memory backend returns the stored bytes).
	Payload []byte
}

// PartitionAppend is one partition's share of an AppendMany call: the
// payloads to append to partition P, and, once AppendMany returns, their ids
// or the reason they were not appended.
type PartitionAppend struct {
	P        int
	Payloads [][]byte

	IDs []string // ids in payload order, as Append returns them
	Err error    // why this partition's payloads were not appended
}

// DeadLetter is an event log entry that could not be decoded, set aside with
// the reason (Redis: an entry of the stream stm:{p:N}:dead).
type DeadLetter struct {
	// ID is the dead letter's own id in the partition's dead-letter stream
	// (not the original entry's id).
	ID string
	// Original is the entry as it was read from the partition.
	Original Entry
	// Reason says why the entry was set aside; it may be empty.
	Reason string
}

// EventLog is the partitioned, append-only log of change events and control
// entries (Redis: one stream stm:{p:N}:events per partition N, consumed by
// the single consumer group Group).
//
// Partitions are numbered 0 to Partitions()-1; every method taking p returns
// an error wrapping ErrBadPartition when p is outside that range. Ids are
// strictly increasing within a partition.
//
// Retention: each partition keeps at least its newest MaxLen entries (a
// constructor setting, DefaultMaxLen when zero) and deletes older ones
// approximately, like XADD MAXLEN ~: whether delivered, acknowledged or not,
// and possibly keeping up to one Redis stream node (stream-node-max-entries,
// 100 by default) more than MaxLen. The dead-letter stream of a partition is
// trimmed the same way.
//
// Every method returns ctx.Err() (possibly wrapped) when ctx is done before
// it completes, and an error wrapping ErrClosed after Backend.Close.
type EventLog interface {
	// Partitions returns the fixed number of partitions, at least 1.
	Partitions() int

	// Append appends payloads, in order, to partition p and returns their
	// ids in the same order. With no payloads it does nothing and returns
	// (nil, nil). Concurrent appends to one partition are serialised: every
	// id is greater than every id returned before.
	Append(ctx context.Context, p int, payloads ...[]byte) ([]string, error)

	// AppendMany appends each element's payloads to its partition as Append
	// would, all elements in one round trip where the backend allows (Redis:
	// one pipeline), and sets each element's IDs or Err. Elements are
	// independent: one failing (a bad partition, a Redis error) does not
	// stop the others. Elements naming the same partition are appended in
	// slice order.
	AppendMany(ctx context.Context, appends []PartitionAppend)

	// Read returns, oldest first, up to count entries of partition p that
	// were never delivered to the group before (XREADGROUP ... >); count <= 0
	// means no limit. Returned entries are pending for consumer until Ack.
	// When there are none it waits up to block for new ones (block <= 0:
	// do not wait; Redis rounds it up to whole milliseconds) and returns
	// (nil, nil) if none came. An append wakes a waiting Read promptly.
	// consumer must not be empty (ErrInvalid).
	Read(ctx context.Context, p int, consumer string, count int, block time.Duration) ([]Entry, error)

	// Ack removes ids from the group's pending entries of partition p
	// (XACK). Ids that are not pending are ignored; a malformed id is an
	// error wrapping ErrBadID and acks nothing. No ids: no-op.
	Ack(ctx context.Context, p int, ids ...string) error

	// ClaimPending transfers to consumer the group's pending entries of
	// partition p that have been idle (not delivered or claimed) for at
	// least minIdle (minIdle <= 0: all of them), oldest first, up to count
	// (count <= 0: no limit), and returns them (XAUTOCLAIM from 0-0, looping
	// over its cursor). Claiming resets their idle time. Pending entries
	// that retention has already deleted are removed from the pending list
	// and not returned. A new partition owner calls it before reading new
	// entries. consumer must not be empty (ErrInvalid).
	ClaimPending(ctx context.Context, p int, consumer string, minIdle time.Duration, count int) ([]Entry, error)

	// Pending returns how many entries of partition p were delivered to the
	// group and not acknowledged yet (XPENDING summary), including entries
	// retention has deleted but no claim has removed yet.
	Pending(ctx context.Context, p int) (int64, error)

	// DeadLetter records e, an entry of partition p that cannot be decoded,
	// with reason in the partition's dead-letter stream (stm:{p:N}:dead). It
	// does not ack e: the caller does.
	DeadLetter(ctx context.Context, p int, e Entry, reason string) error

	// DeadLetters lists the dead letters of partition p still retained,
	// oldest first, up to count (count <= 0: no limit).
	DeadLetters(ctx context.Context, p int, count int) ([]DeadLetter, error)
}

// LagReporter is an optional capability of an EventLog: how many entries of
// partition p the consumer group Group has not been delivered yet, or -1
// when the backend cannot tell (Redis: the lag field of XINFO GROUPS, which
// is unknown after entries were deleted from the middle of the stream). The
// node reports it as a metric when its backend's event log implements it.
type LagReporter interface {
	Lag(ctx context.Context, p int) (int64, error)
}
