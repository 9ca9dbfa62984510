package gateway

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/streamerd/streamer/client"
	streamerv1 "github.com/streamerd/streamer/proto/streamer/v1"
)

// hub multiplexes the clients' subscriptions onto upstream (streamer)
// subscriptions: every distinct (tenant, collection, canonical criterion)
// has one upstream subscription, reference counted by the client
// subscriptions attached to it, the ones waiting for it to be acknowledged,
// and the holds of ended connections (see Config.SSEResumeWindow). The last reference going
// away unsubscribes it.
//
// Upstream ids are new for every upstream subscription ("u1", "u2", …), so
// a subscription being removed never races with a new one for the same key.
//
// Locking: mu guards the maps, every upstream's members and counters, every
// session's subs, and the ring. Under mu the hub only enqueues frames (never
// blocks); Subscribe and Unsubscribe calls to the upstream are made without
// it, by the goroutine of the connection concerned.
type hub struct {
	up      Upstream
	ctx     context.Context // the gateway's lifetime: bounds upstream calls
	timeout time.Duration   // of each upstream Subscribe/Unsubscribe
	log     *slog.Logger

	mu         sync.Mutex
	byKey      map[string]*upstream
	byID       map[string]*upstream
	sessions   map[*session]struct{}
	clientSubs int // attached client subscriptions
	lastID     uint64
	ring       *ring
	closing    bool // shutting down: leave upstream subscriptions to expire

	events, resyncs, dropped atomic.Uint64
	snapshotPages            atomic.Uint64
	async                    sync.WaitGroup // resnapshots after a resync
	resumes, resumeResyncs   atomic.Uint64  // resume outcomes (SSE Last-Event-ID, WebSocket "after")
}

// upstream is one streamer subscription shared by identical client
// subscriptions.
type upstream struct {
	id   string
	key  string
	spec client.Subscription

	ready chan struct{} // closed once the node answered Subscribe
	// err is the refusal (set before ready is closed) or the drop by the
	// node that ended the subscription.
	err *protoError

	refs      int                   // attached + waiting client subscriptions + SSE holds
	members   map[*session][]string // attached client subscription ids
	heads     map[*session][]byte   // eventHead of each session's ids, made on first use
	recording int                   // members + holds: events are recorded in the ring while > 0
	removed   bool                  // no longer in byKey/byID

	// snaps are the client subscriptions waiting for a snapshot: they get
	// no event until its end, then join members. snapPending: a snapshot
	// was asked for upstream and its first page has not arrived yet (a
	// client subscription that starts waiting meanwhile shares it).
	snaps       []*snapWaiter
	snapPending bool
}

// snapWaiter is a client subscription waiting for, or receiving, its
// snapshot. The pages of one upstream snapshot arrive in order, after the
// events before its position and before those after it: a waiter that
// joins the members at the snapshot's end has every change after the
// documents it was sent, and none before.
type snapWaiter struct {
	s          *session
	id         string
	attached   bool  // hub.subscribe attached it (s.subs)
	subscribed bool  // "subscribed" queued: the first page may arrive before the node's answer
	receiving  bool  // the snapshot's page 0 arrived
	next       int32 // the page expected next
	done       bool  // its snapshot ended before it was attached: attaching makes it a member
}

func newHub(ctx context.Context, up Upstream, timeout time.Duration, ringBytes int, log *slog.Logger) *hub {
	return &hub{
		up: up, ctx: ctx, timeout: timeout, log: log,
		byKey:    map[string]*upstream{},
		byID:     map[string]*upstream{},
		sessions: map[*session]struct{}{},
		ring:     newRing(ringBytes),
	}
}

// addSession makes s reachable for resync notices and shutdown.
func (h *hub) addSession(s *session) {
	h.mu.Lock()
	h.sessions[s] = struct{}{}
	h.mu.Unlock()
}

