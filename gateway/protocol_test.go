package gateway

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/streamerd/streamer/client"
	streamerv1 "github.com/streamerd/streamer/proto/streamer/v1"
)

func TestParseRequest(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      string
		typ     string // want, when valid
		code    string // want, when refused
		check   func(t *testing.T, r request)
		errorID string
	}{
		{name: "subscribe to everything", in: `{"type":"subscribe","id":"a","collection":"c"}`, typ: "subscribe",
			check: func(t *testing.T, r request) {
				if r.sub.criterion.DocumentID != "" || r.sub.criterion.CEL != "" || r.sub.filtersSet {
					t.Fatalf("criterion %+v", r.sub)
				}
			}},
		{name: "doc", in: `{"type":"subscribe","id":"a","collection":"c","doc":"d1"}`, typ: "subscribe",
			check: func(t *testing.T, r request) {
				if r.sub.criterion.DocumentID != "d1" {
					t.Fatalf("criterion %+v", r.sub)
				}
			}},
		{name: "filters, compact triples too", in: `{"type":"subscribe","id":"a","collection":"c","filters":[{"field":"x","op":"==","value":1},["y","in",[1,2]]]}`, typ: "subscribe",
			check: func(t *testing.T, r request) {
				if !r.sub.filtersSet || len(r.sub.criterion.Filters) != 2 || r.sub.criterion.Filters[1].Op != "in" {
					t.Fatalf("criterion %+v", r.sub)
				}
				up := r.sub.upstream("u1", "acme")
				if up.ID != "u1" || up.Tenant != "acme" || len(up.Filters) != 2 || up.Filters[0].Value != 1.0 {
					t.Fatalf("upstream %+v", up)
				}
			}},
		{name: "empty filters select everything", in: `{"type":"subscribe","id":"a","collection":"c","filters":[]}`, typ: "subscribe",
			check: func(t *testing.T, r request) {
				if up := r.sub.upstream("u", ""); up.Filters == nil {
					t.Fatal("empty filter list lost")
				}
			}},
		{name: "null filters are absent", in: `{"type":"subscribe","id":"a","collection":"c","filters":null,"cel":"true"}`, typ: "subscribe"},
		{name: "cel", in: `{"type":"subscribe","id":"a","collection":"c","cel":"doc.a == 1"}`, typ: "subscribe"},
		{name: "unsubscribe", in: `{"type":"unsubscribe","id":"a"}`, typ: "unsubscribe"},
		{name: "tenant", in: `{"type":"subscribe","id":"a","collection":"c","tenant":"t"}`, code: CodeTenantNotAllowed, errorID: "a"},
		{name: "tenant in another case", in: `{"type":"subscribe","id":"a","collection":"c","TENANT":"t"}`, code: CodeTenantNotAllowed, errorID: "a"},
		{name: "tenant on unsubscribe", in: `{"type":"unsubscribe","id":"a","tenant":"t"}`, code: CodeTenantNotAllowed, errorID: "a"},
		{name: "not an object", in: `[1]`, code: CodeBadMessage},
		{name: "empty", in: ``, code: CodeBadMessage},
		{name: "trailing data", in: `{"type":"unsubscribe","id":"a"} x`, code: CodeBadMessage},
		{name: "unknown field", in: `{"type":"subscribe","id":"a","collection":"c","where":1}`, code: CodeBadMessage},
		{name: "wrong field type", in: `{"type":"subscribe","id":1}`, code: CodeBadMessage},
		{name: "doc and filters", in: `{"type":"subscribe","id":"a","collection":"c","doc":"d","filters":[]}`, code: CodeInvalidArgument, errorID: "a"},
		{name: "empty cel", in: `{"type":"subscribe","id":"a","collection":"c","cel":""}`, code: CodeInvalidCEL, errorID: "a"},
		{name: "filter without value", in: `{"type":"subscribe","id":"a","collection":"c","filters":[{"field":"x","op":"=="}]}`, code: CodeInvalidFilter, errorID: "a"},
		{name: "long id", in: `{"type":"subscribe","id":"` + strings.Repeat("i", 300) + `","collection":"c"}`, code: CodeInvalidArgument},
		{name: "long collection", in: `{"type":"subscribe","id":"a","collection":"` + strings.Repeat("c", 300) + `"}`, code: CodeInvalidArgument, errorID: "a"},
		{name: "unsubscribe without id", in: `{"type":"unsubscribe"}`, code: CodeInvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, perr := parseRequest([]byte(tc.in))
			if tc.code != "" {
				if perr == nil || perr.code != tc.code || perr.id != tc.errorID || perr.message == "" {
					t.Fatalf("got %+v, %+v; want code %q id %q", r, perr, tc.code, tc.errorID)
				}
				return
			}
			if perr != nil || r.typ != tc.typ {
				t.Fatalf("got %+v, %v; want a %s", r, perr, tc.typ)
			}
			if tc.check != nil {
				tc.check(t, r)
			}
		})
	}
}

