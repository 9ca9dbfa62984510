package redistest

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// do sends one inline command and returns the first reply line.
func do(t *testing.T, s *Server, cmd string) (string, error) {
	t.Helper()
	network := "tcp"
	if strings.HasPrefix(s.URL(), "unix://") {
		network = "unix"
	}
	conn, err := net.DialTimeout(network, s.Addr(), time.Second)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := fmt.Fprintf(conn, "%s\r\n", cmd); err != nil {
		return "", err
	}
	rd := bufio.NewReader(conn)
	line, err := rd.ReadString('\n')
	if err != nil {
		return "", err
	}
	if strings.HasPrefix(line, "$") && line != "$-1\r\n" {
		line, err = rd.ReadString('\n')
	}
	return strings.TrimRight(line, "\r\n"), err
}

func mustDo(t *testing.T, s *Server, cmd, want string) {
	t.Helper()
	got, err := do(t, s, cmd)
	if err != nil || got != want {
		t.Fatalf("%s = %q, %v; want %q", cmd, got, err, want)
	}
}

func TestServer(t *testing.T) {
	tests := []struct {
		name     string
		opts     []Option
		survives bool // whether data survives Kill + Restart
	}{
		{"tcp without persistence", nil, false},
		{"tcp with AOF", []Option{WithAOF()}, true},
		{"unix socket with AOF", []Option{WithUnixSocket(), WithAOF()}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := Start(t, tt.opts...)
			mustDo(t, s, "SET k v", "+OK")
			s.Kill()
			if _, err := do(t, s, "PING"); err == nil {
				t.Fatalf("PING answered after Kill")
			}
			s.Restart()
			want := "$-1"
			if tt.survives {
				want = "v"
			}
			mustDo(t, s, "GET k", want)
			s.Stop()
			if _, err := do(t, s, "PING"); err == nil {
				t.Fatalf("PING answered after Stop")
			}
			s.Stop() // no-op
			s.Restart()
			mustDo(t, s, "PING", "+PONG")
		})
	}
}

func TestCluster(t *testing.T) {
	s := Start(t, WithCluster()) // cluster mode costs ~2s per start (CLUSTER_WRITABLE_DELAY)
	mustDo(t, s, "SET k v", "+OK")
	got, err := s.command("CLUSTER", "INFO")
	if err != nil || !strings.Contains(got, "cluster_slots_assigned:16384") {
		t.Fatalf("CLUSTER INFO = %q, %v; want all slots assigned", got, err)
	}
}

func TestSentinel(t *testing.T) {
	master := Start(t)
	s := StartSentinel(t, master, "mymaster")
	got, err := do(t, s, "SENTINEL CKQUORUM mymaster")
	if err != nil || !strings.HasPrefix(got, "+OK") {
		t.Fatalf("SENTINEL CKQUORUM = %q, %v; want +OK", got, err)
	}
}

func TestServersAreIndependent(t *testing.T) {
	a, b := Start(t), Start(t)
	if a.Addr() == b.Addr() || a.Dir() == b.Dir() {
		t.Fatalf("two servers share %s / %s", a.Addr(), a.Dir())
	}
	mustDo(t, a, "SET k a", "+OK")
	mustDo(t, b, "GET k", "$-1")
	if !strings.HasPrefix(a.URL(), "redis://127.0.0.1:") {
		t.Errorf("URL = %q", a.URL())
	}
}

// TestStartCluster: three masters with a replica each, every slot served,
// keys of different hash tags on different masters.
func TestStartCluster(t *testing.T) {
	c := StartCluster(t, 3, 1)
	if len(c.Nodes) != 6 || len(c.Masters()) != 3 {
		t.Fatalf("%d nodes, %d masters; want 6 and 3", len(c.Nodes), len(c.Masters()))
	}
	info, err := c.Nodes[0].command("CLUSTER", "INFO")
	if err != nil || !strings.Contains(info, "cluster_slots_assigned:16384") || !strings.Contains(info, "cluster_known_nodes:6") {
		t.Fatalf("CLUSTER INFO: %v %q", err, info)
	}
	owners := map[string]bool{}
	for _, key := range []string{"{a}", "{b}", "{c}", "{d}", "{e}", "{f}", "{g}", "{h}"} {
		slot, err := c.Nodes[0].command("CLUSTER", "KEYSLOT", key)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range c.Masters() {
			if n, err := m.command("CLUSTER", "COUNTKEYSINSLOT", slot); err == nil && n == "0" {
				if _, err := m.command("GET", key); err == nil || !strings.Contains(err.Error(), "MOVED") {
					owners[m.Addr()] = true
				}
			}
		}
	}
	if len(owners) < 2 {
		t.Fatalf("keys of 8 hash tags are served by %d master(s)", len(owners))
	}
}
