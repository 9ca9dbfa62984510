package service

import (
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/streamerd/streamer/match"
	streamerv1 "github.com/streamerd/streamer/proto/streamer/v1"
	"github.com/streamerd/streamer/store/memory"
)

func TestInvalidSubscriptionsGetPreciseErrors(t *testing.T) {
	h := startNode(t, Config{Match: match.Config{MaxCELBytes: 64}}, memory.Config{Partitions: 2})
	g, _ := h.connect("gw-1", "")

	// compileErr is the match engine's own message for a criterion: the node
	// must send it back verbatim.
	eng, err := match.NewEngine(match.Config{MaxCELBytes: 64})
	if err != nil {
		t.Fatal(err)
	}
	compileErr := func(cr match.Criterion) string {
		_, err := eng.Compile(cr)
		if err == nil {
			t.Fatalf("criterion %+v compiles", cr)
		}
		return err.Error()
	}
	withFilters := func(fs ...*streamerv1.FieldFilter) *streamerv1.Subscription {
		return &streamerv1.Subscription{SubscriptionId: "s", Tenant: "t", Collection: "c",
			Criterion: &streamerv1.Subscription_Filters{Filters: &streamerv1.FieldFilters{Filters: fs}}}
	}
	withCEL := func(expr string) *streamerv1.Subscription {
		return &streamerv1.Subscription{SubscriptionId: "s", Tenant: "t", Collection: "c", Criterion: &streamerv1.Subscription_Cel{Cel: expr}}
	}
	list, _ := structpb.NewValue([]any{"a"})
	str := structpb.NewStringValue("a")

	tests := []struct {
		name string
		sub  *streamerv1.Subscription
		code streamerv1.ErrorCode
		msg  string // exact message when not empty
		has  string // substring of the message when not empty
	}{
		{"unknown operator", withFilters(&streamerv1.FieldFilter{Field: "a", Op: "~=", Value: str}),
			streamerv1.ErrorCode_ERROR_CODE_INVALID_FILTER, compileErr(match.Criterion{Filters: []match.Filter{{Field: "a", Op: "~=", Value: "a"}}}), ""},
		{"empty field path", withFilters(&streamerv1.FieldFilter{Field: "", Op: "==", Value: str}),
			streamerv1.ErrorCode_ERROR_CODE_INVALID_FILTER, compileErr(match.Criterion{Filters: []match.Filter{{Field: "", Op: "==", Value: "a"}}}), ""},
		{"in with a non-list value", withFilters(&streamerv1.FieldFilter{Field: "a", Op: "in", Value: str}),
			streamerv1.ErrorCode_ERROR_CODE_INVALID_FILTER, compileErr(match.Criterion{Filters: []match.Filter{{Field: "a", Op: "in", Value: "a"}}}), ""},
		{"second filter missing its value", withFilters(&streamerv1.FieldFilter{Field: "a", Op: "in", Value: list}, &streamerv1.FieldFilter{Field: "b", Op: "=="}),
			streamerv1.ErrorCode_ERROR_CODE_INVALID_FILTER, "", `filter 1 (field "b", op "=="): value is required`},
		{"cel syntax error", withCEL("doc.a ==="),
			streamerv1.ErrorCode_ERROR_CODE_INVALID_CEL, compileErr(match.Criterion{CEL: "doc.a ==="}), ""},
		{"cel not bool", withCEL("doc.a + 1"),
			streamerv1.ErrorCode_ERROR_CODE_INVALID_CEL, compileErr(match.Criterion{CEL: "doc.a + 1"}), ""},
		{"cel unknown variable", withCEL("user.a == 1"),
			streamerv1.ErrorCode_ERROR_CODE_INVALID_CEL, compileErr(match.Criterion{CEL: "user.a == 1"}), ""},
		{"cel too long", withCEL("doc.a == '" + strings.Repeat("x", 100) + "'"),
			streamerv1.ErrorCode_ERROR_CODE_TOO_LARGE, "", "is 111 bytes, the limit is 64 bytes"},
		{"cel worst case over the limit", withCEL("doc.a.exists(x, doc.b.exists(y, x == y))"),
			streamerv1.ErrorCode_ERROR_CODE_INVALID_CEL, compileErr(match.Criterion{CEL: "doc.a.exists(x, doc.b.exists(y, x == y))"}) + " (--cel-worst-case-limit)", ""},
		{"missing collection", &streamerv1.Subscription{SubscriptionId: "s", Tenant: "t"},
			streamerv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "", "collection is required"},
		{"missing subscription id", &streamerv1.Subscription{Tenant: "t", Collection: "c"},
			streamerv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "", "subscription_id is required"},
		{"empty document id", &streamerv1.Subscription{SubscriptionId: "s", Tenant: "t", Collection: "c", Criterion: &streamerv1.Subscription_DocumentId{}},
			streamerv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "", "document_id is set but empty"},
		{"no subscription", nil, streamerv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "", "subscription is required"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := g.subscribe(tc.sub)
			e := res.GetError()
			if e.GetCode() != tc.code {
				t.Fatalf("code = %v (%q), want %v", e.GetCode(), e.GetMessage(), tc.code)
			}
			if res.GetSubscriptionId() != tc.sub.GetSubscriptionId() || res.GetUnsubscribed() {
				t.Errorf("result = %v", res)
			}
			if tc.msg != "" && e.GetMessage() != tc.msg {
				t.Errorf("message = %q, want %q", e.GetMessage(), tc.msg)
			}
			if tc.has != "" && !strings.Contains(e.GetMessage(), tc.has) {
				t.Errorf("message = %q, want it to contain %q", e.GetMessage(), tc.has)
			}
		})
	}

	t.Run("unknown unsubscribe", func(t *testing.T) {
		g.send(&streamerv1.GatewayMessage{Msg: &streamerv1.GatewayMessage_Unsubscribe{Unsubscribe: &streamerv1.Unsubscribe{SubscriptionId: "nope"}}})
		res := g.take("unsubscribe result", func(m *streamerv1.StreamerMessage) bool { return m.GetSubscribeResult() != nil }).GetSubscribeResult()
		if res.GetError().GetCode() != streamerv1.ErrorCode_ERROR_CODE_UNKNOWN_SUBSCRIPTION || !res.GetUnsubscribed() || res.GetSubscriptionId() != "nope" {
			t.Fatalf("result = %v", res)
		}
	})

	t.Run("session stays usable", func(t *testing.T) {
		g.mustSubscribe(withCEL("doc.a == 1"))
		h.publish(event("e1", "t", "c", "d", opCreate, `{"a":1}`, ""))
		if got := summary(g.matchesUntil("e1")); !slices.Equal(got, []string{"e1:CREATE:s"}) {
			t.Fatalf("got %q", got)
		}
	})
}

