// Package store declares the backend contracts of a Streamer node: the
// partitioned event log, gateway subscriptions, gateway outboxes, partition
// leases, the node registry, gateway sessions and checkpoints, together with
// the stream ids and errors they share.
//
// Every contract is written so that each method maps onto a few Redis
// commands (streams with consumer groups, hashes with PEXPIRE, sorted sets,
// SET PX and compare-and-set scripts; see docs/ARCHITECTURE.md). Implementations live
// in sub-packages: memory (embedded mode, one process) and redis. Both pass
// the one conformance suite in storetest, which is the executable form of the
// documentation below.
//
// The package holds no node policy (ownership balancing, matching, janitor
// decisions); it only stores and hands back bytes.
package store

import (
	"cmp"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Backend bundles one implementation of every contract. Constructors set
// every field; a Backend is safe for concurrent use.
type Backend struct {
	// Log is the partitioned event log.
	Log EventLog
	// Router finishes a consumer's batch (outbox appends and
	// acknowledgements) and reads the next one.
	Router Router
	// Multi routes and reads many partitions in one round trip; nil where the backend
	// cannot (the memory backend, whose reads cost no round trip, and Redis
	// Cluster, whose partitions live in different slots).
	Multi MultiRouter
	// MultiFetch reads many gateways' outboxes in one round trip; nil where
	// the backend cannot (as for Multi).
	MultiFetch MultiFetcher
	// Subscriptions holds each gateway's subscriptions and heartbeat deadline.
	Subscriptions Subscriptions
	// Outboxes holds each gateway's delivery batches.
	Outboxes Outboxes
	// Leases records which node owns each partition.
	Leases Leases
	// Nodes is the registry of live nodes.
	Nodes Nodes
	// Sessions records which node holds each gateway's live session.
	Sessions Sessions
	// Checkpoints holds small named values such as Puller resume tokens.
	Checkpoints Checkpoints
	// Locks are named leases for singletons such as the Puller's leader.
	Locks Locks
	// Close releases the backend's resources. Reads blocked at that moment
	// return ErrClosed promptly, and every later call of any method returns
	// an error wrapping ErrClosed. Close is idempotent: calls after the first
	// do nothing and return nil.
	Close func() error
}

var (
	// ErrBadPartition is returned (wrapped) by methods given a partition
	// outside [0, EventLog.Partitions()).
	ErrBadPartition = errors.New("store: partition out of range")
	// ErrClosed is returned (wrapped) by every method called after
	// Backend.Close, and by blocking reads interrupted by it.
	ErrClosed = errors.New("store: backend closed")
	// ErrBadID is returned (wrapped) when an argument that must be a stream id
	// is not of the form "<ms>-<seq>" (an empty cursor is allowed where a
	// method says so).
	ErrBadID = errors.New("store: malformed stream id")
	// ErrInvalid is returned (wrapped) for other invalid arguments: an empty
	// name where one is required, or a TTL shorter than one millisecond.
	ErrInvalid = errors.New("store: invalid argument")
)

// IDs are Redis-stream ids "<ms>-<seq>": a millisecond timestamp and a
// sequence number within that millisecond, both decimal uint64. Backends
// generate them strictly increasing per stream (Redis rules: the current
// time in ms, or the previous ms with seq+1 when the clock has not moved
// forward), so ids compare numerically, never as strings.

// ParseID splits a stream id "<ms>-<seq>" into its two numbers. Anything
// else, including "", a sign, spaces, and the abbreviated "<ms>" form Redis
// accepts in some commands, is an error wrapping ErrBadID.
func ParseID(s string) (ms, seq uint64, err error) {
	a, b, ok := strings.Cut(s, "-")
	if ok {
		ms, err = parseIDPart(a)
		if err == nil {
			seq, err = parseIDPart(b)
		}
	}
	if !ok || err != nil {
		return 0, 0, fmt.Errorf("%w: %q", ErrBadID, s)
	}
	return ms, seq, nil
}

func parseIDPart(s string) (uint64, error) {
	if s == "" || s[0] < '0' || s[0] > '9' {
		return 0, ErrBadID
	}
	return strconv.ParseUint(s, 10, 64)
}

// FormatID returns the id "<ms>-<seq>".
func FormatID(ms, seq uint64) string {
	return strconv.FormatUint(ms, 10) + "-" + strconv.FormatUint(seq, 10)
}

// CompareIDs orders stream ids and returns -1, 0 or +1 as a sorts before,
// equal to or after b. It never panics. The order is total:
//
//   - "" sorts before every other string (it is the "no cursor" value);
//   - valid ids sort numerically by (ms, seq), so "1-2" < "1-10" and
//     "01-1" equals "1-1";
//   - malformed ids sort after every valid id, byte-wise among themselves.
func CompareIDs(a, b string) int {
	if a == "" || b == "" {
		return boolCmp(a != "", b != "")
	}
	ams, aseq, aerr := ParseID(a)
	bms, bseq, berr := ParseID(b)
	switch {
	case aerr != nil && berr != nil:
		return strings.Compare(a, b)
	case aerr != nil || berr != nil:
		return boolCmp(aerr != nil, berr != nil)
	case ams != bms:
		return cmp.Compare(ams, bms)
	default:
		return cmp.Compare(aseq, bseq)
	}
}

// boolCmp orders false before true.
func boolCmp(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	default:
		return -1
	}
}
