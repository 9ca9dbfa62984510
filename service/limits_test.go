package service

import (
	"strings"
	"testing"

	streamerv1 "github.com/streamerd/streamer/proto/streamer/v1"
	"github.com/streamerd/streamer/store/memory"
)

// TestSubscriptionLimits: a gateway cannot hold more subscriptions than
// --max-subscriptions-per-gateway (replacing one is not a new one), nor
// subscribe with names or filter lists over their limits; each refusal
// names the limit and its flag, and the session goes on.
func TestSubscriptionLimits(t *testing.T) {
	h := startNode(t, Config{MaxSubscriptionsPerGateway: 3, MaxNameBytes: 16, MaxFilters: 2}, memory.Config{Partitions: 2})
	g, _ := h.connect("gw", "")
	sub := func(id string) *streamerv1.Subscription {
		return &streamerv1.Subscription{SubscriptionId: id, Tenant: "t", Collection: "c"}
	}
	wantRefused := func(s *streamerv1.Subscription, code streamerv1.ErrorCode, text string) {
		t.Helper()
		res := g.subscribe(s)
		if res.GetError().GetCode() != code || !strings.Contains(res.GetError().GetMessage(), text) {
			t.Fatalf("subscribe %q = %v, want %v containing %q", s.GetSubscriptionId(), res, code, text)
		}
	}
	for _, id := range []string{"s1", "s2", "s3"} {
		g.mustSubscribe(sub(id))
	}
	wantRefused(sub("s4"), streamerv1.ErrorCode_ERROR_CODE_TOO_MANY_SUBSCRIPTIONS,
		"gateway gw has 3 subscriptions, the limit is 3 (--max-subscriptions-per-gateway)")
	g.mustSubscribe(filterSub("s1", "t", "c", "a", "==", 1.0)) // a replacement
	g.send(&streamerv1.GatewayMessage{Msg: &streamerv1.GatewayMessage_Unsubscribe{Unsubscribe: &streamerv1.Unsubscribe{SubscriptionId: "s2"}}})
	g.take("SubscribeResult", func(m *streamerv1.StreamerMessage) bool { return m.GetSubscribeResult().GetUnsubscribed() })
	g.mustSubscribe(sub("s4"))

	wantRefused(sub(strings.Repeat("x", 17)), streamerv1.ErrorCode_ERROR_CODE_TOO_LARGE, "subscription_id is 17 bytes, the limit is 16 (--max-name-bytes)")
	long := sub("s5")
	long.Collection = strings.Repeat("c", 20)
	wantRefused(long, streamerv1.ErrorCode_ERROR_CODE_TOO_LARGE, "collection is 20 bytes, the limit is 16 (--max-name-bytes)")
	three := filterSub("s1", "t", "c", "a", "==", 1.0)
	ff := three.GetFilters().GetFilters()
	three.GetFilters().Filters = append(ff, ff[0], ff[0])
	wantRefused(three, streamerv1.ErrorCode_ERROR_CODE_TOO_LARGE, `subscription "s1" has 3 filters, the limit is 2 (--max-filters)`)

	// A gateway id over the limit is refused at Register.
	g2 := h.open(strings.Repeat("g", 17))
	g2.send(&streamerv1.GatewayMessage{Msg: &streamerv1.GatewayMessage_Register{Register: &streamerv1.Register{GatewayId: strings.Repeat("g", 17)}}})
	if e := g2.endError(); e.GetCode() != streamerv1.ErrorCode_ERROR_CODE_TOO_LARGE || !strings.Contains(e.GetMessage(), "Register.gateway_id is 17 bytes") {
		t.Fatalf("Register with a long gateway id: %v", e)
	}
}

// TestTenantSubscriptionLimit: one tenant's subscriptions over all gateways
// are bounded by --max-subscriptions-per-tenant; other tenants are not
// affected, and unsubscribing makes room again.
func TestTenantSubscriptionLimit(t *testing.T) {
	h := startNode(t, Config{MaxSubscriptionsPerTenant: 3}, memory.Config{Partitions: 2})
	g1, _ := h.connect("gw1", "")
	g2, _ := h.connect("gw2", "")
	sub := func(id, tenant string) *streamerv1.Subscription {
		return &streamerv1.Subscription{SubscriptionId: id, Tenant: tenant, Collection: "c"}
	}
	g1.mustSubscribe(sub("a", "busy"))
	g1.mustSubscribe(sub("b", "busy"))
	g2.mustSubscribe(sub("a", "busy"))
	res := g2.subscribe(sub("b", "busy"))
	if res.GetError().GetCode() != streamerv1.ErrorCode_ERROR_CODE_TOO_MANY_SUBSCRIPTIONS ||
		!strings.Contains(res.GetError().GetMessage(), `tenant "busy" has 3 subscriptions, the limit is 3 (--max-subscriptions-per-tenant)`) {
		t.Fatalf("fourth subscription of the tenant: %v", res)
	}
	g2.mustSubscribe(sub("b", "quiet"))
	g1.send(&streamerv1.GatewayMessage{Msg: &streamerv1.GatewayMessage_Unsubscribe{Unsubscribe: &streamerv1.Unsubscribe{SubscriptionId: "a"}}})
	g1.take("SubscribeResult", func(m *streamerv1.StreamerMessage) bool { return m.GetSubscribeResult().GetUnsubscribed() })
	g2.mustSubscribe(sub("c", "busy"))
}