func TestSessionProtocolErrors(t *testing.T) {
	h := startNode(t, Config{}, memory.Config{Partitions: 2})
	tests := []struct {
		name  string
		first *streamerv1.GatewayMessage
		code  streamerv1.ErrorCode
	}{
		{"subscribe before register", &streamerv1.GatewayMessage{Msg: &streamerv1.GatewayMessage_Subscribe{Subscribe: &streamerv1.Subscribe{}}}, streamerv1.ErrorCode_ERROR_CODE_NOT_REGISTERED},
		{"heartbeat before register", &streamerv1.GatewayMessage{Msg: &streamerv1.GatewayMessage_Heartbeat{Heartbeat: &streamerv1.Heartbeat{}}}, streamerv1.ErrorCode_ERROR_CODE_NOT_REGISTERED},
		{"empty message first", &streamerv1.GatewayMessage{}, streamerv1.ErrorCode_ERROR_CODE_NOT_REGISTERED},
		{"register without gateway id", &streamerv1.GatewayMessage{Msg: &streamerv1.GatewayMessage_Register{Register: &streamerv1.Register{}}}, streamerv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT},
		{"register with a malformed cursor", &streamerv1.GatewayMessage{Msg: &streamerv1.GatewayMessage_Register{Register: &streamerv1.Register{GatewayId: "g", ResumeCursor: "abc"}}}, streamerv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := h.open("g")
			g.send(tc.first)
			if e := g.endError(); e.GetCode() != tc.code || e.GetMessage() == "" {
				t.Fatalf("error = %v, want %v", e, tc.code)
			}
		})
	}
	t.Run("register twice", func(t *testing.T) {
		g, _ := h.connect("g2", "")
		g.send(&streamerv1.GatewayMessage{Msg: &streamerv1.GatewayMessage_Register{Register: &streamerv1.Register{GatewayId: "g2"}}})
		if e := g.endError(); e.GetCode() != streamerv1.ErrorCode_ERROR_CODE_NOT_REGISTERED {
			t.Fatalf("error = %v", e)
		}
	})
	t.Run("empty message after register", func(t *testing.T) {
		g, _ := h.connect("g3", "")
		g.send(&streamerv1.GatewayMessage{})
		if e := g.endError(); e.GetCode() != streamerv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT {
			t.Fatalf("error = %v", e)
		}
	})
}

func TestNewerSessionSupersedesOlder(t *testing.T) {
	h := startNode(t, Config{}, memory.Config{Partitions: 2})
	old := h.watching("gw-1")

	g, _ := h.connect("gw-1", "")
	e := old.endError()
	if e.GetCode() != streamerv1.ErrorCode_ERROR_CODE_SUPERSEDED || !strings.Contains(e.GetMessage(), "superseded") {
		t.Fatalf("old session error = %v", e)
	}
	// The subscription belongs to the gateway, not the session.
	h.publish(event("e1", "t", "c", "d", opCreate, `{}`, ""))
	if got := summary(g.matchesUntil("e1")); !slices.Equal(got, []string{"e1:CREATE:s"}) {
		t.Fatalf("got %q", got)
	}
	waitFor(t, "one registered session", func() bool { return h.node.sessions.count() == 1 })
}
