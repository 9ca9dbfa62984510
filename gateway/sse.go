package gateway

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/streamerd/streamer/match"
)

// sseParams are the query parameters /v1/sse accepts.
var sseParams = []string{"collection", "doc", "filters", "cel", "id", "access_token", "last_event_id", "snapshot"}

// defaultSSEID is the subscription id of an SSE stream without id=.
const defaultSSEID = "sse"

// sseRetry is the reconnection delay suggested to EventSource, in ms.
const sseRetry = 2000

// serveSSE serves /v1/sse: one subscription from the query string, events
// as "data:" lines with "id:" = event id. The handler's goroutine is the
// writer; the request's context ends the stream when the client goes away.
// After a stream ends (client gone or cut as slow) its upstream
// subscription is held for SSEResumeWindow by a goroutine that Run waits
// for (see the package documentation).
func (g *Gateway) serveSSE(w http.ResponseWriter, r *http.Request) {
	id, ok := g.authenticate(w, r)
	if !ok {
		return
	}
	req, resume, perr := parseSSEQuery(r)
	if perr != nil {
		writeHTTPError(w, http.StatusBadRequest, perr)
		return
	}
	s := g.start(w, r, transportSSE, id, false)
	if s == nil {
		return
	}
	defer g.finish()
	if g.streamSSE(w, r, s, req, resume) {
		g.endResumable(s)
	}
}

