package store

import (
	"context"
	"time"
)

// Router finishes a partition consumer's batch and reads the next one: it
// spans two contracts, appending to gateway outboxes (Outboxes) and
// acknowledging and reading the event log (EventLog), in one round trip
// where the backend allows. It is the consumer's whole conversation with the
// backend in the steady state.
//
// Partitions and errors are as for EventLog: a partition outside
// [0, EventLog.Partitions()) is an error wrapping ErrBadPartition; ctx.Err()
// (possibly wrapped) when ctx is done before the call completes; an error
// wrapping ErrClosed after Backend.Close.
type Router interface {
	// RouteRead finishes a consumer's batch and reads the next one, in one
	// round trip where the backend allows (Redis without Cluster: one script
	// and XREADGROUP, pipelined). It appends items to their outboxes, as
	// Outboxes.Append would; then, only if all were appended, acknowledges
	// ack, as EventLog.Ack would; then reads, as EventLog.Read would. All of that takes effect
	// before the read waits. With no items and no ack it is Read.
	//
	// routed reports whether items were appended and ack acknowledged (true
	// when there was nothing to do), even if the read then failed. When the
	// append or the ack fails, RouteRead returns that error, routed false
	// and no entries: ack is then not acknowledged, items may have been
	// partly appended (delivery is at least once), and the read may have
	// happened in Redis, leaving its entries pending for consumer, where
	// EventLog.ClaimPending finds them after the entries of ack.
	RouteRead(ctx context.Context, p int, consumer string, items []OutboxItem, ack []string, count int, block time.Duration) (entries []Entry, routed bool, err error)
}

// PartitionRoute is one partition's share of a MultiRouter.RouteReadMany
// call: the items and acknowledgements that finish the partition's last
// batch, and, once RouteReadMany returns, the entries read next.
type PartitionRoute struct {
	P     int
	Items []OutboxItem
	Ack   []string

	Entries []Entry // read from partition P, oldest first
}

// MultiRouter finishes the batches of several partitions and reads all of
// them in one round trip. Backends offer it (Backend.Multi) where a single
// call may span partitions: Redis without Cluster. A node then reads every
// partition it owns with one XREADGROUP instead of one per partition.
type MultiRouter interface {
	// RouteReadMany is RouteRead over distinct partitions at once. It
	// appends every route's items, then, only if all were appended,
	// acknowledges every route's Ack; then it reads up to count new entries
	// (count <= 0: no limit) of each partition into its route's Entries,
	// waiting up to block (<= 0: not at all) until one of them has some. A
	// partition named twice, or out of range, is an error and nothing
	// happens. routed and the errors are as for RouteRead, for all the
	// routes together.
	RouteReadMany(ctx context.Context, consumer string, routes []PartitionRoute, count int, block time.Duration) (routed bool, err error)
}
