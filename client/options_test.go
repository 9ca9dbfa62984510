package client

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"
)

func TestOptionsRejectBadValues(t *testing.T) {
	for _, tc := range []struct {
		name string
		opt  Option
	}{
		{"empty token", WithToken("")},
		{"token with newline", WithToken("a\nb")},
		{"empty gateway id", WithGatewayID("")},
		{"nil credentials", WithTransportCredentials(nil)},
		{"nil dialer", WithDialer(nil)},
		{"zero backoff min", WithBackoff(0, time.Second)},
		{"backoff max below min", WithBackoff(time.Second, time.Millisecond)},
		{"zero heartbeat", WithHeartbeatInterval(0)},
		{"zero dedup size", WithDedupSize(0)},
		{"negative buffer", WithDeliveryBuffer(-1)},
		{"nil logger", WithLogger(nil)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := newConfig([]Option{tc.opt}); err == nil || !strings.HasPrefix(err.Error(), "client: ") {
				t.Errorf("err = %v, want a client: error", err)
			}
			if _, err := Dial(context.Background(), "localhost:1", tc.opt); err == nil {
				t.Error("Dial accepted the bad option")
			}
			if _, err := NewPublisher("localhost:1", tc.opt); err == nil {
				t.Error("NewPublisher accepted the bad option")
			}
		})
	}
}

func TestOptionDefaults(t *testing.T) {
	a, err := newConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := newConfig(nil)
	if !strings.HasPrefix(a.gatewayID, "gw-") || a.gatewayID == b.gatewayID {
		t.Errorf("gateway ids %q, %q: want random gw-… ids", a.gatewayID, b.gatewayID)
	}
	if a.dedupSize != DefaultDedupSize || a.buffer != DefaultDeliveryBuffer || a.heartbeat != 0 ||
		a.backoff != (backoff{DefaultBackoffMin, DefaultBackoffMax}) {
		t.Errorf("defaults: %+v", a)
	}
	c, err := newConfig([]Option{WithDeliveryBuffer(0), WithDedupSize(1), WithGatewayID("g"),
		WithDialer(func(context.Context, string) (net.Conn, error) { return nil, nil })})
	if err != nil || c.buffer != 0 || c.dedupSize != 1 || c.gatewayID != "g" || c.dialer == nil {
		t.Errorf("options not applied: %+v, %v", c, err)
	}
}

func TestIsLocal(t *testing.T) {
	for addr, want := range map[string]bool{
		"localhost:7070":    true,
		"LOCALHOST:7070":    true,
		"127.0.0.1:7070":    true,
		"127.3.2.1:1":       true,
		"[::1]:7070":        true,
		":7070":             true,
		"unix:///tmp/s":     true,
		"10.0.0.1:7070":     false,
		"streamer:7070":     false,
		"dns:///x:7070":     false,
		"example.com":       false,
		"[2001:db8::1]:443": false,
	} {
		if got := isLocal(addr); got != want {
			t.Errorf("isLocal(%q) = %v, want %v", addr, got, want)
		}
	}
}
