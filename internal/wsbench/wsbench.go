// Package wsbench measures what users meet: events published to a streamer
// node, delivered by the reference gateway to WebSocket clients on loopback.
// The node and the gateway run as child processes (the streamer binary), so
// that their CPU time and peak memory are read apart from the clients'.
package wsbench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/streamerd/streamer/client"
	"github.com/streamerd/streamer/internal/bench"
	"github.com/streamerd/streamer/internal/clock"
	streamerv1 "github.com/streamerd/streamer/proto/streamer/v1"
)

// Workloads.
//   - w1: each connection subscribes to documents whose field k equals its
//     index modulo 100 (so an event reaches Conns/100 connections);
//   - w2: each connection subscribes to the whole collection (an event
//     reaches every connection).
var Workloads = []string{"w1", "w2"}

// Config is one run.
type Config struct {
	Exe      string // the streamer binary; "" is this process's executable
	Redis    string // Redis URL of the node; "" = embedded
	Workload string // w1 or w2
	// Compression turns permessage-deflate on in the gateway and the
	// clients.
	Compression bool
	// DocBytes is the size of the documents' padding field (default 64).
	DocBytes int
	// ProfileDir, when set, receives CPU profiles of the node and the
	// gateway over the measured phase (node.pprof, gateway.pprof) and
	// their heap profiles at its end (node.heap.pprof, gateway.heap.pprof).
	ProfileDir string
	Conns      int
	Rate       int // events per second
	Warmup     time.Duration
	Duration   time.Duration
	Progress   io.Writer // progress lines; nil = discarded
}

func (c *Config) check() error {
	switch {
	case c.Workload != "w1" && c.Workload != "w2":
		return fmt.Errorf("wsbench: unknown workload %q (want w1 or w2)", c.Workload)
	case c.Conns <= 0 || c.Rate <= 0 || c.Duration <= 0 || c.Warmup < 0 || c.DocBytes < 0:
		return errors.New("wsbench: connections, rate and duration must be positive, warmup not negative")
	}
	return nil
}

// Result is what one run measured. Latency is from publish to the client's
// reading of the message, over the measured phase.
type Result struct {
	Workload, Mode          string
	Compression             bool
	Conns, Rate             int
	DurationSec             float64
	P50, P99, P999, Max     float64 // ms
	Deliveries              uint64  // messages received in the measured phase
	DeliveriesPerSec        float64
	NodeCPU, GatewayCPU     float64 // seconds in the measured phase
	CPUPerDeliveryMicros    float64 // (node + gateway) / deliveries
	NodePeakRSS, GatewayRSS int64   // bytes (VmHWM)
	Expected, Received      uint64  // over the whole run
	Lost, Duplicates        uint64
	Disconnects             int
	Published, Refused      uint64
	StealPct, PressurePct   float64 // while measuring; -1 = unknown
	FirstRefusal            string  // why the first refused event was refused
}