// subscribe attaches the client subscription req of session s, under the
// multiplexing key, creating and subscribing the upstream subscription if
// it is the first. It replaces an active subscription with the same id.
// Once attached it queues "subscribed"; nothing for this subscription is
// queued before. When resume is set (SSE Last-Event-ID, WebSocket "after")
// "subscribed" is followed by the events after that id, or a resync notice:
// for SSE in s.replay, which the session's writer sends before its queue,
// for a WebSocket in the queue, before any live event.
// maxSubs bounds the session's subscriptions.
func (h *hub) subscribe(ctx context.Context, s *session, req subscribeRequest, key string, resume *string, maxSubs int) *protoError {
	h.mu.Lock()
	if h.closing {
		h.mu.Unlock()
		return errorf(req.id, CodeUnavailable, "the gateway is shutting down")
	}
	if _, replacing := s.subs[req.id]; !replacing && len(s.subs) >= maxSubs {
		h.mu.Unlock()
		return errorf(req.id, CodeTooManySubscriptions, "at most %d subscriptions per connection", maxSubs)
	}
	u := h.byKey[key]
	create := u == nil
	if create {
		h.lastID++
		id := "u" + strconv.FormatUint(h.lastID, 36)
		u = &upstream{id: id, key: key, spec: req.upstream(id, s.tenant), ready: make(chan struct{}), members: map[*session][]string{}, heads: map[*session][]byte{}}
		h.byKey[key] = u
		h.byID[id] = u
	}
	u.refs++
	var w *snapWaiter
	resnap := false
	if req.snapshot {
		w = &snapWaiter{s: s, id: req.id}
		u.snaps = append(u.snaps, w)
		resnap = !create && !u.snapPending
		u.snapPending = true
	}
	h.mu.Unlock()

	if create {
		h.open(u) // answered: u.ready is closed
	} else {
		select {
		case <-u.ready:
		case <-ctx.Done():
			h.mu.Lock()
			h.abandonWaiterLocked(u, w)
			h.mu.Unlock()
			h.unref(u)
			return errorf(req.id, CodeUnavailable, "subscribe interrupted: %v", ctx.Err())
		}
		if resnap {
			h.resnapshot(u)
		}
	}

	h.mu.Lock()
	if u.err != nil {
		h.abandonWaiterLocked(u, w)
		e := *u.err
		e.id = req.id
		h.mu.Unlock()
		h.unref(u)
		return &e
	}
	old := s.subs[req.id]
	if old != nil {
		h.detachLocked(old, s, req.id)
	} else {
		h.clientSubs++
	}
	if w == nil {
		u.members[s] = append(u.members[s], req.id)
		delete(u.heads, s)
	}
	s.subs[req.id] = u
	u.recording++
	var stale *upstream
	if old != nil && old.refs == 0 && !old.removed {
		h.removeLocked(old)
		stale = old
	}
	switch {
	case w != nil:
		w.attached = true
		if !w.subscribed {
			w.subscribed = true
			s.enqueueFrame(s.subscribedFrame(req.id))
		}
		if w.done { // the snapshot was sent already: a member since
			h.dropWaiterLocked(u, w)
		}
	case resume != nil && s.transport == transportSSE:
		// Live events are queued from now on; s.replay goes before them.
		s.replay = append(s.replay, subscribedFrame(req.id))
		s.replay = append(s.replay, h.replayLocked(u, req.id, *resume)...)
	case resume != nil:
		// WebSocket: the replay is queued before any live event (both
		// are queued under mu), beyond the queue's bound, which is for
		// live events: the resume buffer bounds the replay.
		s.enqueueAll(append([]frame{subscribedFrame(req.id)}, h.replayLocked(u, req.id, *resume)...))
	default:
		s.enqueueFrame(s.subscribedFrame(req.id))
	}
	h.mu.Unlock()
	if stale != nil {
		h.close(stale)
	}
	return nil
}

// replayLocked returns the frames of u's events after lastEventID, or a
// resync notice when they are not all known. They are not queued: the
// writer sends them before the queue, so that a long replay (bounded by the
// resume buffer, whose bodies it shares) does not count against the send
// queue.
func (h *hub) replayLocked(u *upstream, clientID, lastEventID string) []frame {
	entries, ok := h.ring.since(u.id, lastEventID)
	if !ok {
		h.resumeResyncs.Add(1)
		return []frame{resyncFrame("last event id " + strconv.Quote(lastEventID) + " is no longer in the gateway's resume buffer")}
	}
	h.resumes.Add(1)
	head := eventHead([]string{clientID})
	out := make([]frame, len(entries))
	for i, e := range entries {
		out[i] = frame{head: head, body: e.body, eventID: e.eventID}
	}
	return out
}

