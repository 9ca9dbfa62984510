package service

import (
	"slices"
	"strings"
	"testing"
	"time"

	streamerv1 "github.com/streamerd/streamer/proto/streamer/v1"
	"github.com/streamerd/streamer/store/memory"
)

// TestRunawayCELEndsItsSubscriptions: a CEL expression that passes the
// worst-case check but runs over the cost limit on the documents it meets
// is ended after match.SuspendAfter such events in a row: its gateway gets
// the notice (Delivery.ended, ERROR_CODE_COST_LIMIT) after the matches of
// the event that ended it, the subscription is gone from the store, the
// over-limit evaluations are counted per tenant, and the gateway's other
// subscriptions and other tenants go on.
func TestRunawayCELEndsItsSubscriptions(t *testing.T) {
	ft := newFakeTime(t)
	h := startNode(t, Config{Clock: ft, GatewayTTL: time.Hour, LeaseTTL: time.Hour}, memory.Config{Partitions: 1, Clock: ft})
	g, _ := h.connect("gw", "")
	const runaway = `doc.s + doc.s + doc.s + doc.s + doc.s != "" || doc.small == 1` // costs 140,000 on 100 kB: over the default limit
	cel := func(id, tenant, expr string) *streamerv1.Subscription {
		return &streamerv1.Subscription{SubscriptionId: id, Tenant: tenant, Collection: "c", Criterion: &streamerv1.Subscription_Cel{Cel: expr}}
	}
	g.mustSubscribe(cel("bad", "abuser", runaway))
	g.mustSubscribe(cel("cheap", "abuser", "doc.small == 1"))
	g.mustSubscribe(cel("other", "good", runaway))

	big := `{"s":"` + strings.Repeat("x", 100_000) + `","small":1}`
	for i := range 3 {
		h.publish(event("big"+string(rune('0'+i)), "abuser", "c", "d", opUpdate, big, ""))
	}
	h.publish(event("small", "abuser", "c", "d", opUpdate, `{"s":"x","small":1}`, ""))
	h.publish(event("good", "good", "c", "d", opUpdate, `{"s":"x","small":1}`, ""))

	var got []string
	var ended *streamerv1.SubscriptionEnded
	for ended == nil || !strings.Contains(strings.Join(got, " "), "good:") {
		d := g.delivery()
		got = append(got, summary(d.GetMatches())...)
		if len(d.GetEnded()) > 0 {
			if ended != nil || len(d.GetEnded()) != 1 {
				t.Fatalf("ended twice: %v then %v", ended, d.GetEnded())
			}
			ended = d.GetEnded()[0]
			got = append(got, "ENDED:"+ended.GetSubscriptionId())
		}
	}
	// The notice comes after the matches of the event that ended the
	// subscription (in the same read batch, after all of them); the
	// subscription matched none of the three.
	ix := slices.Index(got, "ENDED:bad")
	want := []string{"big0:UPDATE:cheap", "big1:UPDATE:cheap", "big2:UPDATE:cheap", "small:UPDATE:cheap", "good:UPDATE:other"}
	if ix < 3 || !slices.Equal(slices.Delete(slices.Clone(got), ix, ix+1), want) {
		t.Fatalf("deliveries:\n got %q\nwant %q with ENDED:bad after big2", got, want)
	}
	if e := ended.GetError(); e.GetCode() != streamerv1.ErrorCode_ERROR_CODE_COST_LIMIT ||
		!strings.Contains(e.GetMessage(), `subscription "bad" ended: its CEL expression ran over the cost limit of one evaluation (100000, --cel-cost-limit) on 3 events in a row`) ||
		!strings.Contains(e.GetMessage(), "it is refused in this collection for 1m0s") {
		t.Fatalf("ended error = %v", e)
	}
	if _, found, err := h.backend.Subscriptions.Get(h.ctx(), "gw", "bad"); err != nil || found {
		t.Fatalf("the ended subscription is still stored: found=%v err=%v", found, err)
	}
	if _, found, _ := h.backend.Subscriptions.Get(h.ctx(), "gw", "cheap"); !found {
		t.Fatal("the gateway's other subscription was removed")
	}
	if n := h.labelledValue("streamer_cel_over_limit_total", "tenant", "abuser"); n != 3 {
		t.Errorf("over-limit evaluations of the abuser = %v, want 3", n)
	}
	if n := h.labelledValue("streamer_cel_ended_subscriptions_total", "tenant", "abuser"); n != 1 {
		t.Errorf("ended subscriptions of the abuser = %v, want 1", n)
	}
	if n := h.labelledValue("streamer_cel_over_limit_total", "tenant", "good"); n != 0 {
		t.Errorf("over-limit evaluations of the good tenant = %v, want 0", n)
	}
	// Subscribing the same expression again is refused for a while.
	res := g.subscribe(cel("bad", "abuser", runaway))
	if e := res.GetError(); e.GetCode() != streamerv1.ErrorCode_ERROR_CODE_COST_LIMIT || !strings.Contains(e.GetMessage(), "refused there for 1m0s more") {
		t.Fatalf("subscribing again at once: %v, want ERROR_CODE_COST_LIMIT with the cooldown", res)
	}
	// A subscription to it that another node accepted is ended unevaluated.
	if err := h.node.appendControl(h.ctx(), 0, &streamerv1.LogEntry{Entry: &streamerv1.LogEntry_SubscriptionAdded{
		SubscriptionAdded: &streamerv1.SubscriptionAdded{GatewayId: "gw", Subscription: cel("elsewhere", "abuser", runaway)}}}); err != nil {
		t.Fatal(err)
	}
	d := g.take("the ended notice", func(m *streamerv1.StreamerMessage) bool { return len(m.GetDelivery().GetEnded()) > 0 }).GetDelivery()
	if e := d.GetEnded()[0]; e.GetSubscriptionId() != "elsewhere" || e.GetError().GetCode() != streamerv1.ErrorCode_ERROR_CODE_COST_LIMIT ||
		!strings.Contains(e.GetError().GetMessage(), "it is refused for 1m0s more") {
		t.Fatalf("ended %v", e)
	}
	if n := h.labelledValue("streamer_cel_over_limit_total", "tenant", "abuser"); n != 3 {
		t.Errorf("over-limit evaluations of the abuser = %v, want still 3", n)
	}
	// After the cooldown, subscribing again starts over.
	ft.step(costCooldown)
	g.mustSubscribe(cel("bad", "abuser", runaway))
	h.publish(event("again", "abuser", "c", "d", opUpdate, `{"s":"x","small":1}`, ""))
	if got := summary(g.matchesUntil("again")); strings.Join(got, " ") != "again:UPDATE:bad,cheap" {
		t.Fatalf("after the cooldown: %q", got)
	}
}
