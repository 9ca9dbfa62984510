package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/streamerd/streamer/client"
	"github.com/streamerd/streamer/match"
	streamerv1 "github.com/streamerd/streamer/proto/streamer/v1"
)

// Error codes of "error" messages (see the package documentation).
const (
	CodeBadMessage           = "bad_message"
	CodeInvalidArgument      = "invalid_argument"
	CodeInvalidFilter        = "invalid_filter"
	CodeInvalidCEL           = "invalid_cel"
	CodeTooLarge             = "too_large"
	CodeTenantNotAllowed     = "tenant_not_allowed"
	CodeTooManySubscriptions = "too_many_subscriptions"
	CodeUnknownSubscription  = "unknown_subscription"
	CodeCostLimit            = "cost_limit"
	CodeSnapshotUnavailable  = "snapshot_unavailable"
	CodeUnavailable          = "unavailable"
	CodeInternal             = "internal"
	CodeUnauthenticated      = "unauthenticated"
)

// protoError is a refusal sent to a client as an "error" message.
type protoError struct {
	id      string // subscription id; "" when not tied to one
	code    string
	message string
}

func (e *protoError) Error() string { return e.code + ": " + e.message }

func errorf(id, code, format string, args ...any) *protoError {
	return &protoError{id: id, code: code, message: fmt.Sprintf(format, args...)}
}

// request is a parsed client message.
type request struct {
	typ string // "subscribe" or "unsubscribe"
	sub subscribeRequest
}

// subscribeRequest is one subscription asked for by a client, from a
// WebSocket message or an SSE query string. The tenant is not part of it:
// it comes from the connection's identity.
type subscribeRequest struct {
	id         string
	collection string
	criterion  match.Criterion
	// filtersSet distinguishes "filters":[] (every document, as a filter
	// list) from no criterion; both select every document.
	filtersSet bool
	// after is the WebSocket resume point: the event id of the last event
	// the client received for this subscription (nil: start from now).
	after *string
	// snapshot asks for the matching documents first ("snapshot" messages,
	// then "snapshot_end"), then the changes after them.
	snapshot bool
}

// wireMessage is the JSON form of a client message. Pointers and raw values
// tell absent fields from empty ones.
type wireMessage struct {
	Type       string          `json:"type"`
	ID         string          `json:"id"`
	Collection string          `json:"collection"`
	Doc        *string         `json:"doc"`
	Filters    json.RawMessage `json:"filters"`
	CEL        *string         `json:"cel"`
	After      *string         `json:"after"`
	Snapshot   *bool           `json:"snapshot"`
	Tenant     json.RawMessage `json:"tenant"`
}

// parseRequest decodes and checks one client message. Criteria are only
// checked for shape here; compiling them is the subscriber's job.
func parseRequest(data []byte) (request, *protoError) {
	var m wireMessage
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return request{}, errorf("", CodeBadMessage, "want one JSON object {\"type\":\"subscribe\"|\"unsubscribe\",…}: %v", err)
	}
	if dec.More() {
		return request{}, errorf("", CodeBadMessage, "want exactly one JSON object per message")
	}
	if m.Tenant != nil {
		return request{}, errorf(m.ID, CodeTenantNotAllowed, "the tenant comes from the access token; do not send one")
	}
	switch m.Type {
	case "subscribe":
		sub := subscribeRequest{id: m.ID, collection: m.Collection, after: m.After, snapshot: m.Snapshot != nil && *m.Snapshot}
		if m.After != nil && *m.After == "" {
			return request{}, errorf(m.ID, CodeInvalidArgument, "after is empty: give the event_id of the last event received, or leave it out")
		}
		if m.After != nil && sub.snapshot {
			return request{}, errorf(m.ID, CodeInvalidArgument, "give after (resume from an event) or snapshot (start from the current documents), not both")
		}
		var filters *[]match.Filter
		if len(m.Filters) > 0 && string(m.Filters) != "null" {
			var fl []match.Filter
			if err := json.Unmarshal(m.Filters, &fl); err != nil {
				return request{}, errorf(m.ID, CodeInvalidFilter, "filters: want a list of {\"field\",\"op\",\"value\"} objects: %v", err)
			}
			filters = &fl
		}
		if err := sub.setCriterion(m.Doc, filters, m.CEL); err != nil {
			return request{}, err
		}
		if err := sub.check(); err != nil {
			return request{}, err
		}
		return request{typ: m.Type, sub: sub}, nil
	case "unsubscribe":
		if m.Collection != "" || m.Doc != nil || m.Filters != nil || m.CEL != nil || m.After != nil || m.Snapshot != nil {
			return request{}, errorf(m.ID, CodeBadMessage, "unsubscribe takes only an id")
		}
		if m.ID == "" {
			return request{}, errorf("", CodeInvalidArgument, "id is required")
		}
		return request{typ: m.Type, sub: subscribeRequest{id: m.ID}}, nil
	case "":
		return request{}, errorf(m.ID, CodeBadMessage, "type is required: subscribe or unsubscribe")
	}
	return request{}, errorf(m.ID, CodeBadMessage, "unknown type %q: want subscribe or unsubscribe", m.Type)
}