// open subscribes u upstream and publishes the outcome to its waiters. A
// snapshot the node cannot serve (no document source) does not fail the
// subscription: it is subscribed without, and its snapshot waiters get a
// failed end.
func (h *hub) open(u *upstream) {
	ctx, cancel := context.WithTimeout(h.ctx, h.timeout)
	err := h.up.Subscribe(ctx, u.spec)
	var refused *client.SubscribeError
	var snapErr *protoError
	if u.spec.Snapshot != nil && errors.As(err, &refused) && refused.Code == streamerv1.ErrorCode_ERROR_CODE_SNAPSHOT_UNAVAILABLE {
		snapErr = upstreamError(err)
		spec := u.spec
		spec.Snapshot = nil
		err = h.up.Subscribe(ctx, spec)
	}
	cancel()
	h.mu.Lock()
	u.spec.Snapshot = nil // asked for once; resnapshot asks again
	if err == nil && snapErr != nil {
		u.snapPending = false
		for _, w := range slices.Clone(u.snaps) {
			if !w.receiving && !w.done {
				h.endSnapshotLocked(u, w, nil, snapErr)
			}
		}
	}
	if err != nil && u.err == nil {
		u.err = upstreamError(err)
	}
	if u.err != nil {
		h.removeLocked(u)
	}
	close(u.ready)
	h.mu.Unlock()
	if err != nil && !errors.As(err, &refused) && h.ctx.Err() == nil {
		// Interrupted or failed after sending: it may be active on the node.
		h.unsubscribeUpstream(u.id)
	}
}

// unsubscribe detaches the client subscription id of s and queues
// "unsubscribed"; no event for id is queued after it.
func (h *hub) unsubscribe(s *session, id string) *protoError {
	h.mu.Lock()
	u := s.subs[id]
	if u == nil {
		h.mu.Unlock()
		return errorf(id, CodeUnknownSubscription, "no active subscription %q on this connection", id)
	}
	delete(s.subs, id)
	delete(s.noData, id)
	delete(s.heads, id)
	h.detachLocked(u, s, id)
	h.clientSubs--
	remove := u.refs == 0 && !u.removed
	if remove {
		h.removeLocked(u)
	}
	if !s.syntrix { // Syntrix acknowledges with the message's own id (syntrix.go)
		s.enqueue(unsubscribedFrame(id))
	}
	h.mu.Unlock()
	if remove {
		h.close(u)
	}
	return nil
}

// endSession detaches every subscription of the ended session s. With hold
// (a connection that may resume) the references are kept and returned, to
// be given back with unhold; otherwise the upstream subscriptions left
// without references are unsubscribed.
func (h *hub) endSession(s *session, hold bool) []*upstream {
	h.mu.Lock()
	delete(h.sessions, s)
	var held, drop []*upstream
	for id, u := range s.subs {
		delete(s.subs, id)
		h.clientSubs--
		if hold && !h.closing {
			h.removeMemberLocked(u, s, id)
			held = append(held, u)
			continue
		}
		h.detachLocked(u, s, id)
		if u.refs == 0 && !u.removed {
			h.removeLocked(u)
			drop = append(drop, u)
		}
	}
	h.mu.Unlock()
	for _, u := range drop {
		h.close(u)
	}
	return held
}

// unhold gives back the references endSession kept.
func (h *hub) unhold(held []*upstream) {
	var drop []*upstream
	h.mu.Lock()
	for _, u := range held {
		u.refs--
		h.recordDoneLocked(u)
		if u.refs == 0 && !u.removed {
			h.removeLocked(u)
			drop = append(drop, u)
		}
	}
	h.mu.Unlock()
	for _, u := range drop {
		h.close(u)
	}
}

// unref drops a reference that was never attached (an interrupted or failed
// wait).
func (h *hub) unref(u *upstream) {
	h.mu.Lock()
	u.refs--
	remove := u.refs == 0 && !u.removed
	if remove {
		h.removeLocked(u)
	}
	h.mu.Unlock()
	if remove {
		h.close(u)
	}
}

// detachLocked removes the attached client subscription id of s from u and
// its reference.
func (h *hub) detachLocked(u *upstream, s *session, id string) {
	h.removeMemberLocked(u, s, id)
	u.refs--
	h.recordDoneLocked(u)
}

func (h *hub) removeMemberLocked(u *upstream, s *session, id string) {
	u.snaps = slices.DeleteFunc(u.snaps, func(w *snapWaiter) bool { return w.attached && w.s == s && w.id == id })
	ids := u.members[s]
	for i, x := range ids {
		if x == id {
			ids = append(ids[:i:i], ids[i+1:]...) // copy: frames may hold the old slice's JSON, not the slice
			break
		}
	}
	delete(u.heads, s)
	if len(ids) == 0 {
		delete(u.members, s)
	} else {
		u.members[s] = ids
	}
}

