// Package redistest starts real redis-server processes for tests: each on a
// free loopback port (or a unix socket) with its own data directory under
// t.TempDir(), killed by t.Cleanup. Besides a plain server it can start a
// one-node Redis Cluster (WithCluster) and a Sentinel (StartSentinel). Fault
// tests can kill, stop and restart a server; a restart keeps the address and
// the directory, so with AOF on the data written before the kill survives.
//
// It is test infrastructure: it never skips. When redis-server is not on
// PATH the test fails and says how to install it.
package redistest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Binary is the name of the server executable looked up on PATH.
const Binary = "redis-server"

// Timing of process control.
const (
	readyTimeout = 10 * time.Second       // how long Start and Restart wait for PING
	readyPoll    = 10 * time.Millisecond  // how often they try
	stopTimeout  = 10 * time.Second       // how long Stop waits before SIGKILL
	dialTimeout  = 200 * time.Millisecond // per PING attempt
)

// Option changes how a server is started.
type Option func(*config)

type config struct {
	aof      bool
	unix     bool
	cluster  bool
	password string
	args     []string
}

// WithAOF turns the append-only file on (appendonly yes, appendfsync
// always), so that a server killed with SIGKILL and restarted keeps every
// write it acknowledged.
func WithAOF() Option { return func(c *config) { c.aof = true } }

// WithUnixSocket makes the server listen on a unix socket in its directory
// instead of a TCP port.
func WithUnixSocket() Option { return func(c *config) { c.unix = true } }

// WithCluster starts the server in cluster mode as a one-node Redis Cluster
// owning all 16384 slots, so that clients must use cluster semantics (MOVED
// redirections, no cross-slot scripts or transactions) as on a real one.
// Connect with a cluster client (go-redis ClusterClient) to Addr. Every
// start takes about 2 s: Redis waits that long (CLUSTER_WRITABLE_DELAY)
// before a restarted master serves writes.
func WithCluster() Option { return func(c *config) { c.cluster = true } }

// WithPassword protects the server with a password (requirepass, and
// masterauth for its replicas): clients must authenticate, as URL's
// user-info does. Its own calls (Do, readiness) authenticate too.
func WithPassword(pw string) Option {
	return func(c *config) {
		c.password = pw
		c.args = append(c.args, "--requirepass", pw, "--masterauth", pw)
	}
}

// WithArgs appends raw redis-server arguments, such as "--maxmemory", "10mb".
// Later arguments override earlier ones, including the defaults.
func WithArgs(args ...string) Option {
	return func(c *config) { c.args = append(c.args, args...) }
}

// Server is one redis-server process owned by a test. Its methods are safe
// for concurrent use; they fail the test (t.Fatal) when the process cannot
// be controlled, so call them from the test's goroutine.
type Server struct {
	t       testing.TB
	bin     string
	dir     string
	args    []string
	addr    string // host:port, or the socket path
	unix    bool
	cluster bool
	// password authenticates the server's own calls (WithPassword).
	password string
	// joined: a node of a multi-node cluster (StartCluster): ready waits
	// for the cluster state, and never assigns slots itself.
	joined bool

	mu   sync.Mutex
	proc *process // nil while not running
}

// process is one run of the server; done is closed when it has exited.
type process struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error // set before done is closed
}

// Start starts a redis-server with persistence off (--save "" --appendonly
// no, unless WithAOF) and returns once it answers PING. t.Cleanup kills it.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	var cfg config
	for _, o := range opts {
		o(&cfg)
	}
	s := newServer(t, cfg.unix)
	s.cluster, s.password = cfg.cluster, cfg.password
	s.args = append(s.args, "--save", "")
	if cfg.aof {
		s.args = append(s.args, "--appendonly", "yes", "--appendfsync", "always")
	} else {
		s.args = append(s.args, "--appendonly", "no")
	}
	if cfg.cluster {
		s.args = append(s.args, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
	}
	s.args = append(s.args, cfg.args...)
	s.Restart()
	return s
}