// Run starts a node and a gateway, connects the clients, publishes at the
// rate for warmup + duration, and reports.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	if cfg.DocBytes == 0 {
		cfg.DocBytes = 64
	}
	if cfg.Exe == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, err
		}
		cfg.Exe = exe
	}
	out := cfg.Progress
	if out == nil {
		out = io.Discard
	}
	ports, err := freePorts(4)
	if err != nil {
		return nil, err
	}
	grpcAddr, nodeHTTP, wsAddr, gwHTTP := ports[0], ports[1], ports[2], ports[3]
	nodeArgs := []string{"serve", "--grpc", grpcAddr, "--http", nodeHTTP, "--log-level", "warn"}
	if cfg.ProfileDir != "" {
		nodeArgs = append(nodeArgs, "--pprof")
	}
	mode := "embedded"
	if cfg.Redis != "" {
		nodeArgs = append(nodeArgs, "--redis", cfg.Redis)
		mode = "redis"
	}
	node, err := start(ctx, cfg.Exe, nodeArgs, "http://"+nodeHTTP+"/readyz")
	if err != nil {
		return nil, fmt.Errorf("wsbench: node: %w", err)
	}
	defer node.stop()
	gwArgs := []string{"gateway", "--addr", grpcAddr, "--listen", wsAddr, "--http", gwHTTP,
		"--insecure-no-auth", "--insecure-tenant", benchTenant, "--log-level", "warn"}
	if cfg.Compression {
		gwArgs = append(gwArgs, "--ws-compression")
	}
	if cfg.ProfileDir != "" {
		gwArgs = append(gwArgs, "--pprof")
	}
	gw, err := start(ctx, cfg.Exe, gwArgs, "http://"+gwHTTP+"/readyz")
	if err != nil {
		return nil, fmt.Errorf("wsbench: gateway: %w", err)
	}
	defer gw.stop()

	r := &run{cfg: cfg}
	start := time.Now()
	if err := r.connect(ctx, "ws://"+wsAddr+"/v1/ws"); err != nil {
		r.close()
		return nil, err
	}
	defer r.close()
	fmt.Fprintf(out, "%d WebSocket connections subscribed (%s) in %v\n", cfg.Conns, cfg.Workload, time.Since(start).Round(time.Millisecond))

	pub, err := client.NewPublisher(grpcAddr)
	if err != nil {
		return nil, err
	}
	defer pub.Close()
	pctx, stopPub := context.WithCancel(ctx)
	var pubWG sync.WaitGroup
	pubWG.Go(func() { r.publish(pctx, pub) })

	if !clock.Sleep(ctx, clock.Or(nil), cfg.Warmup) {
		stopPub()
		return nil, ctx.Err()
	}
	cpu0 := [2]float64{cpuSeconds(node.pid()), cpuSeconds(gw.pid())}
	got0 := r.received.Load()
	m0 := bench.ReadCPU()
	var profiles sync.WaitGroup
	profileErrs := make(chan error, 4)
	if cfg.ProfileDir != "" {
		for name, admin := range map[string]string{"node": nodeHTTP, "gateway": gwHTTP} {
			profiles.Go(func() { profileErrs <- profile(admin, cfg.Duration, filepath.Join(cfg.ProfileDir, name+".pprof")) })
		}
	}
	r.measuring.Store(true)
	t0 := time.Now()
	fmt.Fprintf(out, "measuring for %v at %d events/s\n", cfg.Duration, cfg.Rate)
	if !clock.Sleep(ctx, clock.Or(nil), cfg.Duration) {
		stopPub()
		return nil, ctx.Err()
	}
	r.measuring.Store(false)
	elapsed := time.Since(t0)
	cpu1 := [2]float64{cpuSeconds(node.pid()), cpuSeconds(gw.pid())}
	steal, pressure := m0.Until(bench.ReadCPU())
	profiles.Wait()
	if cfg.ProfileDir != "" {
		for name, admin := range map[string]string{"node": nodeHTTP, "gateway": gwHTTP} {
			profileErrs <- fetch("http://"+admin+"/debug/pprof/heap", filepath.Join(cfg.ProfileDir, name+".heap.pprof"))
		}
	}
	close(profileErrs)
	for err := range profileErrs {
		if err != nil {
			stopPub()
			return nil, err
		}
	}
	got := r.received.Load() - got0
	stopPub()
	pubWG.Wait()
	r.drain(ctx, 10*time.Second)
	res0, res1, lost, dups, disconnects := r.completeness()
	r.close() // the readers are done: their histograms are final
	hist := bench.NewHistogram(7)
	for _, c := range r.conns {
		hist.Merge(c.hist)
	}

	res := &Result{Workload: cfg.Workload, Mode: mode, Compression: cfg.Compression, Conns: cfg.Conns, Rate: cfg.Rate, DurationSec: elapsed.Seconds(),
		Deliveries: got, DeliveriesPerSec: float64(got) / elapsed.Seconds(),
		NodeCPU: cpu1[0] - cpu0[0], GatewayCPU: cpu1[1] - cpu0[1],
		NodePeakRSS: bench.PeakRSS(strconv.Itoa(node.pid())), GatewayRSS: bench.PeakRSS(strconv.Itoa(gw.pid())),
		Published: r.published.Load(), Refused: r.refused.Load(), StealPct: steal, PressurePct: pressure}
	if why := r.firstRefusal.Load(); why != nil {
		res.FirstRefusal = *why
	}
	ms := func(d time.Duration) float64 { return float64(d) / 1e6 }
	res.P50, res.P99, res.P999, res.Max = ms(hist.Quantile(0.5)), ms(hist.Quantile(0.99)), ms(hist.Quantile(0.999)), ms(hist.Max())
	if got > 0 {
		res.CPUPerDeliveryMicros = (res.NodeCPU + res.GatewayCPU) / float64(got) * 1e6
	}
	res.Expected, res.Received, res.Lost, res.Duplicates, res.Disconnects = res0, res1, lost, dups, disconnects
	return res, nil
}