// sseDoneLocked counts one SSE member or hold of u gone; when none is
// left, u's events stop being recorded, so its history is forgotten.
func (h *hub) recordDoneLocked(u *upstream) {
	u.recording--
	if u.recording == 0 {
		h.ring.forget(u.id)
	}
}

func (h *hub) removeLocked(u *upstream) {
	if u.removed {
		return
	}
	u.removed = true
	if h.byKey[u.key] == u {
		delete(h.byKey, u.key)
	}
	delete(h.byID, u.id)
	h.ring.forget(u.id)
}

// close unsubscribes the removed upstream subscription u, unless it never
// became active or the gateway is shutting down (then it expires with the
// gateway's TTL on the node).
func (h *hub) close(u *upstream) {
	<-u.ready // a removed upstream with references gone has been answered
	h.mu.Lock()
	skip := h.closing || u.err != nil
	h.mu.Unlock()
	if !skip {
		h.unsubscribeUpstream(u.id)
	}
}

func (h *hub) unsubscribeUpstream(id string) {
	ctx, cancel := context.WithTimeout(h.ctx, h.timeout)
	defer cancel()
	if err := h.up.Unsubscribe(ctx, id); err != nil {
		var se *client.SubscribeError
		if !errors.As(err, &se) { // an unknown id is fine: already gone
			h.log.Warn("unsubscribing upstream subscription failed; it expires with the gateway's TTL", "upstream_id", id, "err", err)
		}
	}
}

// deliver fans one Delivery out to the sessions concerned. It never
// blocks: sessions whose queue is full are ended as slow consumers.
func (h *hub) deliver(d client.Delivery) {
	switch {
	case d.Resync != nil:
		h.resync(d.Resync.Reason)
	case d.Dropped != nil:
		h.drop(d.Dropped)
	case d.Snapshot != nil:
		h.snapshotPage(d.Snapshot)
	}
	for _, m := range d.Matches {
		h.dispatch(m)
	}
	h.events.Add(uint64(len(d.Matches)))
}

func (h *hub) dispatch(m client.Match) {
	body := renderBody(m)
	eventID := m.Event.GetEventId()
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(m.SubscriptionIDs) == 1 { // the common case: no merging
		u := h.byID[m.SubscriptionIDs[0]]
		if u == nil {
			return
		}
		if u.recording > 0 {
			h.ring.add(u.id, eventID, body)
		}
		var deltas syntrixDeltas
		for s, ids := range u.members {
			if s.syntrix {
				s.enqueueSyntrixEvent(ids, m, &deltas)
				continue
			}
			head := u.heads[s]
			if head == nil {
				head = eventHead(ids)
				u.heads[s] = head
			}
			s.enqueue(frame{head: head, body: body, eventID: eventID})
		}
		return
	}
	// One message per session, listing its subscriptions of every upstream
	// subscription the event matched with this operation.
	per := map[*session][]string{}
	var order []*session
	for _, id := range m.SubscriptionIDs {
		u := h.byID[id]
		if u == nil {
			continue
		}
		if u.recording > 0 {
			h.ring.add(u.id, eventID, body)
		}
		for s, ids := range u.members {
			if _, seen := per[s]; !seen {
				order = append(order, s)
			}
			per[s] = append(per[s], ids...)
		}
	}
	var deltas syntrixDeltas
	for _, s := range order {
		if s.syntrix {
			s.enqueueSyntrixEvent(slices.Compact(slices.Sorted(slices.Values(per[s]))), m, &deltas)
			continue
		}
		s.enqueue(frame{head: eventHead(per[s]), body: body, eventID: eventID})
	}
}

// resync tells every session with subscriptions that events may have been
// lost, and forgets the resume history (it may have gaps now).
func (h *hub) resync(reason string) {
	h.resyncs.Add(1)
	h.log.Warn("upstream resync: events may have been lost; clients are told to refetch", "reason", reason)
	if reason == "" {
		reason = "events may have been lost upstream"
	}
	f := resyncFrame(reason)
	h.mu.Lock()
	h.ring.reset()
	for s := range h.sessions {
		if len(s.subs) > 0 {
			s.resync(f)
		}
	}
	// Snapshots under way may have lost pages: they are asked for again.
	var again []*upstream
	for _, u := range h.byID {
		waiting := false
		for _, w := range u.snaps {
			if !w.done {
				w.receiving, w.next = false, 0
				waiting = true
			}
		}
		if waiting {
			u.snapPending = true
			again = append(again, u)
		}
	}
	h.mu.Unlock()
	for _, u := range again {
		h.async.Go(func() { h.resnapshot(u) })
	}
}