// StartSentinel starts a Redis Sentinel (redis-server --sentinel) that
// monitors master under name with quorum 1, and returns once it answers
// PING. Clients connect to its Addr with the master name (go-redis
// FailoverClient, or a URL with master_name=NAME). t.Cleanup kills it.
func StartSentinel(t testing.TB, master *Server, name string) *Server {
	t.Helper()
	if master.unix {
		t.Fatalf("redistest: a sentinel needs a TCP master, not %s", master.addr)
	}
	host, port, err := net.SplitHostPort(master.addr)
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	s := newServer(t, false)
	conf := filepath.Join(s.dir, "sentinel.conf") // Sentinel rewrites it
	line := fmt.Sprintf("sentinel monitor %s %s %s 1\n", name, host, port)
	if err := os.WriteFile(conf, []byte(line), 0o600); err != nil {
		t.Fatalf("redistest: %v", err)
	}
	s.args = append([]string{conf, "--sentinel"}, s.args...)
	s.Restart()
	return s
}

// newServer prepares a server's directory, address and common arguments,
// and registers its cleanup; the caller adds arguments and starts it.
func newServer(t testing.TB, unix bool) *Server {
	t.Helper()
	bin, err := exec.LookPath(Binary)
	if err != nil {
		t.Fatalf("redistest: %s not found on PATH (%v): install redis-server (apt-get install -y redis-server)", Binary, err)
	}
	s := &Server{t: t, bin: bin, dir: t.TempDir(), unix: unix}
	if unix {
		s.addr = filepath.Join(s.dir, "redis.sock")
		s.args = []string{"--port", "0", "--unixsocket", s.addr, "--unixsocketperm", "700"}
	} else {
		port, err := freePort()
		if err != nil {
			t.Fatalf("redistest: finding a free port: %v", err)
		}
		s.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		s.args = []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1"}
	}
	s.args = append(s.args,
		"--dir", s.dir,
		"--daemonize", "no",
		"--protected-mode", "no",
		"--logfile", "redis.log",
	)
	t.Cleanup(func() { _ = s.kill() })
	return s
}

// Addr returns the server's address: "127.0.0.1:PORT", or the socket path
// with WithUnixSocket.
func (s *Server) Addr() string { return s.addr }

// URL returns a URL for go-redis: redis://127.0.0.1:PORT, or
// unix:///path/redis.sock with WithUnixSocket.
func (s *Server) URL() string {
	if s.unix {
		return "unix://" + s.addr
	}
	if s.password != "" {
		return "redis://:" + url.QueryEscape(s.password) + "@" + s.addr
	}
	return "redis://" + s.addr
}

// Dir returns the server's working directory (AOF, log).
func (s *Server) Dir() string { return s.dir }

// Kill kills the server with SIGKILL, like a crash, and waits until it has
// exited. Killing a server that is not running does nothing.
func (s *Server) Kill() {
	s.t.Helper()
	if err := s.kill(); err != nil {
		s.t.Fatalf("redistest: kill: %v", err)
	}
}

// Pause stops the server with SIGSTOP: it keeps its connections but
// answers nothing (a replica paused so falls behind its master) until
// Resume.
func (s *Server) Pause() { s.signal(syscall.SIGSTOP) }

// Resume continues a paused server (SIGCONT).
func (s *Server) Resume() { s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig syscall.Signal) {
	s.t.Helper()
	s.mu.Lock()
	p := s.proc
	s.mu.Unlock()
	if p == nil {
		s.t.Fatalf("redistest: %v: the server is not running", sig)
	}
	if err := p.cmd.Process.Signal(sig); err != nil {
		s.t.Fatalf("redistest: %v: %v", sig, err)
	}
}

// Stop shuts the server down with SIGTERM (a clean shutdown) and waits until
// it has exited, killing it if that takes longer than 10 s.
func (s *Server) Stop() {
	s.t.Helper()
	s.mu.Lock()
	p := s.proc
	s.proc = nil
	s.mu.Unlock()
	if p == nil {
		return
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		s.t.Fatalf("redistest: stop: %v", err)
	}
	select {
	case <-p.done:
	case <-time.After(stopTimeout):
		_ = p.cmd.Process.Kill()
		<-p.done
		s.t.Fatalf("redistest: stop: redis-server did not exit within %v of SIGTERM", stopTimeout)
	}
}