const benchTenant, benchCollection = "bench", "c"

// run is one run's clients and counters.
type run struct {
	cfg          Config
	conns        []*wsClient
	measuring    atomic.Bool
	received     atomic.Uint64
	published    atomic.Uint64
	refused      atomic.Uint64
	firstRefusal atomic.Pointer[string]
	// keys counts the events published per value of k (w1's routing).
	keysMu sync.Mutex
	keys   [100]uint64

	closeOnce sync.Once
}

// wsClient is one WebSocket connection and what it received.
type wsClient struct {
	conn    *websocket.Conn
	key     int // w1: the value of k it subscribed to
	mu      sync.Mutex
	seen    map[uint64]bool
	dups    uint64
	gone    atomic.Bool // the connection ended before the run did
	done    chan struct{}
	closed  atomic.Bool
	hist    *bench.Histogram // latencies while measuring; the reader's until done
	reading bool             // its reader was started
}

func (r *run) connect(ctx context.Context, url string) error {
	const workers = 32
	r.conns = make([]*wsClient, r.cfg.Conns)
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < len(r.conns); i += workers {
				c, err := r.dial(ctx, url, i)
				if err != nil {
					errs <- err
					return
				}
				r.conns[i] = c
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return fmt.Errorf("wsbench: connecting: %w", err)
	}
	for _, c := range r.conns {
		c.reading = true
		go r.read(c)
	}
	return nil
}

// dial opens connection i and subscribes it, waiting for "subscribed".
func (r *run) dial(ctx context.Context, url string, i int) (*wsClient, error) {
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	opts := &websocket.DialOptions{}
	if r.cfg.Compression {
		opts.CompressionMode = websocket.CompressionNoContextTakeover
	}
	conn, _, err := websocket.Dial(dctx, url, opts)
	if err != nil {
		return nil, err
	}
	conn.SetReadLimit(1 << 20)
	c := &wsClient{conn: conn, key: i % 100, seen: map[uint64]bool{}, done: make(chan struct{}), hist: bench.NewHistogram(7)}
	sub := `{"type":"subscribe","id":"s","collection":"` + benchCollection + `"}`
	if r.cfg.Workload == "w1" {
		sub = `{"type":"subscribe","id":"s","collection":"` + benchCollection + `","filters":[{"field":"k","op":"==","value":` + strconv.Itoa(c.key) + `}]}`
	}
	if err := conn.Write(dctx, websocket.MessageText, []byte(sub)); err != nil {
		return nil, err
	}
	_, msg, err := conn.Read(dctx)
	if err != nil {
		return nil, err
	}
	if !bytes.Contains(msg, []byte(`"subscribed"`)) {
		return nil, fmt.Errorf("subscribe answered %s", msg)
	}
	return c, nil
}

// eventFields finds an event message's sequence number (event_id "e<seq>")
// and the publish time the document carries ("t", Unix ns) by scanning, not
// decoding: the clients share the machine with what they measure, and
// cost it as little as they can.
func eventFields(msg []byte) (seq uint64, t int64, ok bool) {
	if !bytes.HasPrefix(msg, []byte(`{"type":"event"`)) {
		return 0, 0, false
	}
	seq, ok1 := number(msg, []byte(`"event_id":"e`))
	ts, ok2 := number(msg, []byte(`,"t":`))
	return seq, int64(ts), ok1 && ok2
}

// number parses the decimal digits that follow the first occurrence of key.
func number(msg, key []byte) (uint64, bool) {
	i := bytes.Index(msg, key)
	if i < 0 {
		return 0, false
	}
	var n uint64
	digits := 0
	for _, ch := range msg[i+len(key):] {
		if ch < '0' || ch > '9' {
			break
		}
		n = n*10 + uint64(ch-'0')
		digits++
	}
	return n, digits > 0
}

