package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/streamerd/streamer/internal/testbin"
	"github.com/streamerd/streamer/internal/testwait"

	"github.com/streamerd/streamer/client"
	"github.com/streamerd/streamer/internal/redistest"
	"github.com/streamerd/streamer/store"
	"github.com/streamerd/streamer/store/redis"
)

// This file runs a pool of streamer nodes the way it runs in production:
// each node is a separate OS process of the real binary (`streamer serve
// --redis`), sharing one real redis-server that the test starts. Gateways and
// producers are the client library, in the test process, reaching the nodes
// through a failover dialer (the client library takes one address, like a
// load balancer's).

// Timing of the pool under test: short leases and gateway TTLs so that
// failover happens within a few seconds.
const (
	poolLeaseTTL   = 2 * time.Second
	poolGatewayTTL = 3 * time.Second
	poolPartitions = 16
	// poolWait bounds every wait for a condition.
	poolWait = 60 * time.Second
)

// pool is a Redis server and the streamer node processes sharing it.
type pool struct {
	t       testing.TB
	exe     string
	redis   *redistest.Server  // nil on a cluster
	cluster *redistest.Cluster // set by newClusterPool
	store   *store.Backend     // the test's own view of Redis
	args    []string           // flags every node gets
	dir     string

	mu    sync.Mutex
	nodes []*nodeProc
	next  atomic.Uint64 // round-robin start of the dialer
}

// newPool starts redis-server (with opts) and returns a pool with no node
// yet. Every node gets args after the pool's defaults.
func newPool(t testing.TB, opts []redistest.Option, args ...string) *pool {
	t.Helper()
	srv := redistest.Start(t, opts...)
	p := newPoolOn(t, srv.URL(), args...)
	p.redis = srv
	return p
}

// newClusterPool starts a Redis Cluster of three masters with a replica
// each and returns a pool on it with no node yet.
func newClusterPool(t testing.TB, args ...string) *pool {
	t.Helper()
	c := redistest.StartCluster(t, 3, 1)
	p := newPoolOn(t, "redis://"+c.Nodes[0].Addr()+"?cluster=true", args...)
	p.cluster = c
	return p
}

// newPoolOn returns a pool of nodes on the Redis at url.
func newPoolOn(t testing.TB, url string, args ...string) *pool {
	t.Helper()
	p := &pool{t: t, exe: testbin.Streamer(t), dir: t.TempDir()}
	p.args = append([]string{
		"--redis", url, "--partitions", strconv.Itoa(poolPartitions),
		"--lease-ttl", poolLeaseTTL.String(), "--gateway-ttl", poolGatewayTTL.String(),
		"--probe-interval", "200ms", "--log-format", "json",
	}, args...)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var err error
	if p.store, err = redis.New(ctx, redis.Config{URL: url, Partitions: poolPartitions}); err != nil {
		t.Fatalf("observer backend: %v", err)
	}
	t.Cleanup(func() {
		p.mu.Lock()
		nodes := p.nodes
		p.mu.Unlock()
		for _, n := range nodes {
			n.kill()
		}
		if t.Failed() {
			for _, n := range nodes {
				t.Logf("--- last log lines of node %s:\n%s", n.id, n.tail(40))
			}
		}
		_ = p.store.Close()
	})
	return p
}

// nodeProc is one `streamer serve` process.
type nodeProc struct {
	id       string
	cmd      *exec.Cmd
	grpcAddr string
	httpAddr string
	logPath  string

	down   atomic.Bool   // killed or stopping: the dialer skips it
	exited chan struct{} // closed once the process has exited
	err    error         // its exit status, set before exited is closed
}

