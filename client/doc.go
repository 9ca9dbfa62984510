// Package client is the Go library Gateways use to talk to streamer nodes.
//
// A [Conn] is one gateway session that survives reconnects: [Dial] opens it,
// [Conn.Subscribe] and [Conn.Unsubscribe] manage the gateway's subscriptions,
// and [Conn.Deliveries] yields the matching change events in outbox order.
// Behind that API the Conn registers with a node, re-registers after any
// stream failure with exponential backoff and full jitter, resumes from the
// newest cursor it handed to the caller (so nothing still in the node's
// outbox is lost), re-subscribes every live subscription, sends heartbeats
// that keep the subscriptions alive and acknowledge deliveries, and drops
// events it has already delivered (by event id, remembering the last ones).
//
// Stream semantics, in short (details on [Conn.Deliveries]):
//   - Events arrive in outbox order, which is event-log order within a
//     partition (one tenant/collection), without duplicates among the
//     [WithDedupSize] most recent event ids.
//   - A [Delivery] with Resync set means events may have been lost (the
//     node's outbox overflowed or was trimmed while the gateway was away):
//     the caller must refetch the state of everything it serves. The
//     subscriptions themselves stay active.
//   - The channel is closed only by [Conn.Close] or a permanent failure such
//     as [ErrUnauthenticated]; [Conn.Err] then says why.
//   - The channel is bounded: a caller that stops reading stops the Conn from
//     reading the stream, which pushes back to the node's outbox (gRPC flow
//     control). An outbox that overflows meanwhile ends in a Resync.
//
// [Publisher] appends change events through the Ingest service, and
// [ParseEventJSON] / [EventToJSON] convert events from and to the JSON form
// used by the CLI and the reference gateway. [InProcess] is an in-memory
// transport for programs that embed a node and a client in one process.
//
// The package does not match events, store anything, or serve end users; it
// is the gateway side of the wire protocol in proto/streamer/v1.
package client
