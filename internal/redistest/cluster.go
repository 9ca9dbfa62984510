package redistest

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Cluster is a Redis Cluster on loopback ports: masters, each with its
// replicas, joined by redis-cli --cluster create, as operators build one.
// Keys live on different masters, clients follow MOVED and ASK, and a
// master that dies is replaced by its replica (cluster-node-timeout 2 s).
type Cluster struct {
	// Nodes are the servers, masters first (as redis-cli assigned them at
	// creation; a failover changes the roles).
	Nodes []*Server
}

// clusterNodeTimeout is how long the cluster waits for a silent master
// before a replica takes over.
const clusterNodeTimeout = "2000"

// StartCluster starts masters × (1 + replicas) servers in cluster mode,
// joins them (redis-cli --cluster create --cluster-replicas replicas) and
// returns once every node reports cluster_state:ok. t.Cleanup kills them.
// Of the options, WithPassword and WithArgs apply.
func StartCluster(t testing.TB, masters, replicas int, opts ...Option) *Cluster {
	t.Helper()
	var cfg config
	for _, o := range opts {
		o(&cfg)
	}
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		t.Fatalf("redistest: redis-cli not found on PATH (%v): install redis-tools (apt-get install -y redis-server brings it)", err)
	}
	c := &Cluster{}
	args := []string{"--cluster", "create"}
	for range masters * (1 + replicas) {
		s := newServer(t, false)
		s.password = cfg.password
		s.args = append(s.args, "--save", "", "--appendonly", "no",
			"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", clusterNodeTimeout)
		s.args = append(s.args, cfg.args...)
		s.Restart() // answers PING; not in a cluster yet
		s.joined = true
		c.Nodes = append(c.Nodes, s)
		args = append(args, s.Addr())
	}
	args = append(args, "--cluster-replicas", strconv.Itoa(replicas), "--cluster-yes")
	if cfg.password != "" {
		args = append(args, "-a", cfg.password, "--no-auth-warning")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redistest: redis-cli --cluster create: %v\n%s", err, out)
	}
	deadline := time.Now().Add(60 * time.Second)
	for _, s := range c.Nodes {
		for {
			err := s.ready()
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("redistest: cluster node %s: %v%s", s.Addr(), err, s.logTail())
			}
			time.Sleep(readyPoll) // polling the node's CLUSTER INFO
		}
	}
	// cluster_state:ok comes before the replicas have synced with their
	// masters; a replica that never synced refuses to fail over (its data
	// would be too old), so a master killed now would never be replaced.
	for {
		synced, err := c.replicasSynced(masters)
		if synced {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("redistest: cluster replicas not synced with their masters: %v", err)
		}
		time.Sleep(readyPoll)
	}
	return c
}

// replicasSynced reports whether the cluster has masters masters and every
// other node is a replica whose link to its master is up.
func (c *Cluster) replicasSynced(masters int) (bool, error) {
	n := 0
	for _, s := range c.Nodes {
		info, err := s.command("INFO", "replication")
		switch {
		case err != nil:
			return false, err
		case strings.Contains(info, "role:master"):
			n++
		case !strings.Contains(info, "master_link_status:up"):
			return false, fmt.Errorf("replica %s: link to its master not up yet", s.Addr())
		}
	}
	if n != masters {
		return false, fmt.Errorf("%d masters, want %d", n, masters)
	}
	return true, nil
}

// Addrs returns every node's address, for a cluster client's seeds.
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.Nodes))
	for i, s := range c.Nodes {
		out[i] = s.Addr()
	}
	return out
}

// Masters returns the nodes that are masters now.
func (c *Cluster) Masters() []*Server {
	var out []*Server
	for _, s := range c.Nodes {
		if info, err := s.command("INFO", "replication"); err == nil && strings.Contains(info, "role:master") {
			out = append(out, s)
		}
	}
	return out
}

// ReplicaOf returns a replica of master m, or nil.
func (c *Cluster) ReplicaOf(m *Server) *Server {
	_, port, _ := strings.Cut(m.Addr(), ":")
	for _, s := range c.Nodes {
		info, err := s.command("INFO", "replication")
		if err == nil && strings.Contains(info, "role:slave") && strings.Contains(info, "master_port:"+port+"\r\n") {
			return s
		}
	}
	return nil
}

// Do sends one command to the server (see command for the replies it
// takes).
func (s *Server) Do(args ...string) (string, error) { return s.command(args...) }