// start starts a node with the pool's flags plus extra, and waits until it
// listens and answers /readyz with 200.
func (p *pool) start(extra ...string) *nodeProc {
	p.t.Helper()
	p.mu.Lock()
	id := fmt.Sprintf("node%d", len(p.nodes)+1)
	p.mu.Unlock()
	args := append([]string{"serve", "--grpc", "127.0.0.1:0", "--http", "127.0.0.1:0", "--node-id", id}, p.args...)
	args = append(args, extra...)
	n := &nodeProc{id: id, cmd: exec.Command(p.exe, args...), logPath: filepath.Join(p.dir, id+".log"), exited: make(chan struct{})}
	logFile, err := os.Create(n.logPath)
	if err != nil {
		p.t.Fatal(err)
	}
	stderr, err := n.cmd.StderrPipe()
	if err != nil {
		p.t.Fatal(err)
	}
	if err := n.cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	listening := make(chan [2]string, 1)
	copied := make(chan struct{})
	go func() { // ends when the process closes stderr (exits)
		defer close(copied)
		defer logFile.Close()
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Bytes()
			_, _ = logFile.Write(append(line, '\n'))
			var rec struct {
				Msg  string `json:"msg"`
				GRPC string `json:"grpc_addr"`
				HTTP string `json:"http_addr"`
			}
			if json.Unmarshal(line, &rec) == nil && rec.Msg == "listening" {
				listening <- [2]string{rec.GRPC, rec.HTTP}
			}
		}
	}()
	go func() {
		<-copied
		n.err = n.cmd.Wait()
		close(n.exited)
	}()
	select {
	case addrs := <-listening:
		n.grpcAddr, n.httpAddr = addrs[0], addrs[1]
	case <-n.exited:
		p.t.Fatalf("node %s exited at start: %v\n%s", id, n.err, n.tail(30))
	case <-time.After(30 * time.Second):
		n.kill()
		p.t.Fatalf("node %s did not log its addresses\n%s", id, n.tail(30))
	}
	p.mu.Lock()
	p.nodes = append(p.nodes, n)
	p.mu.Unlock()
	waitUntil(p.t, "node "+id+" ready", func() bool { return n.ready() })
	return n
}

// ready reports whether /readyz answers 200.
func (n *nodeProc) ready() bool {
	code, _, err := n.get("/readyz")
	return err == nil && code == http.StatusOK
}

// get fetches an admin path.
func (n *nodeProc) get(path string) (int, string, error) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + n.httpAddr + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// metric returns the sum of every series of the named metric (0 when the
// node does not answer or has no such series).
func (n *nodeProc) metric(name string) float64 {
	_, body, err := n.get("/metrics")
	if err != nil {
		return 0
	}
	total := 0.0
	for line := range strings.Lines(body) {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, name) || (len(line) > len(name) && line[len(name)] != ' ' && line[len(name)] != '{') {
			continue
		}
		if v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64); err == nil {
			total += v
		}
	}
	return total
}

// kill kills the process with SIGKILL (a crash) and waits for it.
func (n *nodeProc) kill() {
	n.down.Store(true)
	_ = n.cmd.Process.Signal(syscall.SIGKILL)
	<-n.exited
}

// signal sends sig to the process (SIGSTOP, SIGCONT).
func (n *nodeProc) signal(sig syscall.Signal) {
	_ = n.cmd.Process.Signal(sig)
}

// stop shuts the node down with SIGTERM and waits; it fails the test unless
// the node exits cleanly within 20s.
func (n *nodeProc) stop(t testing.TB) {
	t.Helper()
	n.down.Store(true)
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.exited:
		if n.err != nil {
			t.Fatalf("node %s exited with %v after SIGTERM\n%s", n.id, n.err, n.tail(30))
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("node %s still running 20s after SIGTERM\n%s", n.id, n.tail(30))
	}
}

// tail returns the last lines of the node's log.
func (n *nodeProc) tail(lines int) string {
	b, _ := os.ReadFile(n.logPath)
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(all[max(0, len(all)-lines):], "\n")
}

// live returns the nodes that are up.
func (p *pool) live() []*nodeProc {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []*nodeProc
	for _, n := range p.nodes {
		if !n.down.Load() {
			out = append(out, n)
		}
	}
	return out
}

