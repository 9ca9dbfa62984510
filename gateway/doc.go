// Package gateway is Streamer's reference Gateway: it serves end users'
// WebSocket and Server-Sent Events connections, authenticates them with JWTs
// that decide their tenant, and feeds them from one upstream session with the
// streamer nodes (a [client.Conn]) on which identical subscriptions of many
// users share one streamer subscription.
//
// # Endpoints ([Gateway.Handler])
//
//   - GET /v1/ws — WebSocket, JSON text messages (below), many subscriptions
//     per connection.
//   - GET /v1/sse — Server-Sent Events, one subscription taken from the
//     query string: collection=C and at most one of doc=ID, filters=JSON or
//     cel=EXPR; optionally id=NAME (the subscription id reported in "subs",
//     default "sse"), last_event_id=ID (same as the Last-Event-ID header)
//     and snapshot=1 (see Snapshots; ignored when resuming).
//     Every message is a "data:" line holding one JSON message of the
//     WebSocket protocol; event messages carry "id:" = their event_id.
//   - GET /realtime/ws, /realtime/sse?collection=C and
//     /realtime/v1/databases/{db}/sse — Syntrix's realtime protocol, for
//     Syntrix apps and their SDK (syntrix.go, docs/SYNTRIX.md): the same
//     subscriptions, limits and snapshots, Syntrix's messages.
//   - GET / — a small demo page (embedded) that subscribes over /v1/ws.
//
// The token is sent as "Authorization: Bearer <JWT>" or, for browsers'
// WebSocket and EventSource which cannot set headers, as the access_token
// query parameter. A missing, malformed, expired or wrongly signed token is
// answered 401 before any upgrade. The tenant is the token's "tenant" claim;
// a client never chooses it: a "tenant" query parameter or message field is
// refused ("tenant_not_allowed").
//
// # WebSocket protocol
//
// Client → gateway:
//
//	{"type":"subscribe","id":"s1","collection":"orders"}                           every document
//	{"type":"subscribe","id":"s1","collection":"orders","doc":"o-17"}              one document
//	{"type":"subscribe","id":"s1","collection":"orders","filters":[{"field":"status","op":"==","value":"paid"}]}
//	{"type":"subscribe","id":"s1","collection":"orders","cel":"doc.total > 100.0"}
//	{"type":"subscribe","id":"s1","collection":"orders","after":"<event_id>"}      resume after that event (see Resume)
//	{"type":"subscribe","id":"s1","collection":"orders","snapshot":true}           the current documents first (see Snapshots)
//	{"type":"unsubscribe","id":"s1"}
//
// Subscribing again with an active id replaces that subscription. Unknown
// fields are refused, so are two criteria at once.
//
// Gateway → client:
//
//	{"type":"subscribed","id":"s1"}
//	{"type":"unsubscribed","id":"s1"}
//	{"type":"error","id":"s1","code":"invalid_filter","message":"…"}      id is "" for errors not tied to a subscription
//	{"type":"event","subs":["s1"],"op":"create","collection":"orders","id":"o-17","doc":{…},"event_id":"…","ts":1700000000000,"tenant":"acme"}
//	{"type":"resync","reason":"…"}
//	{"type":"snapshot","id":"s1","collection":"orders","page":0,"docs":[{"id":"o-17","doc":{…},"event_id":"…","ts":1700000000000}]}
//	{"type":"snapshot_end","id":"s1","documents":1}                       "more":true,"next_after":"…" when cut at the node's limit; "code","message" when it failed
//
// "subscribed" is sent once the streamer node has acknowledged the
// subscription: every event appended after it is delivered. "subs" lists the
// client's subscription ids the event matched with the effective operation
// "op" (create = entered the subscription's result set, update = stayed in
// it, delete = left it or was deleted); "doc" is null for hard deletes.
// "resync" means events may have been lost (the node's outbox for this
// gateway overflowed, or a resume point is no longer in the gateway's
// resume buffer): refetch the state of everything subscribed; subscriptions
// stay active.
//
// # Snapshots
//
// With "snapshot": true (SSE: snapshot=1), "subscribed" is followed by the
// documents that match as they are now, in "snapshot" messages (pages, in
// document id order), then "snapshot_end", then every change after them:
// the snapshot is read by the node at the subscription's position in the
// event log, so no change is missed and none is applied twice. Apply
// "create" and "update" as upserts and "delete" as removals. "more" says the
// result was cut at the node's limit (--snapshot-max-documents). A
// "snapshot_end" with "code" (snapshot_unavailable: the nodes keep no
// documents, as in a pool on Redis) means there is no snapshot; the changes
// follow all the same. A client subscribing with a snapshot to what other
// clients already share gets its own snapshot (the gateway asks the node
// for a new one); the others notice nothing. After a "resync", subscribe
// again with "snapshot": true (the same id replaces the subscription) to
// get the current documents; snapshots under way are asked for again by
// the gateway itself.
//
// Error codes: bad_message (not JSON, unknown type or field, binary frame),
// invalid_argument, invalid_filter, invalid_cel, too_large,
// tenant_not_allowed, too_many_subscriptions, unknown_subscription,
// snapshot_unavailable,
// cost_limit (the node ended a subscription whose CEL expression ran over
// its cost limit on several events in a row), unavailable (the node did not
// answer or is unreachable), internal; a subscription the node ended (its
// cost, or a refusal after a reconnect) gets an error with the node's code
// and subscription id, is no longer active, and ends an SSE stream. Requests refused before upgrading
// (HTTP 400, 401 with code unauthenticated, 503) carry the same error
// message as a JSON body.
//
// # Delivery and slow clients
//
// Every connection has a send queue bounded in bytes
// ([Config.SendQueueBytes], 4 MiB) and messages ([Config.SendQueue]). Its
// writer sends everything queued since its last write in one write. The
// gateway never waits for a client: when a queue is full the connection
// is closed — WebSocket close code 1008 with reason "slow consumer: …", an
// SSE stream simply ends — and counted in
// streamer_gateway_slow_disconnects_total. A write that does not finish
// within [Config.WriteTimeout] ends the connection too, and so does the
// expiry of the token it was opened with (close 1008 "access token
// expired").
//
// # Resume
//
// Events sent to clients are kept in a per-gateway resume buffer bounded by
// [Config.ResumeBufferBytes], keyed by (upstream subscription, event id).
// When an SSE stream ends, or a WebSocket connection is lost (the client
// went away without a close frame, or was cut as a slow consumer), its
// upstream subscriptions are kept for [Config.SSEResumeWindow] and keep
// filling the buffer. An EventSource that reconnects within the window with
// Last-Event-ID, or a WebSocket client that subscribes again with
// "after":"<event_id of the last event it got>", gets every event after
// that one replayed, then live events. When the id is no longer in the
// buffer (evicted, before an upstream resync, or never sent on that
// subscription) the replay is a "resync" message instead — never a silent
// gap. A WebSocket closed with a close frame is not kept: its client is not
// coming back.
//
// The package does not match events, store anything or talk gRPC itself;
// the nodes match, the [client] package carries the session.
package gateway
