package client

import (
	streamerv1 "github.com/streamerd/streamer/proto/streamer/v1"
)

// Delivery is one item of Conn.Deliveries. Exactly one of Matches
// (non-empty), Resync, Dropped and Snapshot is set.
type Delivery struct {
	// Cursor is the outbox position of this item (opaque). The Conn
	// acknowledges it to the node and resumes after it on reconnect.
	Cursor string
	// Matches are the matched events, in event-log order within each
	// partition, duplicates already removed. One event may appear in
	// several matches, one per effective operation.
	Matches []Match
	// Resync, when set, says that events may have been lost: outbox entries
	// after the gateway's cursor were dropped (the outbox overflowed while
	// the caller was not reading, or was trimmed while the Conn was
	// disconnected). The caller must refetch the current state of
	// everything it serves. Subscriptions stay active and deliveries
	// continue after Cursor.
	Resync *Resync
	// Dropped, when set, names a live subscription the node ended: it
	// refused it when the Conn re-subscribed it after a reconnect (for
	// instance because the node's limits changed), or ended it on its own
	// (ERROR_CODE_COST_LIMIT: its CEL expression ran over the cost limit on
	// several events in a row). It is no longer active; no further events
	// arrive for it.
	Dropped *SubscribeError
	// Snapshot, when set, is a page of a subscription's initial result set
	// (Subscription.Snapshot). Page 0 starts the result set afresh; the
	// last page has End, with the position after which changes follow.
	Snapshot *streamerv1.SnapshotPage
}

// Match is one event with the gateway's subscriptions it matched with the
// same effective operation.
type Match struct {
	// Event is the change event, with partition and position set.
	Event *streamerv1.ChangeEvent
	// Operation is the effective operation for these subscriptions, which
	// may differ from Event.Operation: CREATE = the document entered the
	// subscription's result set, UPDATE = it stayed in it, DELETE = it left
	// it (or was deleted).
	Operation streamerv1.Operation
	// SubscriptionIDs are the subscriptions this match is for; never empty.
	SubscriptionIDs []string
}

// Resync is the node's notice that outbox entries were dropped.
type Resync struct {
	// Reason is for humans (e.g. "outbox overflow").
	Reason string
}

// Stats are a Conn's counters since Dial.
type Stats struct {
	// Deliveries is the number of Delivery values put on the channel
	// (including Resync and Dropped ones).
	Deliveries uint64
	// Events is the number of matches delivered.
	Events uint64
	// Duplicates is the number of events dropped because their event id was
	// among the recently delivered ones.
	Duplicates uint64
	// Resyncs is the number of Resync notices delivered.
	Resyncs uint64
	// Reconnects is the number of sessions registered after the first.
	Reconnects uint64
	// Heartbeats is the number of heartbeats sent.
	Heartbeats uint64
	// Received is the number of messages received from the nodes, of every
	// kind (a node that answers heartbeats keeps it growing).
	Received uint64
}

func toMatches(ms []*streamerv1.EventMatch) []Match {
	out := make([]Match, len(ms))
	for i, m := range ms {
		out[i] = Match{Event: m.GetEvent(), Operation: m.GetOperation(), SubscriptionIDs: m.GetSubscriptionIds()}
	}
	return out
}