// FuzzParseRequest checks that any client message is either refused with a
// well-formed error or parsed into a request the gateway can act on.
func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{
		`{"type":"subscribe","id":"a","collection":"c"}`,
		`{"type":"subscribe","id":"a","collection":"c","filters":[{"field":"x","op":"in","value":[1,"a",null]}]}`,
		`{"type":"subscribe","id":"a","collection":"c","cel":"doc.x > 1.0"}`,
		`{"type":"subscribe","id":"a","collection":"c","doc":"d","tenant":"t"}`,
		`{"type":"unsubscribe","id":"a"}`,
		`{"type":"subscribe","id":"a","collection":"c","filters":[["a","==",{"b":[1]}]]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, perr := parseRequest(data)
		if perr != nil {
			if perr.code == "" || perr.message == "" {
				t.Fatalf("error without code or message: %+v", perr)
			}
			if _, err := json.Marshal(errorMessage{"error", perr.id, perr.code, perr.message}); err != nil {
				t.Fatal(err)
			}
			return
		}
		switch r.typ {
		case "subscribe":
			if r.sub.id == "" || r.sub.collection == "" {
				t.Fatalf("accepted subscribe without id or collection: %+v", r)
			}
			n := 0
			for _, set := range []bool{r.sub.criterion.DocumentID != "", r.sub.filtersSet, r.sub.criterion.CEL != ""} {
				if set {
					n++
				}
			}
			if n > 1 {
				t.Fatalf("accepted several criteria: %+v", r)
			}
		case "unsubscribe":
			if r.sub.id == "" {
				t.Fatal("accepted unsubscribe without id")
			}
		default:
			t.Fatalf("accepted type %q", r.typ)
		}
	})
}

func TestRenderEvent(t *testing.T) {
	m := client.Match{
		Event: &streamerv1.ChangeEvent{EventId: "e1", Tenant: "t", Collection: "c", DocumentId: "d",
			Operation: streamerv1.Operation_OPERATION_UPDATE, Document: []byte("{\n \"a\": \"<b>\"\n}"), TimestampMs: 7},
		Operation:       streamerv1.Operation_OPERATION_DELETE,
		SubscriptionIDs: []string{"u1"},
	}
	f := frame{head: eventHead([]string{"s1", "s\"2"}), body: renderBody(m)}
	out := f.appendTo(nil)
	if strings.ContainsAny(string(out), "\r\n") {
		t.Fatalf("message spans lines: %s", out)
	}
	var got map[string]any
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("%s: %v", out, err)
	}
	want := map[string]any{"type": "event", "subs": []any{"s1", "s\"2"}, "op": "delete", "collection": "c", "id": "d",
		"doc": map[string]any{"a": "<b>"}, "event_id": "e1", "ts": 7.0, "tenant": "t"}
	gb, _ := json.Marshal(got)
	wb, _ := json.Marshal(want)
	if string(gb) != string(wb) {
		t.Fatalf("event message\n got %s\nwant %s", gb, wb)
	}

	m.Event.Document = nil
	if err := json.Unmarshal(frame{head: eventHead(nil), body: renderBody(m)}.appendTo(nil), &got); err != nil || got["doc"] != nil {
		t.Fatalf("hard delete: %v %v", got, err)
	}
}

func TestSSESafeID(t *testing.T) {
	for id, ok := range map[string]bool{"e1": true, "": false, "a\nid: x": false, "a\rb": false, "a\x00": false, "ünï": true} {
		if sseSafeID(id) != ok {
			t.Errorf("sseSafeID(%q) = %v", id, !ok)
		}
	}
}

// TestRenderEventIsValidUTF8: a document that is not valid UTF-8 (nodes
// refuse it at ingest; one may still be in an old log) becomes a valid
// text frame, its bad bytes U+FFFD: a browser closes the connection (1006)
// on an invalid text frame, and the user would never learn what it missed.
func TestRenderEventIsValidUTF8(t *testing.T) {
	m := client.Match{
		Event: &streamerv1.ChangeEvent{EventId: "e1", Collection: "c", DocumentId: "d",
			Operation: streamerv1.Operation_OPERATION_CREATE, Document: []byte("{\"a\":\"x\xffy\"}")},
		Operation: streamerv1.Operation_OPERATION_CREATE,
	}
	out := frame{head: eventHead([]string{"s"}), body: renderBody(m)}.appendTo(nil)
	if !utf8.Valid(out) {
		t.Fatalf("frame is not valid UTF-8: %q", out)
	}
	var got struct {
		Doc map[string]string `json:"doc"`
	}
	if err := json.Unmarshal(out, &got); err != nil || got.Doc["a"] != "x\uFFFDy" {
		t.Fatalf("frame %s: doc %v, %v; want a = \"x\\uFFFDy\"", out, got.Doc, err)
	}
}
