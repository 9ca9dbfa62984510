package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/streamerd/streamer/client"
	"github.com/streamerd/streamer/internal/redistest"
	"github.com/streamerd/streamer/internal/testwait"
)

// The fault ledger: a pool of real node processes on a real Redis runs a
// steady publish load while a seeded random schedule injects faults, and a
// ledger accounts for every (event, subscription) pair each gateway must
// receive: delivered, or covered by a Resync that precedes its gap, or lost
// silently, which must never happen. Duplicates are counted, not failed
// (delivery is at least once).
//
// The faults:
//   - kill: a node is killed with SIGKILL and a new one started;
//   - stop: a node is SIGSTOPped for 1–5 s (beyond the lease TTL sometimes),
//     silent but connected, then SIGCONTed;
//   - freeze: a gateway's connections stop passing bytes, both ways, for
//     longer than its TTL (the in-process stand-in for a SIGSTOPped
//     gateway), so that it expires and comes back with its old cursor;
//   - redis: Redis is killed and restarted (AOF, appendfsync always);
//   - cut: every connection of a gateway is cut;
//   - slow: a gateway stops reading for a while, so that its outbox
//     overflows its cap.
//
// STREAMER_LEDGER_SEED replays a schedule; STREAMER_TEST_LONG runs a longer
// one.

// ledgerFaults are the fault kinds, in the order the seed picks them.
var ledgerFaults = []string{"kill", "stop", "freeze", "redis", "cut", "slow"}

func TestFaultLedger(t *testing.T) {
	seed, faults := ledgerSchedule(t, 14, 100) // about 50 s
	const outboxCap = 50                       // small: a slow gateway overflows within seconds
	p := newPool(t, []redistest.Option{redistest.WithAOF()}, "--outbox-max-len", strconv.Itoa(outboxCap))
	runLedger(t, p, seed, faults, ledgerFaults)
}

// clusterFaults are the cluster's own faults, which the ledger on Redis
// Cluster adds to the nodes' (clusterLedgerFaults):
//   - master: a master is killed with SIGKILL; once the cluster has
//     promoted its replica, it is started again (empty: it rejoins as a
//     replica of the new master and syncs from it);
//   - failover: a replica takes over from its master (CLUSTER FAILOVER);
//   - reshard: 500 slots move from one master to another (redis-cli
//     --cluster reshard) while the load runs.
var clusterFaults = []string{"master", "failover", "reshard"}

// clusterLedgerFaults are the faults of the ledger on Redis Cluster.
var clusterLedgerFaults = slices.Concat([]string{"kill", "stop", "cut", "slow"}, clusterFaults)

// TestFaultLedgerOnRedisCluster runs the fault ledger on three masters with
// a replica each, the nodes waiting for one replica (--redis-wait-replicas
// 1): a master killed loses none of the writes it acknowledged, so every
// pair must be delivered or covered by a Resync.
func TestFaultLedgerOnRedisCluster(t *testing.T) {
	seed, faults := ledgerSchedule(t, 8, 60)
	p := newClusterPool(t, "--outbox-max-len", "50", "--redis-wait-replicas", "1", "--gateway-ttl", "10s")
	runLedger(t, p, seed, faults, clusterLedgerFaults)
}

// TestFaultLedgerOnRedisClusterNotWaiting: without --redis-wait-replicas,
// the cluster's planned changes (CLUSTER FAILOVER, which waits until the
// replica has every write, and resharding) and the nodes' faults lose
// nothing either. (An unplanned failover can: see
// TestFaultLedgerOnRedisCluster.)
func TestFaultLedgerOnRedisClusterNotWaiting(t *testing.T) {
	seed, faults := ledgerSchedule(t, 6, 40)
	p := newClusterPool(t, "--outbox-max-len", "50", "--gateway-ttl", "10s")
	runLedger(t, p, seed, faults, []string{"kill", "cut", "failover", "reshard"})
}