// dialer returns a client option connecting to the pool like a failover
// load balancer: to prefer while it is up, otherwise to the live nodes in
// turn. Give Dial and NewPublisher the address "pool".
func (p *pool) dialer(prefer *nodeProc) client.Option {
	return client.WithDialer(p.dial(prefer))
}

// dial is dialer's dial function.
func (p *pool) dial(prefer *nodeProc) func(ctx context.Context, _ string) (net.Conn, error) {
	return func(ctx context.Context, _ string) (net.Conn, error) {
		live := p.live()
		if len(live) == 0 {
			return nil, errors.New("pool: no live node")
		}
		start := int(p.next.Add(1))
		order := make([]*nodeProc, 0, len(live))
		if prefer != nil && !prefer.down.Load() {
			order = append(order, prefer)
		}
		for i := range live {
			if n := live[(start+i)%len(live)]; n != prefer {
				order = append(order, n)
			}
		}
		var d net.Dialer
		var lastErr error
		for _, n := range order {
			conn, err := d.DialContext(ctx, "tcp", n.grpcAddr)
			if err == nil {
				return conn, nil
			}
			lastErr = err
		}
		return nil, lastErr
	}
}

// owners returns the lease holder of every partition ("" when free).
func (p *pool) owners() []string {
	out := make([]string, poolPartitions)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for i := range out {
		out[i], _ = p.store.Leases.Owner(ctx, i)
	}
	return out
}

// shares counts the partitions each node holds.
func (p *pool) shares() map[string]int {
	m := map[string]int{}
	for _, o := range p.owners() {
		m[o]++
	}
	return m
}

// balanced reports whether every partition is held by the live nodes, each
// holding at least one and at most its fair share ceil(P / live nodes) (so
// 6+6+4 is balanced for 16 partitions over 3 nodes).
func (p *pool) balanced() bool {
	live := p.live()
	share := (poolPartitions + len(live) - 1) / len(live)
	s := p.shares()
	if s[""] > 0 {
		return false
	}
	total := 0
	for _, n := range live {
		if s[n.id] > share || s[n.id] == 0 {
			return false
		}
		total += s[n.id]
	}
	return total == poolPartitions
}

// waitUntil polls cond until it holds, failing the test after poolWait.
func waitUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	if f := testwait.Until(poolWait, func() (bool, any) { return cond(), nil }); f != nil {
		t.Fatalf("timed out after %v waiting for %s", poolWait, what)
	}
}

// registrations records the client library's "client: registered" log
// records: which node each gateway's sessions registered with, and whether
// they resumed from their cursor.
type registrations struct {
	mu   sync.Mutex
	regs []registration
}

type registration struct {
	gateway, node string
	resumed       bool
	at            time.Time
}

// handler returns a slog handler feeding r.
func (r *registrations) handler() slog.Handler { return &regHandler{r: r} }

// since returns the registrations of gateway after t.
func (r *registrations) since(gateway string, t time.Time) []registration {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []registration
	for _, g := range r.regs {
		if g.gateway == gateway && g.at.After(t) {
			out = append(out, g)
		}
	}
	return out
}

type regHandler struct {
	r     *registrations
	attrs []slog.Attr
}

func (h *regHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }

func (h *regHandler) Handle(_ context.Context, rec slog.Record) error {
	if rec.Message != "client: registered" {
		return nil
	}
	g := registration{at: rec.Time}
	visit := func(a slog.Attr) bool {
		switch a.Key {
		case "gateway":
			g.gateway = a.Value.String()
		case "node":
			g.node = a.Value.String()
		case "resumed":
			g.resumed = a.Value.Bool()
		}
		return true
	}
	for _, a := range h.attrs {
		visit(a)
	}
	rec.Attrs(visit)
	h.r.mu.Lock()
	h.r.regs = append(h.r.regs, g)
	h.r.mu.Unlock()
	return nil
}

func (h *regHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &regHandler{r: h.r, attrs: append(append([]slog.Attr{}, h.attrs...), as...)}
}

func (h *regHandler) WithGroup(string) slog.Handler { return h }