// Restart starts the server again on the same address and directory after
// Kill or Stop (with WithAOF, the data survives), and returns once it
// answers PING (and, WithCluster, once the cluster state is ok). A running
// server is killed first.
func (s *Server) Restart() {
	s.t.Helper()
	if err := s.kill(); err != nil {
		s.t.Fatalf("redistest: restart: %v", err)
	}
	if s.unix {
		_ = os.Remove(s.addr) // a killed server leaves its socket file behind
	}
	cmd := exec.Command(s.bin, s.args...)
	cmd.Dir = s.dir
	var out bytes.Buffer // early errors (bad arguments) go to stdout
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("redistest: starting %s: %v", s.bin, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	s.mu.Lock()
	s.proc = p
	s.mu.Unlock()

	deadline := time.Now().Add(readyTimeout)
	for {
		err := s.ready()
		if err == nil {
			return
		}
		select {
		case <-p.done:
			s.t.Fatalf("redistest: redis-server exited at start (%v): %s%s", p.err, out.String(), s.logTail())
		case <-time.After(readyPoll):
		}
		if time.Now().After(deadline) {
			_ = s.kill()
			s.t.Fatalf("redistest: redis-server at %s did not answer PING within %v: %v%s", s.addr, readyTimeout, err, s.logTail())
		}
	}
}

// kill sends SIGKILL to a running server and waits for it to exit.
func (s *Server) kill() error {
	s.mu.Lock()
	p := s.proc
	s.proc = nil
	s.mu.Unlock()
	if p == nil {
		return nil
	}
	if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	<-p.done
	return nil
}

// ready reports whether the server answers PING and, in cluster mode,
// serves all slots (assigning them all to itself at the first start).
func (s *Server) ready() error {
	if reply, err := s.command("PING"); err != nil || reply != "PONG" {
		return fmt.Errorf("PING answered %q, %v", reply, err)
	}
	if !s.cluster && !s.joined {
		return nil
	}
	info, err := s.command("CLUSTER", "INFO")
	if err != nil {
		return err
	}
	if strings.Contains(info, "cluster_state:ok") {
		return nil
	}
	if s.cluster && strings.Contains(info, "cluster_slots_assigned:0\r\n") {
		if reply, err := s.command("CLUSTER", "ADDSLOTSRANGE", "0", "16383"); err != nil || reply != "OK" {
			return fmt.Errorf("CLUSTER ADDSLOTSRANGE answered %q, %v", reply, err)
		}
	}
	return errors.New("cluster state is not ok yet")
}

// BlockedClients returns how many clients the server has blocked in a
// command (INFO clients blocked_clients): tests wait for it before they
// wake, cancel or cut a blocked read.
func (s *Server) BlockedClients() (int, error) {
	info, err := s.command("INFO", "clients")
	if err != nil {
		return 0, err
	}
	_, rest, ok := strings.Cut(info, "blocked_clients:")
	if !ok {
		return 0, fmt.Errorf("redistest: no blocked_clients in INFO clients: %q", info)
	}
	return strconv.Atoi(rest[:max(strings.IndexAny(rest, "\r\n"), 0)])
}

// command sends one command on a new connection and returns its reply,
// which must be a simple string, an integer or a bulk string; an error
// reply is returned as an error.
func (s *Server) command(args ...string) (string, error) {
	network := "tcp"
	if s.unix {
		network = "unix"
	}
	conn, err := net.DialTimeout(network, s.addr, dialTimeout)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(dialTimeout)); err != nil {
		return "", err
	}
	rd := bufio.NewReader(conn)
	if s.password != "" {
		if _, err := roundTrip(conn, rd, "AUTH", s.password); err != nil {
			return "", fmt.Errorf("AUTH: %w", err)
		}
	}
	return roundTrip(conn, rd, args...)
}

// roundTrip sends one command on conn and reads its reply from rd (see
// command).
func roundTrip(conn net.Conn, rd *bufio.Reader, args ...string) (string, error) {
	req := fmt.Appendf(nil, "*%d\r\n", len(args))
	for _, a := range args {
		req = fmt.Appendf(req, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := conn.Write(req); err != nil {
		return "", err
	}
	line, err := rd.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimSuffix(line, "\r\n")
	switch {
	case line == "":
		return "", errors.New("empty reply")
	case line[0] == '+' || line[0] == ':':
		return line[1:], nil
	case line[0] == '-':
		return "", errors.New(line[1:])
	case line[0] == '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return "", fmt.Errorf("unexpected reply %q", line)
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(rd, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	default:
		return "", fmt.Errorf("unexpected reply %q", line)
	}
}

// logTail returns the end of the server's log file, for failure messages.
func (s *Server) logTail() string {
	b, err := os.ReadFile(filepath.Join(s.dir, "redis.log"))
	if err != nil || len(b) == 0 {
		return ""
	}
	const max = 2000
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return "\nredis.log:\n" + string(b)
}

// freePort asks the kernel for an unused loopback TCP port.
func freePort() (int, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer lis.Close()
	return lis.Addr().(*net.TCPAddr).Port, nil
}
