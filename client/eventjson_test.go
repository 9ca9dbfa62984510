package client

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	streamerv1 "github.com/streamerd/streamer/proto/streamer/v1"
)

func TestParseEventJSON(t *testing.T) {
	ts := time.Date(2024, 5, 1, 12, 0, 0, 123e6, time.UTC)
	for _, tc := range []struct {
		name    string
		in      string
		want    *streamerv1.ChangeEvent
		wantErr string
	}{
		{"full update", `{"event_id":"e1","tenant":"t","collection":"c","id":"d","op":"update",
			"doc":{"a": 1, "b": [true]},"before":{"a":0},"changed":["a"],"ts":1714564800123}`,
			&streamerv1.ChangeEvent{EventId: "e1", Tenant: "t", Collection: "c", DocumentId: "d",
				Operation: streamerv1.Operation_OPERATION_UPDATE, Document: []byte(`{"a":1,"b":[true]}`),
				Before: []byte(`{"a":0}`), ChangedFields: []string{"a"}, TimestampMs: ts.UnixMilli()}, ""},
		{"delete without doc, op in capitals", `{"collection":"c","id":"d","op":"DELETE"}`,
			&streamerv1.ChangeEvent{Collection: "c", DocumentId: "d", Operation: streamerv1.Operation_OPERATION_DELETE}, ""},
		{"null doc is no doc", `{"collection":"c","id":"d","op":"delete","doc":null,"before":null,"ts":null}`,
			&streamerv1.ChangeEvent{Collection: "c", DocumentId: "d", Operation: streamerv1.Operation_OPERATION_DELETE}, ""},
		{"RFC 3339 ts", `{"collection":"c","id":"d","op":"create","doc":{},"ts":"2024-05-01T12:00:00.123Z"}`,
			&streamerv1.ChangeEvent{Collection: "c", DocumentId: "d", Operation: streamerv1.Operation_OPERATION_CREATE,
				Document: []byte(`{}`), TimestampMs: ts.UnixMilli()}, ""},
		{"float ts that is integral", `{"collection":"c","id":"d","op":"create","ts":1.5e3}`,
			&streamerv1.ChangeEvent{Collection: "c", DocumentId: "d", Operation: streamerv1.Operation_OPERATION_CREATE,
				TimestampMs: 1500}, ""},
		{"a watch line's subs and cursor are ignored", `{"collection":"c","id":"d","op":"create","subs":["x"],"cursor":"1-0"}`,
			&streamerv1.ChangeEvent{Collection: "c", DocumentId: "d", Operation: streamerv1.Operation_OPERATION_CREATE}, ""},
		{"unknown field", `{"collection":"c","id":"d","op":"create","dok":{}}`, nil, `unknown field "dok"`},
		{"missing op", `{"collection":"c","id":"d"}`, nil, `"op" is required`},
		{"unknown op", `{"collection":"c","id":"d","op":"insert"}`, nil, `unknown op "insert"`},
		{"doc not an object", `{"collection":"c","id":"d","op":"create","doc":[1]}`, nil, `"doc" must be a JSON object`},
		{"before not an object", `{"collection":"c","id":"d","op":"update","before":"x"}`, nil, `"before" must be a JSON object`},
		{"fractional ts", `{"collection":"c","id":"d","op":"create","ts":1.5}`, nil, "ts: want integral"},
		{"bad time string", `{"collection":"c","id":"d","op":"create","ts":"yesterday"}`, nil, "RFC 3339"},
		{"not JSON", `{"collection":`, nil, "event JSON"},
		{"not an object", `[1,2]`, nil, "event JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseEventJSON([]byte(tc.in))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(got, tc.want) {
				t.Errorf("got  %v\nwant %v", got, tc.want)
			}
		})
	}
}

func TestEventToJSONRoundTrip(t *testing.T) {
	ev := &streamerv1.ChangeEvent{EventId: "e1", Tenant: "t", Collection: "c", DocumentId: "d",
		Operation: streamerv1.Operation_OPERATION_UPDATE, Document: []byte(`{"a":1}`), Before: []byte(`{"a":0}`),
		ChangedFields: []string{"a"}, TimestampMs: 42, Partition: 3, Position: "1-1"}
	b, err := json.Marshal(EventToJSON(ev))
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"event_id":"e1","tenant":"t","collection":"c","id":"d","op":"update","doc":{"a":1},"before":{"a":0},"changed":["a"],"ts":42}`
	if string(b) != want {
		t.Errorf("JSON\n got %s\nwant %s", b, want)
	}
	back, err := ParseEventJSON(b)
	if err != nil {
		t.Fatal(err)
	}
	ev.Partition, ev.Position = 0, "" // not part of the JSON form
	if !proto.Equal(back, ev) {
		t.Errorf("round trip: got %v, want %v", back, ev)
	}
}

func TestEventToJSONInvalidDocument(t *testing.T) {
	b, err := json.Marshal(EventToJSON(&streamerv1.ChangeEvent{Document: []byte("{not json")}))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"doc":"{not json"`) {
		t.Errorf("got %s, want the invalid document as a string", b)
	}
}

func TestMatchJSON(t *testing.T) {
	m := Match{
		Event:           &streamerv1.ChangeEvent{EventId: "e", Collection: "c", DocumentId: "d", Operation: streamerv1.Operation_OPERATION_UPDATE, Document: []byte(`{"x":1}`)},
		Operation:       streamerv1.Operation_OPERATION_DELETE,
		SubscriptionIDs: []string{"s1", "s2"},
	}
	b, err := json.Marshal(m.JSON("5-0"))
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"event_id":"e","tenant":"","collection":"c","id":"d","op":"delete","doc":{"x":1},"subs":["s1","s2"],"cursor":"5-0"}`
	if string(b) != want {
		t.Errorf("got  %s\nwant %s", b, want)
	}
	var back MatchJSON
	if err := json.Unmarshal(b, &back); err != nil || back.Cursor != "5-0" || len(back.Subs) != 2 || back.Op != "delete" {
		t.Errorf("decoding back: %+v, %v", back, err)
	}
}

func FuzzParseEventJSON(f *testing.F) {
	for _, s := range []string{
		`{"event_id":"e1","tenant":"t","collection":"c","id":"d","op":"update","doc":{"a":1},"before":{"a":0},"changed":["a"],"ts":1}`,
		`{"collection":"c","id":"d","op":"delete","ts":"2024-05-01T12:00:00Z"}`,
		`{"op":"create","doc":null}`, `[]`, `{"ts":1e400}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ev, err := ParseEventJSON(data)
		if err != nil {
			return
		}
		// Whatever parses must survive a round trip through the JSON form.
		// (HTML escaping off, as `streamer watch` prints: escaping would
		// change the document's bytes, not its meaning.)
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(EventToJSON(ev)); err != nil {
			t.Fatalf("marshal %v: %v", ev, err)
		}
		b := buf.Bytes()
		back, err := ParseEventJSON(b)
		if err != nil {
			t.Fatalf("reparse %s: %v", b, err)
		}
		if !proto.Equal(back, ev) {
			t.Fatalf("round trip changed the event:\n%v\n%v", ev, back)
		}
	})
}
