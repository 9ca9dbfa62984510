package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/coder/websocket"

	"github.com/streamerd/streamer/client"
	"github.com/streamerd/streamer/match"
	streamerv1 "github.com/streamerd/streamer/proto/streamer/v1"
)

// This file serves Syntrix's realtime protocol (docs/SYNTRIX.md), so that
// Syntrix apps and their TypeScript SDK work against this gateway
// unchanged: /realtime/ws (envelopes {"id","type","payload"}, the token in
// the first message), /realtime/sse?collection=C and
// /realtime/v1/databases/{db}/sse. It is an adapter over the same hub,
// upstream subscriptions and limits as /v1; only the messages differ.

// Syntrix's message types.
const (
	syntrixAuth           = "auth"
	syntrixAuthAck        = "auth_ack"
	syntrixSubscribe      = "subscribe"
	syntrixSubscribeAck   = "subscribe_ack"
	syntrixUnsubscribe    = "unsubscribe"
	syntrixUnsubscribeAck = "unsubscribe_ack"
	syntrixEvent          = "event"
	syntrixSnapshot       = "snapshot"
	syntrixError          = "error"
	syntrixHeartbeat      = "heartbeat"
)

// Syntrix's error codes and texts, which its SDK reacts to (it refreshes
// its token only on a message containing "unauthor"; Syntrix's own texts
// never do).
const (
	syntrixCodeUnauthorized = "unauthorized"
	syntrixCodeInvalidAuth  = "invalid_auth"
	syntrixCodeSnapFailed   = "snapshot_failed"
	syntrixCodeSnapLimit    = "snapshot_limit"
)

// DefaultSyntrixHeartbeat is how often Syntrix connections get a heartbeat
// when Config.SyntrixHeartbeat is 0 (Syntrix: every 30 s on WebSockets,
// 15 s on SSE; its SDK gives up after 90 s of silence).
const DefaultSyntrixHeartbeat = 15 * time.Second

// syntrixSnapshotBytes bounds the one snapshot message Syntrix's protocol
// has per subscription; beyond it the client gets the error snapshot_limit
// (which the newer SDK tolerates) and the changes.
const syntrixSnapshotBytes = 16 << 20