// ledgerSchedule returns the seed of a ledger's fault schedule
// (STREAMER_LEDGER_SEED, else the time) and its number of faults (long
// with STREAMER_TEST_LONG), and logs how to replay it.
func ledgerSchedule(t *testing.T, short, long int) (seed uint64, faults int) {
	seed = uint64(time.Now().UnixNano())
	if s := os.Getenv("STREAMER_LEDGER_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("STREAMER_LEDGER_SEED=%q: %v", s, err)
		}
	}
	faults = short
	if os.Getenv("STREAMER_TEST_LONG") != "" {
		faults = long
	}
	t.Logf("fault ledger seed %d (replay the same schedule with STREAMER_LEDGER_SEED=%d), %d faults", seed, seed, faults)
	return seed, faults
}

// runLedger runs faults faults of the kinds given on pool p under a steady
// load, and checks the ledger.
func runLedger(t *testing.T, p *pool, seed uint64, faults int, kinds []string) {
	rng := rand.New(rand.NewPCG(seed, 0x1ed6e7))
	for range 3 {
		p.start()
	}
	waitUntil(t, "partitions balanced over 3 nodes", p.balanced)
	w := newWorkload("ledger", 200)
	pub := newPublisher(t, p, w)
	rec := newRecorder(t, w, pub)
	const gateways = 6
	freezers := make([]*freezer, gateways)
	for g := range gateways {
		freezers[g] = &freezer{conns: map[*frozenConn]struct{}{}}
		rec.attach(p, g, nil, true, client.WithDialer(freezers[g].wrap(p.dial(nil))), client.WithDeliveryBuffer(16))
	}

	pub.startContinuous(400, 10)
	l := &ledgerRun{t: t, p: p, rec: rec, freezers: freezers, rng: rng}
	for range faults {
		l.inject(kinds[rng.IntN(len(kinds))])
		l.pause(500*time.Millisecond, 2*time.Second)
	}
	pub.halt()
	events := int(pub.next.Load())
	waitUntil(t, "a live node", func() bool { return len(p.live()) > 0 })

	// Every pair ends delivered or covered: wait for the stragglers.
	var led ledger
	testwait.Until(poolWait, func() (bool, any) {
		led = rec.ledger(events)
		return led.pending == 0, led
	})
	t.Logf("faults %d (%s), events %d, expected %d, delivered %d, resynced %d, lost-silently %d, duplicates %d",
		l.count(), l.summary(), events, led.expected, led.delivered, led.resynced, led.pending, led.duplicates)
	if led.pending != 0 {
		t.Errorf("lost silently: %d pairs, neither delivered nor covered by a Resync that precedes their gap; first: %s (seed %d)",
			led.pending, strings.Join(led.firstLost, ", "), seed)
	}
	if led.foreign != 0 || led.unexpected != 0 {
		t.Errorf("foreign-tenant deliveries %d, unexpected pairs %d; want 0", led.foreign, led.unexpected)
	}
	p.checkJSONLogs(t)
}

// checkJSONLogs fails the test if a node logged a line that is not JSON
// (--log-format json): the Redis client library's messages during the
// outages must be log records like the rest. The last line of a killed
// node may be cut short and is not checked.
func (p *pool) checkJSONLogs(t *testing.T) {
	t.Helper()
	p.mu.Lock()
	nodes := p.nodes
	p.mu.Unlock()
	for _, n := range nodes {
		b, err := os.ReadFile(n.logPath)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		for _, line := range lines[:max(len(lines)-1, 0)] {
			if !json.Valid([]byte(line)) {
				t.Errorf("node %s logged a line that is not JSON: %q", n.id, line)
				break
			}
		}
	}
}

// ledgerRun injects faults.
type ledgerRun struct {
	t        *testing.T
	p        *pool
	rec      *recorder
	freezers []*freezer
	rng      *rand.Rand
	faults   map[string]int
}

// pause sleeps a random time in [lo, hi): the schedule's pacing.
func (l *ledgerRun) pause(lo, hi time.Duration) {
	time.Sleep(lo + time.Duration(l.rng.Int64N(int64(hi-lo))))
}

func (l *ledgerRun) count() int {
	n := 0
	for _, c := range l.faults {
		n += c
	}
	return n
}