// setCriterion sets at most one of doc, filters and cel.
func (s *subscribeRequest) setCriterion(doc *string, filters *[]match.Filter, cel *string) *protoError {
	n := 0
	for _, set := range []bool{doc != nil, filters != nil, cel != nil} {
		if set {
			n++
		}
	}
	if n > 1 {
		return errorf(s.id, CodeInvalidArgument, "give at most one of doc, filters and cel")
	}
	switch {
	case doc != nil:
		if *doc == "" {
			return errorf(s.id, CodeInvalidArgument, "doc is empty; leave it out to select every document")
		}
		s.criterion.DocumentID = *doc
	case cel != nil:
		if strings.TrimSpace(*cel) == "" {
			return errorf(s.id, CodeInvalidCEL, "cel is empty; leave it out to select every document")
		}
		s.criterion.CEL = *cel
	case filters != nil:
		s.criterion.Filters = *filters
		s.filtersSet = true
	}
	return nil
}

// maxIDBytes bounds client-chosen subscription ids and collection names.
const maxIDBytes = 256

func (s *subscribeRequest) check() *protoError {
	switch {
	case s.id == "":
		return errorf("", CodeInvalidArgument, "id is required")
	case len(s.id) > maxIDBytes:
		return errorf("", CodeInvalidArgument, "id is longer than %d bytes", maxIDBytes)
	case s.collection == "":
		return errorf(s.id, CodeInvalidArgument, "collection is required")
	case len(s.collection) > maxIDBytes:
		return errorf(s.id, CodeInvalidArgument, "collection is longer than %d bytes", maxIDBytes)
	}
	return nil
}

// upstream returns the streamer subscription for s in tenant, under the
// upstream id id.
func (s *subscribeRequest) upstream(id, tenant string) client.Subscription {
	sub := client.Subscription{
		ID: id, Tenant: tenant, Collection: s.collection,
		DocumentID: s.criterion.DocumentID, CEL: s.criterion.CEL,
	}
	if s.snapshot {
		sub.Snapshot = &client.SnapshotRequest{}
	}
	if s.filtersSet {
		sub.Filters = make([]client.Filter, len(s.criterion.Filters))
		for i, f := range s.criterion.Filters {
			sub.Filters[i] = client.Filter{Field: f.Field, Op: string(f.Op), Value: f.Value}
		}
	}
	return sub
}

// compileError maps a match compilation error to a client error.
func compileError(id string, err error) *protoError {
	code := CodeInvalidArgument
	switch {
	case errors.Is(err, match.ErrTooLong):
		code = CodeTooLarge
	case errors.Is(err, match.ErrInvalidFilter):
		code = CodeInvalidFilter
	case errors.Is(err, match.ErrInvalidCEL):
		code = CodeInvalidCEL
	}
	return &protoError{id: id, code: code, message: err.Error()}
}

