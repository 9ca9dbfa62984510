package service

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	streamerv1 "github.com/streamerd/streamer/proto/streamer/v1"
	"github.com/streamerd/streamer/store"
	"github.com/streamerd/streamer/store/memory"
)

func TestPublishValidatesEachEvent(t *testing.T) {
	const limit = 1024
	h := startNode(t, Config{MaxDocumentBytes: limit}, memory.Config{Partitions: 4})
	big := `{"a":"` + strings.Repeat("x", 2000) + `"}`
	ok := func(id string) *streamerv1.ChangeEvent { return event(id, "t", "c", "d", opCreate, `{"a":1}`, "") }
	tests := []struct {
		name string
		ev   *streamerv1.ChangeEvent
		code streamerv1.ErrorCode
		has  string
	}{
		{"valid", ok("ok1"), 0, ""},
		{"oversize document", event("big", "t", "c", "d", opCreate, big, ""), streamerv1.ErrorCode_ERROR_CODE_TOO_LARGE, "document is 2008 bytes, the limit is 1024 bytes"},
		{"oversize before", event("bigb", "t", "c", "d", opUpdate, `{}`, big), streamerv1.ErrorCode_ERROR_CODE_TOO_LARGE, "before is 2008 bytes, the limit is 1024 bytes"},
		{"missing event id", event("", "t", "c", "d", opCreate, `{}`, ""), streamerv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "event_id is required"},
		{"missing collection", event("e", "t", "", "d", opCreate, `{}`, ""), streamerv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "collection is required"},
		{"missing document id", event("e", "t", "c", "", opCreate, `{}`, ""), streamerv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "document_id is required"},
		{"operation unspecified", event("e", "t", "c", "d", streamerv1.Operation_OPERATION_UNSPECIFIED, `{}`, ""), streamerv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "operation must be"},
		{"document not an object", event("e", "t", "c", "d", opCreate, `[1,2]`, ""), streamerv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "document must be one JSON object"},
		{"document not JSON", event("e", "t", "c", "d", opCreate, `{"a":`, ""), streamerv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "document must be one JSON object"},
		{"before not JSON", event("e", "t", "c", "d", opUpdate, `{}`, `nope`), streamerv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "before must be one JSON object"},
		{"hard delete without document", event("del", "t", "c", "d", opDelete, "", ""), 0, ""},
		{"tenant too long", event("longt", strings.Repeat("t", 300), "c", "d", opCreate, `{}`, ""), streamerv1.ErrorCode_ERROR_CODE_TOO_LARGE,
			"tenant is 300 bytes, the limit is 256 (--max-name-bytes)"},
		{"document too deep", event("deep", "t", "c", "d", opCreate, `{"a":`+strings.Repeat("[", 70)+strings.Repeat("]", 70)+`}`, ""),
			streamerv1.ErrorCode_ERROR_CODE_TOO_LARGE, "document nests deeper than the limit of 64 levels (--max-document-depth) at byte 68"},
		{"deep enough", event("deep64", "t", "c", "d", opCreate, `{"a":"[[[[","b":`+strings.Repeat("[", 63)+strings.Repeat("]", 63)+`}`, ""), 0, ""},
		{"create without document", event("nodoc", "t", "c", "d", opCreate, "", ""), streamerv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT,
			"OPERATION_CREATE requires document (the document after the change); only OPERATION_DELETE may omit it"},
		{"update without document", event("nodoc2", "t", "c", "d", opUpdate, "", `{"a":1}`), streamerv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT,
			"OPERATION_UPDATE requires document"},
		{"document not UTF-8", event("bad8", "t", "c", "d", opCreate, "{\"a\":\"x\xffy\"}", ""), streamerv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT,
			"document is not valid UTF-8 (at byte 7)"},
		{"before not UTF-8", event("bad8b", "t", "c", "d", opDelete, "", "{\"\xc3\":1}"), streamerv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT,
			"before is not valid UTF-8 (at byte 2)"},
		{"empty tenant", event("notenant", "", "c", "d", opCreate, `{}`, ""), 0, ""},
		{"valid after rejections", ok("ok2"), 0, ""},
	}
	var req streamerv1.PublishRequest
	for _, tc := range tests {
		req.Events = append(req.Events, tc.ev)
	}
	resp, err := h.ingest.Publish(h.ctx(), &req)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetResults()) != len(tests) {
		t.Fatalf("%d results for %d events", len(resp.GetResults()), len(tests))
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := resp.GetResults()[i]
			if r.GetEventId() != tc.ev.GetEventId() {
				t.Errorf("result event_id %q, want %q", r.GetEventId(), tc.ev.GetEventId())
			}
			if got := r.GetError().GetCode(); got != tc.code || !strings.Contains(r.GetError().GetMessage(), tc.has) {
				t.Fatalf("error = %v, want code %v containing %q", r.GetError(), tc.code, tc.has)
			}
			if tc.code == 0 {
				want := store.PartitionOf(tc.ev.GetTenant(), tc.ev.GetCollection(), 4)
				if r.GetPosition() == "" || int(r.GetPartition()) != want {
					t.Errorf("appended at partition %d position %q, want partition %d", r.GetPartition(), r.GetPosition(), want)
				}
			} else if r.GetPosition() != "" {
				t.Errorf("rejected event has position %q", r.GetPosition())
			}
		})
	}
}