func (r *run) read(c *wsClient) {
	defer close(c.done)
	for {
		_, data, err := c.conn.Read(context.Background())
		if err != nil {
			if !c.closed.Load() {
				c.gone.Store(true)
			}
			return
		}
		now := time.Now()
		seq, ts, ok := eventFields(data)
		if !ok {
			continue
		}
		c.mu.Lock()
		if c.seen[seq] {
			c.dups++
			c.mu.Unlock()
			continue
		}
		c.seen[seq] = true
		c.mu.Unlock()
		r.received.Add(1)
		if r.measuring.Load() {
			c.hist.Record(now.Sub(time.Unix(0, ts)))
		}
	}
}

// publish publishes at the configured rate, in a batch every 10 ms.
func (r *run) publish(ctx context.Context, pub *client.Publisher) {
	const tick = 10 * time.Millisecond
	t := time.NewTicker(tick)
	defer t.Stop()
	start := time.Now()
	var seq uint64
	pad := strings.Repeat("x", r.cfg.DocBytes)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		due := uint64(time.Since(start).Seconds() * float64(r.cfg.Rate))
		if due <= seq {
			continue
		}
		batch := make([]*streamerv1.ChangeEvent, 0, due-seq)
		var keys [100]uint64
		for ; seq < due; seq++ {
			k := int(seq % 100)
			keys[k]++
			doc := `{"k":` + strconv.Itoa(k) + `,"t":` + strconv.FormatInt(time.Now().UnixNano(), 10) + `,"p":"` + pad + `"}`
			batch = append(batch, &streamerv1.ChangeEvent{EventId: "e" + strconv.FormatUint(seq, 10), Tenant: benchTenant,
				Collection: benchCollection, DocumentId: "d" + strconv.Itoa(int(seq%1000)), Operation: streamerv1.Operation_OPERATION_UPDATE,
				Document: []byte(doc), TimestampMs: time.Now().UnixMilli()})
		}
		// Not cut short when publishing stops: a cancelled publish may have
		// been appended, and would be counted as refused.
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		res, err := pub.Publish(cctx, batch)
		cancel()
		for i, ev := range batch {
			ok := err == nil && i < len(res) && res[i].GetError() == nil
			if !ok {
				if r.refused.Add(1) == 1 {
					why := fmt.Sprint(err)
					if err == nil && i < len(res) {
						why = res[i].GetError().String()
					}
					r.firstRefusal.Store(&why)
				}
				continue
			}
			r.published.Add(1)
			k, _ := strconv.Atoi(strings.TrimPrefix(strings.SplitN(string(ev.GetDocument()), ",", 2)[0], `{"k":`))
			r.keysMu.Lock()
			r.keys[k]++
			r.keysMu.Unlock()
		}
	}
}

// expected is how many deliveries the published events make.
func (r *run) expected() uint64 {
	r.keysMu.Lock()
	defer r.keysMu.Unlock()
	var n uint64
	for _, c := range r.conns {
		if r.cfg.Workload == "w2" {
			for _, k := range r.keys {
				n += k
			}
		} else {
			n += r.keys[c.key]
		}
	}
	return n
}

// drain waits until every expected delivery arrived, or for at most d.
func (r *run) drain(ctx context.Context, d time.Duration) {
	deadline := time.Now().Add(d)
	for r.received.Load() < r.expected() && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond) // polling a counter the readers move
	}
}

func (r *run) completeness() (expected, received, lost, dups uint64, disconnects int) {
	expected = r.expected()
	received = r.received.Load()
	if received < expected {
		lost = expected - received
	}
	for _, c := range r.conns {
		c.mu.Lock()
		dups += c.dups
		c.mu.Unlock()
		if c.gone.Load() {
			disconnects++
		}
	}
	return expected, received, lost, dups, disconnects
}

func (r *run) close() {
	r.closeOnce.Do(func() {
		for _, c := range r.conns {
			if c == nil {
				continue
			}
			c.closed.Store(true)
			_ = c.conn.CloseNow()
		}
		for _, c := range r.conns {
			if c != nil && c.reading {
				<-c.done
			}
		}
	})
}