// nodeCode maps a node's error code to the client protocol's.
func nodeCode(c streamerv1.ErrorCode) string {
	switch c {
	case streamerv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT:
		return CodeInvalidArgument
	case streamerv1.ErrorCode_ERROR_CODE_INVALID_FILTER:
		return CodeInvalidFilter
	case streamerv1.ErrorCode_ERROR_CODE_INVALID_CEL:
		return CodeInvalidCEL
	case streamerv1.ErrorCode_ERROR_CODE_TOO_LARGE:
		return CodeTooLarge
	case streamerv1.ErrorCode_ERROR_CODE_UNKNOWN_SUBSCRIPTION:
		return CodeUnknownSubscription
	case streamerv1.ErrorCode_ERROR_CODE_TOO_MANY_SUBSCRIPTIONS:
		return CodeTooManySubscriptions
	case streamerv1.ErrorCode_ERROR_CODE_COST_LIMIT:
		return CodeCostLimit
	case streamerv1.ErrorCode_ERROR_CODE_SNAPSHOT_UNAVAILABLE:
		return CodeSnapshotUnavailable
	case streamerv1.ErrorCode_ERROR_CODE_UNAVAILABLE, streamerv1.ErrorCode_ERROR_CODE_NOT_REGISTERED:
		return CodeUnavailable
	case streamerv1.ErrorCode_ERROR_CODE_UNAUTHENTICATED:
		return CodeUnauthenticated
	}
	return CodeInternal
}

// frame is one message queued for a client. An event frame is head + body:
// head is `{"type":"event","subs":[…]` (per connection), body is the rest of
// the object, shared by every connection receiving the event. Other frames
// are all head.
type frame struct {
	head    []byte
	body    []byte
	eventID string // set for event frames: the SSE "id:" field
	final   bool   // SSE: end the stream after this frame
}

// size is the frame's length, as a queue counts it.
func (f frame) size() int { return len(f.head) + len(f.body) }

// appendTo appends the frame's JSON to b.
func (f frame) appendTo(b []byte) []byte {
	return append(append(b, f.head...), f.body...)
}

// control returns a frame holding one non-event message.
func control(v any) frame {
	b, err := json.Marshal(v)
	if err != nil { // only string and []string fields: cannot happen
		panic(fmt.Sprintf("gateway: encoding %T: %v", v, err))
	}
	return frame{head: b}
}

type idMessage struct {
	Type string `json:"type"`
	ID   string `json:"id"`
}