// resnapshot asks the node for a new snapshot of the active upstream
// subscription u (Subscribe again with the same id and a snapshot: the
// node replaces it at a new position of its partition, with no gap for
// the members). When that fails, the waiters get a failed "snapshot_end"
// and become members without a snapshot.
func (h *hub) resnapshot(u *upstream) {
	spec := u.spec
	spec.Snapshot = &client.SnapshotRequest{}
	ctx, cancel := context.WithTimeout(h.ctx, h.timeout)
	err := h.up.Subscribe(ctx, spec)
	cancel()
	if err == nil {
		return
	}
	pe := upstreamError(err)
	h.log.Warn("asking for a snapshot failed; its clients get the changes without it", "upstream_id", u.id, "err", err)
	h.mu.Lock()
	defer h.mu.Unlock()
	u.snapPending = false
	for _, w := range slices.Clone(u.snaps) {
		if w.receiving || w.done {
			continue
		}
		h.endSnapshotLocked(u, w, nil, pe)
	}
}

// snapshotPage hands one page of an upstream snapshot to the client
// subscriptions receiving it: page 0 starts it for every waiter; a page
// out of sequence for a waiter (a redelivered one) is skipped; the last
// one makes them members.
func (h *hub) snapshotPage(p *streamerv1.SnapshotPage) {
	h.mu.Lock()
	defer h.mu.Unlock()
	u := h.byID[p.GetSubscriptionId()]
	if u == nil || (len(u.snaps) == 0 && p.GetPage() != 0) {
		return
	}
	if p.GetPage() == 0 {
		u.snapPending = false
		expected := false // started for a waiter, or a page the receivers had (redelivered)
		for _, w := range u.snaps {
			if w.receiving {
				expected = true
			} else if !w.done {
				w.receiving, w.next = true, 0
				expected = true
			}
		}
		if !expected && len(u.members) > 0 {
			// Nobody asked: the node served the subscription's snapshot
			// again (the partition's new owner applied the subscription
			// anew), at a new position. Events between the two may be
			// skipped as part of the new one, which these clients do not
			// take: they are told to refetch.
			h.resyncs.Add(1)
			f := resyncFrame("the streamer node served the subscription's snapshot again (its partition moved): refetch, or subscribe again with a snapshot")
			for s := range u.members {
				s.resync(f)
			}
		}
	}
	h.snapshotPages.Add(1)
	var body []byte // the /v1 rendering, made on first use
	for _, w := range slices.Clone(u.snaps) {
		if !w.receiving || w.next != p.GetPage() {
			continue
		}
		if !w.subscribed {
			w.subscribed = true
			w.s.enqueueFrame(w.s.subscribedFrame(w.id))
		}
		if w.s.syntrix {
			w.s.syntrixSnapshotPageLocked(w.id, u.spec.Collection, p)
		} else {
			if body == nil {
				body = renderSnapshot(u.spec.Collection, p)
			}
			w.s.enqueueSnapshot(frame{head: snapshotHead(w.id), body: body})
		}
		w.next++
		if end := p.GetEnd(); end != nil {
			h.endSnapshotLocked(u, w, end, nil)
		}
	}
}

// endSnapshotLocked ends w's snapshot, as end says, or as failed with fail
// when the snapshot could not be asked for, and makes w a member of u: the
// events after the snapshot are its own from now on, even when
// hub.subscribe has not attached it yet (it then only attaches).
func (h *hub) endSnapshotLocked(u *upstream, w *snapWaiter, end *streamerv1.SnapshotEnd, fail *protoError) {
	if !w.subscribed {
		w.subscribed = true
		w.s.enqueueFrame(w.s.subscribedFrame(w.id))
	}
	switch {
	case w.s.syntrix:
		if fail == nil && end.GetError() != nil {
			fail = &protoError{code: nodeCode(end.GetError().GetCode()), message: end.GetError().GetMessage()}
		}
		w.s.syntrixSnapshotEndLocked(w.id, fail)
	case fail != nil:
		w.s.enqueue(control(snapshotEndMessage{Type: "snapshot_end", ID: w.id, Code: fail.code, Message: "snapshot failed: " + fail.message}))
	default:
		w.s.enqueue(snapshotEndFrame(w.id, end))
	}
	w.receiving = false
	u.members[w.s] = append(u.members[w.s], w.id)
	delete(u.heads, w.s)
	if !w.attached {
		w.done = true
		return
	}
	h.dropWaiterLocked(u, w)
}