// streamSSE subscribes req for the registered session s and writes the
// stream until it ends; false: the subscription was refused, the request
// answered with the reason and the session ended.
func (g *Gateway) streamSSE(w http.ResponseWriter, r *http.Request, s *session, req subscribeRequest, resume *string) bool {
	if perr := g.subscribe(r.Context(), s, req, resume); perr != nil {
		s.end(endClientGone, perr.message)
		g.hub.endSession(s, false)
		g.closed(s)
		writeHTTPError(w, httpStatus(perr), perr)
		return false
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	w.WriteHeader(http.StatusOK)
	g.writeSSE(w, r, s)
	return true
}

// endResumable ends the connection s. When the client may come back to
// resume (it went away, or was cut as slow), its upstream subscriptions are
// held for SSEResumeWindow, recording events in the resume buffer.
func (g *Gateway) endResumable(s *session) {
	reason, _ := s.ended()
	hold := g.cfg.SSEResumeWindow > 0 && (reason == endClientGone || reason == endSlow)
	held := g.hub.endSession(s, hold)
	g.closed(s)
	if len(held) > 0 {
		// The handler must return now (an SSE client reconnects when it
		// sees the end): the hold is waited out by a goroutine that Run
		// waits for like a handler. The handler's own count keeps the
		// WaitGroup above zero while Add is called.
		g.conns.Add(1)
		go func() {
			defer g.conns.Done()
			t := g.cfg.Clock.NewTimer(g.cfg.SSEResumeWindow)
			defer t.Stop()
			select {
			case <-t.C():
			case <-g.ctx.Done():
			}
			g.hub.unhold(held)
		}()
	}
}

// writeSSE writes queued frames until the session ends or the client goes
// away.
func (g *Gateway) writeSSE(w http.ResponseWriter, r *http.Request, s *session) {
	rc := http.NewResponseController(w)
	// write writes b (buffered by net/http) within WriteTimeout; flush
	// sends what was written.
	write := func(b []byte) error {
		_ = rc.SetWriteDeadline(time.Now().Add(g.cfg.WriteTimeout)) // unsupported: no deadline
		_, err := w.Write(b)
		return err
	}
	flush := func() error {
		_ = rc.SetWriteDeadline(time.Now().Add(g.cfg.WriteTimeout))
		return rc.Flush()
	}
	expired, stop := s.expiry(g.cfg.Clock)
	defer stop()
	interval, comment, opening := g.cfg.KeepAlive, ": keep-alive\n\n", "retry: "+strconv.Itoa(sseRetry)+"\n\n"
	if s.syntrix { // Syntrix's stream: no retry or id fields
		interval, comment, opening = g.cfg.SyntrixHeartbeat, ": heartbeat\n\n", ": connected\n\n"
	}
	keepAlive := g.cfg.Clock.NewTicker(interval)
	defer keepAlive.Stop()

	var (
		batch []frame
		buf   []byte
	)
	// writeBatch writes frames and flushes them at once.
	writeBatch := func(frames []frame) error {
		for _, f := range frames {
			if s.isDone() {
				break
			}
			buf = buf[:0]
			if sseSafeID(f.eventID) {
				buf = append(append(append(buf, "id: "...), f.eventID...), '\n')
			}
			buf = append(f.appendTo(append(buf, "data: "...)), "\n\n"...)
			if err := write(buf); err != nil {
				return err
			}
			g.sent[1].Add(1)
			if f.final {
				s.end(endDropped, "subscription dropped")
			}
		}
		return flush()
	}
	err := write([]byte(opening))
	if err == nil {
		err = flush()
	}
	if err == nil {
		err = writeBatch(s.replay) // a resume's frames go before live ones
		s.replay = nil
	}
	if err != nil {
		s.end(endClientGone, "write failed: "+err.Error())
	}
	for !s.isDone() {
		var err error
		select {
		case <-s.ready:
			batch = s.take(batch)
			err = writeBatch(batch)
		case <-keepAlive.C():
			if err = write([]byte(comment)); err == nil {
				err = flush()
			}
		case <-r.Context().Done():
			s.end(endClientGone, "client went away")
		case <-expired:
			s.end(endExpired, "access token expired")
		case <-s.done:
		}
		if err != nil {
			s.end(endClientGone, "write failed: "+err.Error())
		}
	}
}

// parseSSEQuery reads the subscription of an SSE request: collection and
// at most one of doc, filters (JSON list) and cel; id (default "sse"); and
// the resume point, from the Last-Event-ID header or last_event_id.
func parseSSEQuery(r *http.Request) (subscribeRequest, *string, *protoError) {
	q := r.URL.Query()
	for k, v := range q {
		if !slices.Contains(sseParams, k) {
			return subscribeRequest{}, nil, errorf("", CodeBadMessage, "unknown query parameter %q (want collection and at most one of doc, filters, cel; optional id, last_event_id, snapshot)", k)
		}
		if len(v) != 1 {
			return subscribeRequest{}, nil, errorf("", CodeBadMessage, "query parameter %q given %d times", k, len(v))
		}
	}
	req := subscribeRequest{id: defaultSSEID, collection: q.Get("collection")}
	if q.Has("id") {
		req.id = q.Get("id")
	}
	doc, cel := optional(q, "doc"), optional(q, "cel")
	var filters *[]match.Filter
	if q.Has("filters") {
		var fl []match.Filter
		if err := json.Unmarshal([]byte(q.Get("filters")), &fl); err != nil {
			return subscribeRequest{}, nil, errorf(req.id, CodeInvalidFilter, "filters: want a JSON list of {\"field\",\"op\",\"value\"} objects: %v", err)
		}
		filters = &fl
	}
	if err := req.setCriterion(doc, filters, cel); err != nil {
		return subscribeRequest{}, nil, err
	}
	if err := req.check(); err != nil {
		return subscribeRequest{}, nil, err
	}
	resume := optional(q, "last_event_id")
	if v := r.Header.Get("Last-Event-ID"); v != "" {
		resume = &v
	}
	if resume != nil && *resume == "" {
		resume = nil
	}
	switch v := q.Get("snapshot"); {
	case !q.Has("snapshot"), v == "0", v == "false":
	case v == "1", v == "true":
		// A reconnecting EventSource (Last-Event-ID) resumes from the
		// resume buffer instead: it has had the snapshot.
		req.snapshot = resume == nil
	default:
		return subscribeRequest{}, nil, errorf(req.id, CodeBadMessage, "snapshot=%q: want 1 or 0", v)
	}
	return req, resume, nil
}

func optional(q url.Values, k string) *string {
	if !q.Has(k) {
		return nil
	}
	v := q.Get(k)
	return &v
}