type errorMessage struct {
	Type    string `json:"type"`
	ID      string `json:"id"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

type resyncMessage struct {
	Type   string `json:"type"`
	Reason string `json:"reason"`
}

func subscribedFrame(id string) frame   { return control(idMessage{"subscribed", id}) }
func unsubscribedFrame(id string) frame { return control(idMessage{"unsubscribed", id}) }
func resyncFrame(reason string) frame   { return control(resyncMessage{"resync", reason}) }
func errorFrame(e *protoError) frame {
	return control(errorMessage{"error", e.id, e.code, e.message})
}

// snapshotDoc is one document of a "snapshot" message.
type snapshotDoc struct {
	ID      string          `json:"id"`
	Doc     json.RawMessage `json:"doc"`
	EventID string          `json:"event_id,omitempty"`
	TS      int64           `json:"ts,omitempty"`
}

// snapshotBody is the shared part of a "snapshot" message.
type snapshotBody struct {
	Collection string        `json:"collection"`
	Page       int32         `json:"page"`
	Docs       []snapshotDoc `json:"docs"`
}

// renderSnapshot returns the body of the "snapshot" message of page p of a
// snapshot of collection: `,"collection":…}`, shared by the clients it goes
// to, whose heads are snapshotHead.
func renderSnapshot(collection string, p *streamerv1.SnapshotPage) []byte {
	body := snapshotBody{Collection: collection, Page: p.GetPage(), Docs: make([]snapshotDoc, len(p.GetDocuments()))}
	for i, d := range p.GetDocuments() {
		doc := json.RawMessage(d.GetDocument())
		if !json.Valid(doc) { // nodes refuse such documents at ingest
			doc = json.RawMessage("null")
		}
		body.Docs[i] = snapshotDoc{ID: d.GetDocumentId(), Doc: doc, EventID: d.GetEventId(), TS: d.GetTimestampMs()}
	}
	b, err := json.Marshal(body)
	if err != nil { // unreachable: documents are valid JSON
		panic("gateway: encoding a snapshot page: " + err.Error())
	}
	b[0] = ','
	return b
}

// snapshotHead returns `{"type":"snapshot","id":…` for the client id.
func snapshotHead(id string) []byte {
	s, _ := json.Marshal(id) // strings always marshal
	return append([]byte(`{"type":"snapshot","id":`), s...)
}

type snapshotEndMessage struct {
	Type      string `json:"type"`
	ID        string `json:"id"`
	Documents int32  `json:"documents"`
	More      bool   `json:"more,omitempty"`
	NextAfter string `json:"next_after,omitempty"`
	Code      string `json:"code,omitempty"`
	Message   string `json:"message,omitempty"`
}

// snapshotEndFrame ends the snapshot of the client subscription id; a
// failed snapshot carries its error's code and message.
func snapshotEndFrame(id string, e *streamerv1.SnapshotEnd) frame {
	m := snapshotEndMessage{Type: "snapshot_end", ID: id, Documents: e.GetDocuments(), More: e.GetMore(), NextAfter: e.GetNextAfter()}
	if err := e.GetError(); err != nil {
		m.Code, m.Message = nodeCode(err.GetCode()), err.GetMessage()
	}
	return control(m)
}

// eventBody is the shared part of an event message.
type eventBody struct {
	Op         string          `json:"op"`
	Collection string          `json:"collection"`
	ID         string          `json:"id"`
	Doc        json.RawMessage `json:"doc"`
	EventID    string          `json:"event_id"`
	TS         int64           `json:"ts"`
	Tenant     string          `json:"tenant"`
}

// renderBody returns the body of the event message for m: `,"op":…}`.
// encoding/json compacts the document, so every message is one line (as SSE
// data lines must be).
func renderBody(m client.Match) []byte {
	e := client.EventToJSON(m.Event) // Doc is valid JSON or absent
	body := eventBody{
		Op: client.OperationName(m.Operation), Collection: e.Collection, ID: e.ID, Doc: e.Doc,
		EventID: e.EventID, TS: int64(e.TS), Tenant: e.Tenant,
	}
	if len(body.Doc) == 0 {
		body.Doc = json.RawMessage("null")
	}
	if !utf8.Valid(body.Doc) {
		// Nodes refuse such documents at ingest; one that got into the log
		// anyway must not make a text frame invalid (a browser closes the
		// connection on one): its bad bytes become U+FFFD, as encoding/json
		// does for strings.
		body.Doc = bytes.ToValidUTF8(body.Doc, []byte("\uFFFD"))
	}
	b, err := json.Marshal(body)
	if err != nil { // unreachable: EventToJSON returns valid JSON
		body.Doc = json.RawMessage("null")
		b, _ = json.Marshal(body)
	}
	b[0] = ',' // `{"op":…}` → `,"op":…}`, appended after the head
	return b
}

// eventHead returns `{"type":"event","subs":[…]` for the client ids subs.
func eventHead(subs []string) []byte {
	s, _ := json.Marshal(subs) // strings always marshal
	b := make([]byte, 0, len(`{"type":"event","subs":`)+len(s))
	b = append(b, `{"type":"event","subs":`...)
	return append(b, s...)
}

// sseSafeID reports whether id can be sent as an SSE "id:" field (no line
// breaks, no NUL, which would end or void the field).
func sseSafeID(id string) bool {
	return id != "" && !strings.ContainsAny(id, "\r\n\x00")
}