// dropWaiterLocked forgets w (nil: nothing).
func (h *hub) dropWaiterLocked(u *upstream, w *snapWaiter) {
	if w != nil {
		u.snaps = slices.DeleteFunc(u.snaps, func(x *snapWaiter) bool { return x == w })
	}
}

// abandonWaiterLocked forgets w, whose subscribe call failed, with the
// membership its snapshot's end gave it.
func (h *hub) abandonWaiterLocked(u *upstream, w *snapWaiter) {
	if w == nil {
		return
	}
	h.dropWaiterLocked(u, w)
	if w.done {
		h.removeMemberLocked(u, w.s, w.id)
	}
}

// drop ends an upstream subscription the node refused after a reconnect:
// its client subscriptions get an error and are gone.
func (h *hub) drop(e *client.SubscribeError) {
	h.dropped.Add(1)
	h.log.Warn("the streamer node dropped an upstream subscription", "upstream_id", e.SubscriptionID, "code", e.Code, "message", e.Message)
	h.mu.Lock()
	defer h.mu.Unlock()
	u := h.byID[e.SubscriptionID]
	if u == nil {
		return
	}
	u.err = &protoError{code: nodeCode(e.Code), message: "subscription dropped by the streamer node: " + e.Message}
	h.removeLocked(u)
	for s, ids := range u.members {
		for _, id := range ids {
			delete(s.subs, id)
			h.clientSubs--
			u.refs--
			u.recording--
			pe := *u.err
			pe.id = id
			f := s.errorFrame(&pe)
			f.final = s.transport == transportSSE // the stream's one subscription is gone
			s.enqueue(f)
		}
	}
	for _, w := range u.snaps {
		if !w.attached {
			continue // its subscribe call sees u.err
		}
		delete(w.s.subs, w.id)
		h.clientSubs--
		u.refs--
		u.recording--
		pe := *u.err
		pe.id = w.id
		f := w.s.errorFrame(&pe)
		f.final = w.s.transport == transportSSE
		w.s.enqueue(f)
	}
	u.snaps = nil
	clear(u.members)
	clear(u.heads)
}

// endAll ends every session (shutdown or upstream failure) and stops
// unsubscribing upstream.
func (h *hub) endAll(reason endReason, detail string) {
	h.mu.Lock()
	h.closing = true
	ss := make([]*session, 0, len(h.sessions))
	for s := range h.sessions {
		ss = append(ss, s)
	}
	h.mu.Unlock()
	for _, s := range ss {
		s.end(reason, detail)
	}
}

// hubStats is a snapshot of the hub's gauges.
type hubStats struct {
	sessions, clientSubs, upstreamSubs, resumeEntries int
}

func (h *hub) stats() hubStats {
	h.mu.Lock()
	defer h.mu.Unlock()
	return hubStats{len(h.sessions), h.clientSubs, len(h.byID), h.ring.len()}
}

// upstreamError maps an error of Upstream.Subscribe to a client error.
func upstreamError(err error) *protoError {
	var se *client.SubscribeError
	switch {
	case errors.As(err, &se):
		return &protoError{code: nodeCode(se.Code), message: se.Message}
	case errors.Is(err, context.DeadlineExceeded):
		return &protoError{code: CodeUnavailable, message: "the streamer node did not answer in time"}
	case errors.Is(err, client.ErrClosed), errors.Is(err, context.Canceled):
		return &protoError{code: CodeUnavailable, message: "the gateway is shutting down"}
	}
	return &protoError{code: CodeUnavailable, message: "the streamer node is unavailable: " + err.Error()}
}

// setNoData records whether the Syntrix subscription id of s leaves
// documents out of its events (includeData false).
func (h *hub) setNoData(s *session, id string, noData bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !noData {
		delete(s.noData, id)
		return
	}
	if s.noData == nil {
		s.noData = map[string]bool{}
	}
	s.noData[id] = true
}