func (l *ledgerRun) summary() string {
	var parts []string
	for _, f := range slices.Concat(ledgerFaults, clusterFaults) {
		if c := l.faults[f]; c > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", f, c))
		}
	}
	return strings.Join(parts, ", ")
}

// inject runs one fault from start to heal.
func (l *ledgerRun) inject(kind string) {
	if l.faults == nil {
		l.faults = map[string]int{}
	}
	l.faults[kind]++
	live := l.p.live()
	switch kind {
	case "master":
		l.killMaster()
	case "failover":
		m := l.pick(l.p.cluster.Masters())
		r := l.p.cluster.ReplicaOf(m)
		if r == nil {
			l.t.Fatalf("no replica of master %s", m.Addr())
		}
		if reply, err := r.Do("CLUSTER", "FAILOVER"); err != nil || reply != "OK" {
			l.t.Fatalf("CLUSTER FAILOVER on %s: %q %v", r.Addr(), reply, err)
		}
		waitUntil(l.t, "the replica promoted", func() bool { return isMaster(r) })
	case "reshard":
		ms := l.p.cluster.Masters()
		i := l.rng.IntN(len(ms))
		from, to := ms[i], ms[(i+1+l.rng.IntN(len(ms)-1))%len(ms)]
		out, err := exec.Command("redis-cli", "--cluster", "reshard", from.Addr(), "--cluster-from", clusterNodeID(l.t, from),
			"--cluster-to", clusterNodeID(l.t, to), "--cluster-slots", "500", "--cluster-yes").CombinedOutput()
		if err != nil {
			l.t.Fatalf("redis-cli --cluster reshard: %v\n%s", err, out)
		}
	case "kill":
		victim := l.rng.IntN(len(live))
		if len(live) < 2 {
			l.faults[kind]--
			return
		}
		live[victim].kill()
		l.pause(200*time.Millisecond, 2*time.Second)
		l.p.start()
	case "stop":
		n := live[l.rng.IntN(len(live))]
		n.signal(syscall.SIGSTOP)
		l.pause(time.Second, 5*time.Second)
		n.signal(syscall.SIGCONT)
	case "freeze":
		f := l.freezers[l.rng.IntN(len(l.freezers))]
		f.freeze()
		l.pause(poolGatewayTTL+time.Second, poolGatewayTTL+3*time.Second)
		f.thaw()
	case "redis":
		l.p.redis.Kill()
		l.pause(200*time.Millisecond, 2*time.Second)
		l.p.redis.Restart()
	case "cut":
		l.freezers[l.rng.IntN(len(l.freezers))].cut()
	case "slow":
		hold := make(chan struct{})
		l.rec.mu.Lock()
		gw := l.rec.gws[l.rng.IntN(len(l.rec.gws))]
		gw.hold = hold
		l.rec.mu.Unlock()
		l.pause(2*time.Second, 5*time.Second)
		l.rec.mu.Lock()
		gw.hold = nil
		l.rec.mu.Unlock()
		close(hold)
	}
}

// killMaster kills a master of the cluster with SIGKILL, waits until its
// replica is promoted, and starts it again: it rejoins as a replica of the
// new master and syncs from it.
func (l *ledgerRun) killMaster() {
	c := l.p.cluster
	m := l.pick(c.Masters())
	r := c.ReplicaOf(m)
	if r == nil {
		l.t.Fatalf("no replica of master %s", m.Addr())
	}
	m.Kill()
	waitUntil(l.t, "the replica of the killed master promoted", func() bool { return isMaster(r) })
	l.pause(200*time.Millisecond, time.Second)
	m.Restart() // before the promotion it would come back as an empty master
	waitUntil(l.t, "the old master synced as a replica", func() bool {
		info, err := m.Do("INFO", "replication")
		return err == nil && strings.Contains(info, "role:slave") && strings.Contains(info, "master_link_status:up")
	})
}