// WriteSummary prints the result.
func (res *Result) WriteSummary(w io.Writer) {
	compression := ""
	if res.Compression {
		compression = ", permessage-deflate"
	}
	fmt.Fprintf(w, "streamer bench ws: %s, %s, %d connections, %d events/s, %.1fs%s\n", res.Workload, res.Mode, res.Conns, res.Rate, res.DurationSec, compression)
	fmt.Fprintf(w, "  latency      publish → WebSocket client: p50 %.2f ms, p99 %.2f ms, p99.9 %.2f ms, max %.2f ms\n", res.P50, res.P99, res.P999, res.Max)
	fmt.Fprintf(w, "  deliveries   %.0f/s (%d measured)\n", res.DeliveriesPerSec, res.Deliveries)
	fmt.Fprintf(w, "  CPU          node %.2f s + gateway %.2f s = %.2f µs per delivered message\n", res.NodeCPU, res.GatewayCPU, res.CPUPerDeliveryMicros)
	fmt.Fprintf(w, "  peak RSS     node %.0f MB, gateway %.0f MB\n", float64(res.NodePeakRSS)/1e6, float64(res.GatewayRSS)/1e6)
	fmt.Fprintf(w, "  completeness published %d (refused %d), expected %d deliveries, received %d, lost %d, duplicates %d, disconnects %d\n",
		res.Published, res.Refused, res.Expected, res.Received, res.Lost, res.Duplicates, res.Disconnects)
	if res.FirstRefusal != "" {
		fmt.Fprintf(w, "  refused      the first because: %s\n", res.FirstRefusal)
	}
	fmt.Fprintf(w, "  machine      while measuring: %.1f %% stolen by the hypervisor, some task waiting for a CPU %.0f %% of the time (-1 = unknown)\n",
		res.StealPct, res.PressurePct)
}

// Failures lists what makes the run a failure.
func (res *Result) Failures() []string {
	var f []string
	if res.Lost > 0 {
		f = append(f, fmt.Sprintf("%d deliveries lost", res.Lost))
	}
	if res.Duplicates > 0 {
		f = append(f, fmt.Sprintf("%d duplicates", res.Duplicates))
	}
	if res.Disconnects > 0 {
		f = append(f, fmt.Sprintf("%d connections dropped", res.Disconnects))
	}
	if res.Refused > 0 {
		f = append(f, fmt.Sprintf("%d events refused by the node (%s)", res.Refused, res.FirstRefusal))
	}
	if res.Deliveries == 0 {
		f = append(f, "nothing delivered while measuring")
	}
	return f
}

// child is a node or gateway process.
type child struct {
	cmd    *exec.Cmd
	stderr *bytes.Buffer
	exited chan struct{}
}

func (c *child) pid() int { return c.cmd.Process.Pid }

func (c *child) stop() {
	_ = c.cmd.Process.Signal(os.Interrupt)
	select {
	case <-c.exited:
	case <-time.After(10 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.exited
	}
}

// start runs exe args and waits until ready answers 200.
func start(ctx context.Context, exe string, args []string, ready string) (*child, error) {
	cmd := exec.Command(exe, args...)
	c := &child{cmd: cmd, stderr: &bytes.Buffer{}, exited: make(chan struct{})}
	cmd.Stderr = &lockedWriter{w: c.stderr}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() { _ = cmd.Wait(); close(c.exited) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(ready)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return c, nil
			}
		}
		select {
		case <-c.exited:
			return nil, fmt.Errorf("%s exited: %s", strings.Join(args[:1], " "), c.stderr.String())
		case <-ctx.Done():
			c.stop()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			c.stop()
			return nil, fmt.Errorf("%s not ready after 30s: %s", args[0], c.stderr.String())
		}
	}
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// profile saves a CPU profile of d from the admin listener at addr.
func profile(addr string, d time.Duration, file string) error {
	secs := max(int(d.Seconds()), 1)
	return fetch(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, secs), file)
}

// fetch saves what url answers to file.
func fetch(url, file string) error {
	resp, err := http.Get(url)
	if err != nil {
		return fmt.Errorf("wsbench: profile: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("wsbench: profile %s: %s", url, resp.Status)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// freePorts returns n loopback addresses whose ports were free a moment ago.
func freePorts(n int) ([]string, error) {
	var out []string
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		out = append(out, l.Addr().String())
	}
	return out, nil
}

// cpuSeconds returns a process's user + system CPU time (/proc/PID/stat).
func cpuSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(fields) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(fields[11], 64)
	st, _ := strconv.ParseFloat(fields[12], 64)
	return (ut + st) / clockTicks
}

// clockTicks is USER_HZ, 100 on Linux.
const clockTicks = 100