func TestAuthentication(t *testing.T) {
	h := startNode(t, Config{AuthToken: "s3cret"}, memory.Config{Partitions: 2})
	withAuth := func(v string) context.Context {
		ctx := context.Background()
		if v != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, "authorization", v)
		}
		return ctx
	}
	tests := []struct {
		name, header, has string
	}{
		{"missing token", "", "missing bearer token"},
		{"wrong token", "Bearer nope", "wrong bearer token"},
		{"token prefix", "Bearer s3cre", "wrong bearer token"},
		{"wrong scheme", "Basic s3cret", "malformed authorization"},
	}
	for _, tc := range tests {
		t.Run(tc.name+"/Publish", func(t *testing.T) {
			_, err := h.ingest.Publish(withAuth(tc.header), &streamerv1.PublishRequest{})
			if status.Code(err) != codes.Unauthenticated || !strings.Contains(status.Convert(err).Message(), tc.has) {
				t.Fatalf("err = %v, want Unauthenticated containing %q", err, tc.has)
			}
		})
		t.Run(tc.name+"/Stream", func(t *testing.T) {
			ctx, cancel := context.WithCancel(withAuth(tc.header))
			defer cancel()
			stream, err := h.streamer.Stream(ctx)
			if err == nil {
				_, err = stream.Recv()
			}
			if status.Code(err) != codes.Unauthenticated || !strings.Contains(status.Convert(err).Message(), tc.has) {
				t.Fatalf("err = %v, want Unauthenticated containing %q", err, tc.has)
			}
		})
	}
	t.Run("right token", func(t *testing.T) {
		g, _ := h.connect("gw-1", "") // the helpers send the harness token
		g.watchAll()
		h.publish(event("e1", "t", "c", "d", opCreate, `{}`, ""))
		g.matchesUntil("e1")
	})
}

func TestNewRefusesAnIncompleteBackend(t *testing.T) {
	full := memory.New(memory.Config{Partitions: 2})
	t.Cleanup(func() { _ = full.Close() })
	noRouter := *full
	noRouter.Router = nil
	for _, tc := range []struct {
		name    string
		backend *store.Backend
		cfg     Config
		want    string
	}{
		{"no backend", nil, Config{}, "nil backend"},
		{"no router", &noRouter, Config{}, "no Router"},
		{"partitions disagree", full, Config{Partitions: 3}, "3 partitions but the backend has 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(tc.cfg, tc.backend); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New = %v, want an error saying %q", err, tc.want)
			}
		})
	}
}