// pick returns a random element of servers.
func (l *ledgerRun) pick(servers []*redistest.Server) *redistest.Server {
	if len(servers) == 0 {
		l.t.Fatal("no server to pick from")
	}
	return servers[l.rng.IntN(len(servers))]
}

// isMaster reports whether s says it is a master.
func isMaster(s *redistest.Server) bool {
	info, err := s.Do("INFO", "replication")
	return err == nil && strings.Contains(info, "role:master")
}

// ledger is the account of every expected pair.
type ledger struct {
	expected, delivered, resynced, pending int64
	duplicates, foreign, unexpected        int
	firstLost                              []string
}

// ledger accounts for the pairs of events [0, upTo). A pair not delivered
// is covered when its gateway got a Resync after the event was first sent
// and before any later event of the same partition reached the
// subscription: the Resync precedes the gap. Anything else is pending (lost
// silently, once nothing is in flight).
func (r *recorder) ledger(upTo int) ledger {
	r.mu.Lock()
	defer r.mu.Unlock()
	var l ledger
	for _, gw := range r.gws {
		l.duplicates += gw.duplicates
		l.foreign += gw.foreign
		l.unexpected += gw.unexpected
		for id, s := range gw.subs {
			// firstLater[p] walks back: the earliest position at which an
			// event of partition p after the current one was received.
			firstLater := make([]int, poolPartitions)
			for p := range firstLater {
				firstLater[p] = int(^uint(0) >> 1)
			}
			for i := upTo - 1; i >= gw.from; i-- {
				if !s.spec.matches(i) {
					continue
				}
				l.expected++
				p := i % poolPartitions
				if s.got[i] {
					l.delivered++
					firstLater[p] = min(firstLater[p], s.gotAt[i])
					continue
				}
				sent := time.Unix(0, r.pub.sentAt[i].Load())
				if slices.ContainsFunc(gw.resyncLog, func(m resyncMark) bool { return !m.at.Before(sent) && m.pos < firstLater[p] }) {
					l.resynced++
					continue
				}
				l.pending++
				if len(l.firstLost) < 10 {
					l.firstLost = append(l.firstLost, fmt.Sprintf("%s/%s/event %d (partition %d)", gw.id, id, i, p))
				}
			}
		}
	}
	return l
}

// freezer makes one gateway's connections stop passing bytes, both ways,
// while frozen, as a stopped process's would; cut closes them.
type freezer struct {
	mu     sync.Mutex
	thawed chan struct{} // nil when not frozen; closed by thaw
	conns  map[*frozenConn]struct{}
}

func (f *freezer) freeze() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.thawed == nil {
		f.thawed = make(chan struct{})
	}
}

func (f *freezer) thaw() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.thawed != nil {
		close(f.thawed)
		f.thawed = nil
	}
}

// wait blocks while frozen.
func (f *freezer) wait() {
	f.mu.Lock()
	ch := f.thawed
	f.mu.Unlock()
	if ch != nil {
		<-ch
	}
}

// cut closes every open connection.
func (f *freezer) cut() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for c := range f.conns {
		_ = c.Conn.Close()
	}
}

// wrap returns dial with its connections under f.
func (f *freezer) wrap(dial func(context.Context, string) (net.Conn, error)) func(context.Context, string) (net.Conn, error) {
	return func(ctx context.Context, addr string) (net.Conn, error) {
		f.wait()
		conn, err := dial(ctx, addr)
		if err != nil {
			return nil, err
		}
		c := &frozenConn{Conn: conn, f: f}
		f.mu.Lock()
		f.conns[c] = struct{}{}
		f.mu.Unlock()
		return c, nil
	}
}

// frozenConn is a connection whose reads and writes wait while its freezer
// is frozen.
type frozenConn struct {
	net.Conn
	f *freezer
}

func (c *frozenConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.f.wait()
	return n, err
}

func (c *frozenConn) Write(b []byte) (int, error) {
	c.f.wait()
	return c.Conn.Write(b)
}

func (c *frozenConn) Close() error {
	c.f.mu.Lock()
	delete(c.f.conns, c)
	c.f.mu.Unlock()
	return c.Conn.Close()
}