// envelope is a Syntrix message, both directions. The SDK may send the
// payload as a JSON string holding the object.
type envelope struct {
	ID      string          `json:"id,omitempty"`
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

// payloadObject returns the envelope's payload as a JSON object, unquoting
// a payload sent as a string.
func (e envelope) payloadObject() json.RawMessage {
	p := bytes.TrimSpace(e.Payload)
	if len(p) > 0 && p[0] == '"' {
		var s string
		if json.Unmarshal(p, &s) == nil {
			return json.RawMessage(s)
		}
	}
	return p
}

// syntrixFrame is the frame of a message without shared parts.
func syntrixFrame(id, typ string, payload any) frame {
	m := map[string]any{"type": typ}
	if id != "" {
		m["id"] = id
	}
	if payload != nil {
		m["payload"] = payload
	}
	return control(m)
}

func syntrixErrorFrame(id, code, message string) frame {
	p := map[string]string{"message": message}
	if code != "" {
		p["code"] = code
	}
	return syntrixFrame(id, syntrixError, p)
}

// Frames of the hub's notices in the session's protocol.

func (s *session) subscribedFrame(id string) frame {
	switch {
	case s.syntrix && s.transport == transportSSE:
		return frame{} // Syntrix's SSE streams have no acknowledgements
	case s.syntrix:
		return syntrixFrame(id, syntrixSubscribeAck, nil)
	}
	return subscribedFrame(id)
}

func (s *session) errorFrame(e *protoError) frame {
	if s.syntrix {
		return syntrixErrorFrame(e.id, e.code, e.message)
	}
	return errorFrame(e)
}

// resync tells the session that events may have been lost: a /v1
// connection gets a resync message; Syntrix's protocol has none, so the
// connection ends, and the client reconnects and subscribes again (with a
// snapshot, if it asked for one) instead of going on past a gap.
func (s *session) resync(f frame) {
	if s.syntrix {
		s.end(endResync, "events may have been lost: reconnect and subscribe again")
		return
	}
	s.enqueue(f)
}

// syntrixGather gathers the documents of one subscription's snapshot:
// Syntrix's protocol sends them in one message.
type syntrixGather struct {
	docs  []json.RawMessage
	bytes int
	over  bool
}

// syntrixSnapshotPageLocked adds a page of a snapshot to the Syntrix session s
// (the hub's mutex held).
func (s *session) syntrixSnapshotPageLocked(id, collection string, p *streamerv1.SnapshotPage) {
	if s.snaps == nil {
		s.snaps = map[string]*syntrixGather{}
	}
	acc := s.snaps[id]
	if acc == nil || p.GetPage() == 0 {
		acc = &syntrixGather{}
		s.snaps[id] = acc
	}
	for _, d := range p.GetDocuments() {
		if acc.over {
			break
		}
		doc := flattenDocument(d.GetDocument(), d.GetDocumentId(), collection)
		acc.bytes += len(doc)
		if acc.bytes > syntrixSnapshotBytes {
			acc.over, acc.docs = true, nil
			break
		}
		acc.docs = append(acc.docs, doc)
	}
}

// syntrixSnapshotEndLocked queues the snapshot gathered for id, or the
// error that replaces it.
func (s *session) syntrixSnapshotEndLocked(id string, fail *protoError) {
	acc := s.snaps[id]
	delete(s.snaps, id)
	switch {
	case fail != nil:
		s.enqueue(syntrixErrorFrame(id, syntrixCodeSnapFailed, "snapshot failed: "+fail.message))
	case acc != nil && acc.over:
		s.enqueue(syntrixErrorFrame(id, syntrixCodeSnapLimit, "snapshot larger than "+strconv.Itoa(syntrixSnapshotBytes>>20)+" MiB: not sent; the changes follow"))
	default:
		docs := []json.RawMessage{}
		if acc != nil {
			docs = acc.docs
		}
		s.enqueueSnapshot(syntrixFrame(id, syntrixSnapshot, map[string]any{"subId": id, "documents": docs}))
	}
}

// syntrixDeltas are an event's two renderings for Syntrix sessions, made
// once per event on first use: with the document (includeData) and
// without.
type syntrixDeltas struct {
	full, bare []byte
}

func (d *syntrixDeltas) body(m client.Match, withData bool) []byte {
	b := &d.bare
	if withData {
		b = &d.full
	}
	if *b == nil {
		*b = renderDelta(m, withData)
	}
	return *b
}

// syntrixEventHead is `{"type":"event","payload":{"subId":<id>,"delta":`.
func syntrixEventHead(id string) []byte {
	q, _ := json.Marshal(id) // strings always marshal
	b := append([]byte(`{"type":"event","payload":{"subId":`), q...)
	return append(b, `,"delta":`...)
}

// renderDelta returns `{…delta…}}}` for m: the rest of an event message
// after syntrixEventHead.
func renderDelta(m client.Match, withData bool) []byte {
	ev := m.Event
	delta := map[string]any{
		"type":      client.OperationName(m.Operation),
		"id":        ev.GetCollection() + "/" + ev.GetDocumentId(),
		"timestamp": ev.GetTimestampMs(),
	}
	if withData {
		if doc := ev.GetDocument(); len(doc) > 0 {
			delta["document"] = flattenDocument(doc, ev.GetDocumentId(), ev.GetCollection())
		} else if before := ev.GetBefore(); len(before) > 0 {
			delta["document"] = flattenDocument(before, ev.GetDocumentId(), ev.GetCollection())
		}
	}
	b, err := json.Marshal(delta)
	if err != nil { // documents are valid JSON objects (flattenDocument)
		panic("gateway: encoding a Syntrix delta: " + err.Error())
	}
	return append(b, "}}"...)
}

// flattenDocument returns the document as Syntrix's SDK expects it: the
// user's fields, plus id (the document id) and collection, without _id.
// A document that is not a JSON object becomes {"id","collection"}.
func flattenDocument(doc []byte, id, collection string) json.RawMessage {
	fields := map[string]json.RawMessage{}
	if err := json.Unmarshal(doc, &fields); err != nil || fields == nil {
		fields = map[string]json.RawMessage{}
	}
	delete(fields, "_id")
	idJSON, _ := json.Marshal(id)
	collJSON, _ := json.Marshal(collection)
	fields["id"], fields["collection"] = idJSON, collJSON
	b, err := json.Marshal(fields)
	if err != nil {
		return json.RawMessage(`{}`)
	}
	return b
}

// enqueueSyntrixEvent queues one event frame per subscription id of the
// Syntrix session s (the hub's mutex held). Each id's head is made once.
func (s *session) enqueueSyntrixEvent(ids []string, m client.Match, d *syntrixDeltas) {
	for _, id := range ids {
		head := s.heads[id]
		if head == nil {
			if s.heads == nil {
				s.heads = map[string][]byte{}
			}
			head = syntrixEventHead(id)
			s.heads[id] = head
		}
		s.enqueue(frame{head: head, body: d.body(m, !s.noData[id])})
	}
}

// syntrixSubscribePayload is a subscribe message's payload.
type syntrixSubscribePayload struct {
	Query struct {
		Collection string `json:"collection"`
		Filters    []struct {
			Field string `json:"field"`
			Op    string `json:"op"`
			Value any    `json:"value"`
		} `json:"filters"`
	} `json:"query"`
	IncludeData  *bool `json:"includeData"`
	SendSnapshot bool  `json:"sendSnapshot"`
}

// serveSyntrixWS serves /realtime/ws. The upgrade needs no token: the
// client sends it in its first message (auth); a valid Authorization
// header authenticates the connection at once, an invalid one is refused,
// and a token in the query string is refused (as Syntrix does).
func (g *Gateway) serveSyntrixWS(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Has("access_token") || q.Has("token") {
		g.authFailures.Add(1)
		writeHTTPError(w, http.StatusUnauthorized, &protoError{code: syntrixCodeUnauthorized, message: "Query token not allowed"})
		return
	}
	var id Identity
	authed := false
	if r.Header.Get("Authorization") != "" {
		var ok bool
		if id, ok = g.authenticate(w, r); !ok {
			return
		}
		authed = true
	}
	s := g.start(w, r, transportWS, id, true)
	if s == nil {
		return
	}
	defer g.finish()
	// Syntrix allows no Origin (non-browser clients), the gateway's own
	// host, and its host name on another port.
	patterns := append([]string{}, g.cfg.OriginPatterns...)
	if host, _, err := net.SplitHostPort(r.Host); err == nil {
		patterns = append(patterns, host, host+":*")
	} else if r.Host != "" {
		patterns = append(patterns, r.Host+":*")
	}
	c := &syntrixConn{g: g, s: s, authed: authed}
	if g.runWS(w, r, s, patterns, c.read) {
		g.hub.endSession(s, false) // no resume in Syntrix's protocol
		g.closed(s)
	}
}

// syntrixConn is the read side of one /realtime/ws connection.
type syntrixConn struct {
	g      *Gateway
	s      *session
	authed bool
}

// read handles messages until the connection ends; closed reports that
// the client ended it with a close frame. Unknown types and malformed
// messages are ignored, as Syntrix does.
func (c *syntrixConn) read(base, ops context.Context, conn *websocket.Conn) (closed bool) {
	for {
		typ, data, err := conn.Read(base)
		if err != nil {
			return websocket.CloseStatus(err) != -1
		}
		var e envelope
		if typ != websocket.MessageText || json.Unmarshal(data, &e) != nil {
			c.g.log.Debug("ignoring an unreadable Syntrix message", "remote", c.s.remote)
			continue
		}
		switch e.Type {
		case syntrixAuth:
			c.auth(e)
		case syntrixSubscribe:
			c.subscribe(ops, e)
		case syntrixUnsubscribe:
			c.unsubscribe(e)
		default: // heartbeats and anything newer: ignored
		}
	}
}

// auth authenticates the connection with the message's token. A token for
// another tenant than the connection's first one is refused: its
// subscriptions belong to that tenant.
func (c *syntrixConn) auth(e envelope) {
	var p struct {
		Token    string `json:"token"`
		Database string `json:"database"` // the newer SDK's: accepted, the tenant is the token's
	}
	if json.Unmarshal(e.payloadObject(), &p) != nil || p.Token == "" {
		c.s.enqueue(syntrixErrorFrame(e.ID, syntrixCodeInvalidAuth, "invalid payload"))
		return
	}
	ta, ok := c.g.cfg.Auth.(TokenAuthenticator)
	if !ok {
		c.g.authFailures.Add(1)
		c.g.log.Warn("Syntrix auth message refused: the gateway's authenticator verifies tokens of requests only", "remote", c.s.remote)
		c.s.enqueue(syntrixErrorFrame(e.ID, syntrixCodeUnauthorized, "invalid token"))
		return
	}
	id, err := ta.AuthenticateToken(p.Token)
	if err == nil && c.authed && id.Tenant != c.s.tenant {
		err = errors.New("a token for another tenant than the connection's")
	}
	if err != nil {
		c.g.authFailures.Add(1)
		c.g.log.Debug("Syntrix auth refused", "remote", c.s.remote, "err", err)
		c.s.enqueue(syntrixErrorFrame(e.ID, syntrixCodeUnauthorized, "invalid token"))
		return
	}
	if !c.authed {
		c.s.tenant = id.Tenant
		c.authed = true
	}
	c.s.subject = id.Subject
	c.s.setExpires(id.Expires)
	c.s.enqueue(syntrixFrame(e.ID, syntrixAuthAck, nil))
}

// subscribe subscribes (or replaces) the subscription e.ID.
func (c *syntrixConn) subscribe(ops context.Context, e envelope) {
	if !c.authed {
		c.s.enqueue(syntrixErrorFrame(e.ID, syntrixCodeUnauthorized, "auth required"))
		return
	}
	var p syntrixSubscribePayload
	if err := json.Unmarshal(e.payloadObject(), &p); err != nil {
		c.g.log.Debug("ignoring a Syntrix subscribe without a readable payload", "remote", c.s.remote, "err", err)
		return
	}
	req := subscribeRequest{id: e.ID, collection: p.Query.Collection, snapshot: p.SendSnapshot, filtersSet: true,
		criterion: match.Criterion{Filters: make([]match.Filter, len(p.Query.Filters))}}
	for i, f := range p.Query.Filters {
		op := f.Op
		if op == "contains" { // the newer SDK's name of array-contains
			op = string(match.OpArrayContains)
		}
		req.criterion.Filters[i] = match.Filter{Field: f.Field, Op: match.Operator(op), Value: f.Value}
	}
	if perr := req.check(); perr != nil {
		c.s.enqueue(syntrixErrorFrame(e.ID, "", "Invalid filter expression: "+perr.message))
		return
	}
	if _, err := c.g.engine.Compile(req.criterion); err != nil {
		c.s.enqueue(syntrixErrorFrame(e.ID, "", "Invalid filter expression: "+err.Error()))
		return
	}
	c.g.hub.setNoData(c.s, e.ID, p.IncludeData != nil && !*p.IncludeData)
	if perr := c.g.subscribe(ops, c.s, req, nil); perr != nil {
		c.s.enqueue(syntrixErrorFrame(e.ID, perr.code, perr.message))
	}
}

// unsubscribe removes payload.id; Syntrix acknowledges even unknown ids.
func (c *syntrixConn) unsubscribe(e envelope) {
	if !c.authed {
		c.s.enqueue(syntrixErrorFrame(e.ID, syntrixCodeUnauthorized, "auth required"))
		return
	}
	var p struct {
		ID string `json:"id"`
	}
	if json.Unmarshal(e.payloadObject(), &p) == nil && p.ID != "" {
		_ = c.g.hub.unsubscribe(c.s, p.ID) // unknown: acknowledged all the same
	}
	c.s.enqueue(syntrixFrame(e.ID, syntrixUnsubscribeAck, nil))
}

// syntrixSSEID is the subscription id of a Syntrix SSE stream.
const syntrixSSEID = "default"

// serveSyntrixSSE serves /realtime/sse?collection=C (and the newer SDK's
// /realtime/v1/databases/{db}/sse): the collection's every change, as data:
// envelopes of the subscription "default", after ": connected", with
// ": heartbeat" comments. The token comes in the Authorization header.
// Requests without an Origin (non-browser clients) are served.
func (g *Gateway) serveSyntrixSSE(w http.ResponseWriter, r *http.Request) {
	id, ok := g.authenticate(w, r)
	if !ok {
		return
	}
	collection := strings.TrimSpace(r.URL.Query().Get("collection"))
	if collection == "" {
		writeHTTPError(w, http.StatusBadRequest, errorf("", CodeInvalidArgument, "collection is required (?collection=NAME): subscribing to every collection is not supported"))
		return
	}
	req := subscribeRequest{id: syntrixSSEID, collection: collection}
	if perr := req.check(); perr != nil {
		writeHTTPError(w, http.StatusBadRequest, perr)
		return
	}
	s := g.start(w, r, transportSSE, id, true)
	if s == nil {
		return
	}
	defer g.finish()
	if g.streamSSE(w, r, s, req, nil) {
		g.hub.endSession(s, false) // no resume in Syntrix's protocol
		g.closed(s)
	}
}
