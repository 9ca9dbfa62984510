package gateway

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/streamerd/streamer/internal/clock"
)

// Transports, as used in metric labels.
const (
	transportWS  = "ws"
	transportSSE = "sse"
)

// endReason says why a session ended.
type endReason int

const (
	endClientGone endReason = iota // the client went away or the transport failed
	endClosed                      // the client closed the WebSocket (a close frame): it will not resume
	endSlow                        // the send queue was full
	endShutdown                    // the gateway is shutting down
	endExpired                     // the access token expired
	endUpstream                    // the upstream session failed for good
	endDropped                     // SSE: the stream's subscription was dropped by the node
	endResync                      // Syntrix protocol: events may have been lost, which it cannot say otherwise
)

// session is one end-user connection (WebSocket or SSE) as the hub sees it:
// an identity and a bounded send queue. The transport's writer goroutine
// drains the queue; everyone else only enqueues, never waits.
type session struct {
	transport string
	tenant    string
	subject   string    // for logs
	remote    string    // client address, for logs
	expires   time.Time // zero: the identity does not expire

	// The send queue: at most max frames, allocated as used (an idle
	// connection costs no queue memory). ready has capacity 1 and holds a
	// token while frames may be waiting.
	qmu      sync.Mutex
	queue    []frame
	qbytes   int // bytes of the queued frames
	max      int
	maxBytes int
	ready    chan struct{}

	done     chan struct{} // closed by end
	endOnce  sync.Once
	reason   endReason // set before done is closed
	detail   string    // human reason, for close frames and logs
	overflow *atomic.Uint64

	// subs maps the client's subscription ids to their upstream; guarded
	// by the hub's mutex.
	subs map[string]*upstream
	// replay holds the frames of an SSE resume, to be written before the
	// queue. Set by hub.subscribe and read by the writer, which is the
	// same goroutine for SSE.
	replay []frame

	// syntrix: the connection speaks Syntrix's protocol (/realtime/*,
	// syntrix.go), whose frames are envelopes. Set before the session is
	// used. noData holds its subscriptions without includeData, snaps the
	// snapshots being gathered into one message, heads the event heads of
	// its subscriptions; all guarded by the hub's mutex.
	syntrix bool
	noData  map[string]bool
	snaps   map[string]*syntrixGather
	heads   map[string][]byte // each subscription's event head (syntrixEventHead)
	// rearm tells the writer that expires changed (a Syntrix auth message
	// authenticated the connection).
	rearm chan struct{}
}

func newSession(transport string, id Identity, queue, queueBytes int, slow *atomic.Uint64) *session {
	return &session{
		transport: transport,
		tenant:    id.Tenant,
		subject:   id.Subject,
		expires:   id.Expires,
		max:       queue,
		maxBytes:  queueBytes,
		ready:     make(chan struct{}, 1),
		done:      make(chan struct{}),
		overflow:  slow,
		subs:      map[string]*upstream{},
		rearm:     make(chan struct{}, 1),
	}
}

// enqueue queues f without blocking. A full queue ends the session as a
// slow consumer; frames for an ended session are dropped. It reports
// whether f was queued.
func (s *session) enqueue(f frame) bool { return s.enqueueWithin(f, s.maxBytes) }

// enqueueFrame queues f unless it is empty (a notice the session's
// protocol does not have).
func (s *session) enqueueFrame(f frame) {
	if f.head != nil {
		s.enqueue(f)
	}
}

// snapshotQueueFactor is how much larger than its byte bound a send queue
// may grow with snapshot pages: a snapshot arrives as a burst of pages of
// up to 256 KiB, which a client that reads at all drains, while a client
// that does not read is still cut.
const snapshotQueueFactor = 8

// enqueueSnapshot queues a snapshot frame, within snapshotQueueFactor
// times the queue's byte bound.
func (s *session) enqueueSnapshot(f frame) bool {
	return s.enqueueWithin(f, snapshotQueueFactor*s.maxBytes)
}

// enqueueWithin is enqueue with maxBytes as the byte bound.
func (s *session) enqueueWithin(f frame, maxBytes int) bool {
	select {
	case <-s.done:
		return false
	default:
	}
	size := f.size()
	s.qmu.Lock()
	n, bytes := len(s.queue), s.qbytes
	full := n > 0 && (n >= s.max || bytes+size > maxBytes) // one message always fits
	if !full {
		s.queue = append(s.queue, f)
		s.qbytes += size
	}
	s.qmu.Unlock()
	if full {
		if s.end(endSlow, fmt.Sprintf("slow consumer: %d messages (%d bytes) queued unread, the limits are %d messages and %d bytes",
			n, bytes, s.max, maxBytes)) {
			s.overflow.Add(1)
		}
		return false
	}
	select {
	case s.ready <- struct{}{}:
	default: // a token is already there
	}
	return true
}

// enqueueAll queues frames without the queue's bound (a resume's replay,
// which the resume buffer bounds) and without blocking.
func (s *session) enqueueAll(frames []frame) {
	select {
	case <-s.done:
		return
	default:
	}
	s.qmu.Lock()
	s.queue = append(s.queue, frames...)
	for _, f := range frames {
		s.qbytes += f.size()
	}
	s.qmu.Unlock()
	select {
	case s.ready <- struct{}{}:
	default:
	}
}

// take moves the queued frames into buf (emptied first) and returns it.
// The writer calls it after receiving from ready.
func (s *session) take(buf []frame) []frame {
	clear(buf) // drop references to written frames
	if cap(buf) > 64 {
		buf = nil // do not keep a burst's memory on an idle connection
	}
	s.qmu.Lock()
	buf, s.queue = s.queue, buf[:0]
	s.qbytes = 0
	s.qmu.Unlock()
	return buf
}

// end ends the session with reason (the first call wins) and reports
// whether this call ended it.
func (s *session) end(reason endReason, detail string) bool {
	ended := false
	s.endOnce.Do(func() {
		s.reason, s.detail = reason, detail
		close(s.done)
		ended = true
	})
	return ended
}

// isDone reports whether the session has ended.
func (s *session) isDone() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// ended returns why the session ended; valid once done is closed.
func (s *session) ended() (endReason, string) {
	<-s.done
	return s.reason, s.detail
}

// expiry returns a channel that fires when the identity expires (nil: never)
// and a function to stop its timer.
func (s *session) expiry(c clock.Clock) (<-chan time.Time, func()) {
	s.qmu.Lock()
	expires := s.expires
	s.qmu.Unlock()
	if expires.IsZero() {
		return nil, func() {}
	}
	t := c.NewTimer(clock.Until(c, expires))
	return t.C(), func() { t.Stop() }
}

// setExpires changes when the session's identity expires, and tells the
// writer (which re-arms its timer).
func (s *session) setExpires(t time.Time) {
	s.qmu.Lock()
	s.expires = t
	s.qmu.Unlock()
	select {
	case s.rearm <- struct{}{}:
	default:
	}
}
