package gateway

import (
	"bytes"
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

// countingConn records each Write reaching the network.
type countingConn struct {
	net.Conn
	writes   [][]byte
	deadline time.Time
	fail     error
}

func (c *countingConn) Write(p []byte) (int, error) {
	if c.fail != nil {
		return 0, c.fail
	}
	c.writes = append(c.writes, bytes.Clone(p))
	return len(p), nil
}

func (c *countingConn) SetWriteDeadline(t time.Time) error {
	c.deadline = t
	return nil
}

func TestCorkConnCoalescesWrites(t *testing.T) {
	under := &countingConn{}
	c := &corkConn{Conn: under}
	if _, err := c.Write([]byte("a")); err != nil || len(under.writes) != 1 {
		t.Fatalf("uncorked write: %v, %d writes", err, len(under.writes))
	}
	dl := time.Now().Add(time.Second)
	c.cork(dl)
	if !under.deadline.Equal(dl) {
		t.Fatalf("deadline %v, want %v", under.deadline, dl)
	}
	for _, s := range []string{"b", "c", "d"} {
		if n, err := c.Write([]byte(s)); err != nil || n != 1 {
			t.Fatalf("corked write: %d, %v", n, err)
		}
	}
	if len(under.writes) != 1 {
		t.Fatalf("corked writes reached the network: %q", under.writes)
	}
	if err := c.uncork(); err != nil {
		t.Fatal(err)
	}
	if len(under.writes) != 2 || string(under.writes[1]) != "bcd" || !under.deadline.IsZero() {
		t.Fatalf("after uncork: writes %q, deadline %v; want one write of bcd and no deadline", under.writes, under.deadline)
	}

	// A corked connection holds at most corkLimit bytes: beyond, it writes early.
	c.cork(dl)
	big := strings.Repeat("x", corkLimit)
	_, _ = c.Write([]byte(big))
	if len(under.writes) != 3 || len(under.writes[2]) != corkLimit {
		t.Fatalf("%d writes after a corkLimit write, want an early one", len(under.writes))
	}
	_, _ = c.Write([]byte("y"))
	if err := c.uncork(); err != nil || string(under.writes[3]) != "y" {
		t.Fatalf("uncork: %v, writes %d", err, len(under.writes))
	}

	// An early write that fails fails the rest of the corked writes, and uncork.
	under.fail = errors.New("broken pipe")
	c.cork(dl)
	_, _ = c.Write([]byte(big))
	if _, err := c.Write([]byte("z")); err == nil {
		t.Fatal("a write after a failed early write succeeded")
	}
	if err := c.uncork(); err == nil || !strings.Contains(err.Error(), "broken pipe") {
		t.Fatalf("uncork = %v, want the early write's error", err)
	}
}
