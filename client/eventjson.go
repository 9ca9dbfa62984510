package client

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/streamerd/streamer/internal/strictjson"
	streamerv1 "github.com/streamerd/streamer/proto/streamer/v1"
)

// EventJSON is the JSON form of a ChangeEvent used by the CLI and the
// reference gateway:
//
//	{"event_id","tenant","collection","id","op":"create|update|delete","doc","before","changed","ts"}
//
// doc and before are JSON objects (absent or null = none), changed lists
// dotted field paths, ts is the commit time in milliseconds since the Unix
// epoch (absent or 0 = unknown). The log's partition and position are not
// part of the form.
type EventJSON struct {
	EventID    string          `json:"event_id"`
	Tenant     string          `json:"tenant"`
	Collection string          `json:"collection"`
	ID         string          `json:"id"`
	Op         string          `json:"op"`
	Doc        json.RawMessage `json:"doc,omitempty"`
	Before     json.RawMessage `json:"before,omitempty"`
	Changed    []string        `json:"changed,omitempty"`
	TS         Millis          `json:"ts,omitempty"`
}

// Millis is a time in milliseconds since the Unix epoch. It encodes as a
// JSON number; decoding also accepts an RFC 3339 string.
type Millis int64

// UnmarshalJSON accepts an integral number of milliseconds, an RFC 3339
// string, or null (0).
func (m *Millis) UnmarshalJSON(b []byte) error {
	s := string(bytes.TrimSpace(b))
	switch {
	case s == "null":
		*m = 0
		return nil
	case strings.HasPrefix(s, `"`):
		var str string
		if err := json.Unmarshal(b, &str); err != nil {
			return err
		}
		t, err := time.Parse(time.RFC3339Nano, str)
		if err != nil {
			return fmt.Errorf("ts: want milliseconds or an RFC 3339 time: %w", err)
		}
		*m = Millis(t.UnixMilli())
		return nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		*m = Millis(n)
		return nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f != math.Trunc(f) || math.Abs(f) > 1<<53 {
		return fmt.Errorf("ts: want integral milliseconds since the epoch or an RFC 3339 time, got %s", s)
	}
	*m = Millis(f)
	return nil
}

// ParseEventJSON decodes one event in its JSON form (see EventJSON) and
// checks the form: op is required, doc and before must be objects. Other
// rules (required ids, size limits) are the node's to enforce; an empty
// event_id or ts is left empty (the caller may fill them in). An unknown
// field is an error (a misspelt one would otherwise be lost); the subs and
// cursor of a MatchJSON (a watch line) are accepted and ignored.
func ParseEventJSON(data []byte) (*streamerv1.ChangeEvent, error) {
	// A watch line (MatchJSON) publishes as its event: its subs and cursor
	// are known, and ignored.
	var m MatchJSON
	if err := strictjson.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("client: event JSON: %w", err)
	}
	return m.EventJSON.Proto()
}

// Proto converts e to a ChangeEvent, with the checks of ParseEventJSON.
func (e EventJSON) Proto() (*streamerv1.ChangeEvent, error) {
	op, err := ParseOperation(e.Op)
	if err != nil {
		return nil, fmt.Errorf("client: event JSON: %w", err)
	}
	doc, err := jsonObject("doc", e.Doc)
	if err != nil {
		return nil, err
	}
	before, err := jsonObject("before", e.Before)
	if err != nil {
		return nil, err
	}
	return &streamerv1.ChangeEvent{
		EventId:       e.EventID,
		Tenant:        e.Tenant,
		Collection:    e.Collection,
		DocumentId:    e.ID,
		Operation:     op,
		Document:      doc,
		Before:        before,
		ChangedFields: e.Changed,
		TimestampMs:   int64(e.TS),
	}, nil
}

// jsonObject returns raw compacted, nil for absent or null, and an error
// for anything but an object.
func jsonObject(name string, raw json.RawMessage) ([]byte, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	if raw[0] != '{' {
		return nil, fmt.Errorf("client: event JSON: %q must be a JSON object or null", name)
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return nil, fmt.Errorf("client: event JSON: %q: %w", name, err)
	}
	return buf.Bytes(), nil
}

// EventToJSON returns the JSON form of ev. A document or pre-image that is
// not valid JSON (which a node never delivers) is given as a JSON string.
func EventToJSON(ev *streamerv1.ChangeEvent) EventJSON {
	return EventJSON{
		EventID:    ev.GetEventId(),
		Tenant:     ev.GetTenant(),
		Collection: ev.GetCollection(),
		ID:         ev.GetDocumentId(),
		Op:         OperationName(ev.GetOperation()),
		Doc:        rawJSON(ev.GetDocument()),
		Before:     rawJSON(ev.GetBefore()),
		Changed:    ev.GetChangedFields(),
		TS:         Millis(ev.GetTimestampMs()),
	}
}

func rawJSON(b []byte) json.RawMessage {
	if len(b) == 0 {
		return nil
	}
	if json.Valid(b) {
		return b
	}
	s, _ := json.Marshal(string(b)) // strings always marshal
	return s
}

// MatchJSON is the JSON form of one delivered match, as `streamer watch`
// prints it: the event's JSON form with op set to the effective operation
// for the subscriptions in subs, and the delivery's outbox cursor.
type MatchJSON struct {
	EventJSON
	Subs   []string `json:"subs"`
	Cursor string   `json:"cursor,omitempty"`
}

// JSON returns the JSON form of m, delivered at cursor.
func (m Match) JSON(cursor string) MatchJSON {
	e := EventToJSON(m.Event)
	e.Op = OperationName(m.Operation)
	return MatchJSON{EventJSON: e, Subs: m.SubscriptionIDs, Cursor: cursor}
}

var errNoOp = errors.New(`"op" is required: create, update or delete`)

// ParseOperation parses an operation's JSON name: "create", "update" or
// "delete" (any case). Empty is an error.
func ParseOperation(s string) (streamerv1.Operation, error) {
	switch strings.ToLower(s) {
	case "create":
		return streamerv1.Operation_OPERATION_CREATE, nil
	case "update":
		return streamerv1.Operation_OPERATION_UPDATE, nil
	case "delete":
		return streamerv1.Operation_OPERATION_DELETE, nil
	case "":
		return 0, errNoOp
	}
	return 0, fmt.Errorf("unknown op %q: want create, update or delete", s)
}

// OperationName returns the JSON name of op ("create", "update",
// "delete"), or "" for OPERATION_UNSPECIFIED and unknown values.
func OperationName(op streamerv1.Operation) string {
	switch op {
	case streamerv1.Operation_OPERATION_CREATE:
		return "create"
	case streamerv1.Operation_OPERATION_UPDATE:
		return "update"
	case streamerv1.Operation_OPERATION_DELETE:
		return "delete"
	}
	return ""
}
