package integration

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/streamerd/streamer/client"
	"github.com/streamerd/streamer/internal/redistest"
	"github.com/streamerd/streamer/internal/testproxy"
	"github.com/streamerd/streamer/internal/testwait"
	streamerv1 "github.com/streamerd/streamer/proto/streamer/v1"
	"github.com/streamerd/streamer/store/redis"
)

// Pool tests: nodes are processes of the real binary sharing a real Redis
// (pool_harness_test.go); the workload, expectations and checks are in
// pool_workload_test.go. "Zero loss" means every expected (event,
// subscription) pair arrives at least once; duplicates are allowed and
// counted.

func TestPoolThreeNodesDeliverEveryPair(t *testing.T) {
	threeNodesDeliverEveryPair(t, newPool(t, nil))
}

// TestPoolOnRedisClusterDeliversEveryPair: the same on a Redis Cluster of
// three masters with a replica each, the partitions, outboxes and
// subscriptions spread over the shards.
func TestPoolOnRedisClusterDeliversEveryPair(t *testing.T) {
	threeNodesDeliverEveryPair(t, newClusterPool(t))
}

func threeNodesDeliverEveryPair(t *testing.T, p *pool) {
	const events, gateways = 20_000, 6
	nodes := []*nodeProc{p.start(), p.start(), p.start()}
	waitUntil(t, "partitions balanced over 3 nodes", p.balanced)
	t.Logf("shares: %v", p.shares())

	w := newWorkload("three", 200)
	pub := newPublisher(t, p, w)
	rec := newRecorder(t, w, pub)
	for g := range gateways {
		rec.attach(p, g, nodes[g%len(nodes)], true)
	}
	for _, n := range nodes {
		if on := rec.gatewaysOn(n.id); len(on) == 0 {
			t.Fatalf("no gateway session on %s", n.id)
		}
	}

	start := time.Now()
	pub.publishAll(t, 0, events, 200)
	published := time.Since(start)
	want := rec.waitComplete(events)
	t.Logf("published %d events over %d partitions in %v (%.0f events/s)", events, poolPartitions, published.Round(time.Millisecond),
		float64(events)/published.Seconds())
	rec.check("3 nodes", events, want, time.Since(start))
}

func TestPoolNodeKilledWhileOwningPartitionsAndSessions(t *testing.T) {
	p := newPool(t, nil)
	nodes := []*nodeProc{p.start(), p.start(), p.start()}
	waitUntil(t, "partitions balanced over 3 nodes", p.balanced)
	w := newWorkload("kill", 200)
	pub := newPublisher(t, p, w)
	rec := newRecorder(t, w, pub)
	for g := range 6 {
		rec.attach(p, g, nodes[g%len(nodes)], true)
	}
	start := time.Now()
	pub.startContinuous(2000, 50)
	waitUntil(t, "load running", func() bool { return pub.next.Load() >= 2000 })

	victim := nodes[0]
	var owned []int
	for part, o := range p.owners() {
		if o == victim.id {
			owned = append(owned, part)
		}
	}
	onVictim := rec.gatewaysOn(victim.id)
	if len(owned) == 0 || len(onVictim) == 0 || victim.metric("streamer_sessions") == 0 {
		t.Fatalf("%s owns partitions %v and holds sessions of %d gateways: want both", victim.id, owned, len(onVictim))
	}
	// Kill it in the middle of a burst, so that it likely dies with batches
	// read and not acknowledged.
	pub.halt()
	pub.startContinuous(40_000, 400)
	burst := pub.next.Load()
	waitUntil(t, "a burst running", func() bool { return pub.next.Load() >= burst+2000 })
	killed := time.Now()
	victim.kill()
	pub.halt() // back to the steady load; a batch cut short is sent again
	pub.startContinuous(2000, 50)

	waitUntil(t, "the victim's partitions taken over", func() bool {
		o := p.owners()
		for _, part := range owned {
			if o[part] == "" || o[part] == victim.id {
				return false
			}
		}
		return true
	})
	takeover := time.Since(killed)
	if limit := poolLeaseTTL + 2*time.Second; takeover > limit {
		t.Errorf("partitions %v taken over %v after the kill; want within lease TTL + 2s = %v", owned, takeover, limit)
	}
	var resumed time.Duration // until the last of them resumed
	waitUntil(t, "the victim's gateways resumed on other nodes", func() bool {
		for _, gw := range onVictim {
			regs := rec.regs.since(gw.id, killed)
			i := slices.IndexFunc(regs, func(r registration) bool { return r.node != victim.id && r.resumed })
			if i < 0 {
				return false
			}
			resumed = max(resumed, regs[i].at.Sub(killed))
		}
		return true
	})

	after := pub.next.Load()
	waitUntil(t, "load after the takeover", func() bool { return pub.next.Load() >= after+2000 })
	pub.halt()
	events := int(pub.next.Load())
	want := rec.waitComplete(events)
	claimed := 0
	for _, n := range nodes[1:] {
		claimed += strings.Count(n.tail(1000), "took over the pending entries of the previous owner")
	}
	t.Logf("kill -9 of %s owning partitions %v and the sessions of %d gateways: partitions taken over in %v (pending entries claimed in %d of them), its gateways resumed elsewhere in %v",
		victim.id, owned, len(onVictim), takeover.Round(time.Millisecond), claimed, resumed.Round(time.Millisecond))
	rec.check("node killed", events, want, time.Since(start))
}

// TestPoolScaleOneToFourToOne grows the pool from one node to four and
// shrinks it back to one, a node at a time, under a steady publish load:
// nothing is lost, every step rebalances the partitions, and the nodes that
// leave (SIGTERM) hand their partitions over by releasing their leases, not
// by letting them expire (the leases last 10 s here). It logs how long each
// step took and the latency of the events published meanwhile.
func TestPoolScaleOneToFourToOne(t *testing.T) {
	p := newPool(t, nil, "--lease-ttl", "10s")
	n1 := p.start()
	w := newWorkload("scale", 200)
	pub := newPublisher(t, p, w)
	rec := newRecorder(t, w, pub)
	for g := range 3 {
		rec.attach(p, g, n1, true)
	}
	start := time.Now()
	pub.startContinuous(1000, 50)
	more := func(what string, n int64) {
		t.Helper()
		at := pub.next.Load()
		waitUntil(t, what, func() bool { return pub.next.Load() >= at+n })
	}
	more("load on one node", 1000)

	// step runs one scaling action and reports it once the partitions are
	// balanced again and a second of load has followed.
	step := func(what string, act func()) {
		t.Helper()
		from, began := int(pub.next.Load()), time.Now()
		act()
		waitUntil(t, what+": partitions balanced", p.balanced)
		took := time.Since(began)
		more(what+": load after", 1000)
		p50, p99, worst := rec.latencyOf(from, int(pub.next.Load()))
		t.Logf("%s: balanced %v in %v; latency of the events published meanwhile p50 %v, p99 %v, max %v",
			what, p.shares(), took.Round(time.Millisecond), p50.Round(time.Millisecond), p99.Round(time.Millisecond), worst.Round(time.Millisecond))
	}
	var added []*nodeProc
	for i := 2; i <= 4; i++ {
		step(fmt.Sprintf("scale up to %d nodes", i), func() { added = append(added, p.start()) })
		rec.attach(p, 2+i, added[len(added)-1], true) // sessions on the nodes that will leave
	}
	for i := len(added) - 1; i >= 0; i-- {
		n := added[i]
		owned := p.shares()[n.id]
		step(fmt.Sprintf("scale down to %d nodes", i+1), func() { n.stop(t) })
		if tail := n.tail(20); !strings.Contains(tail, `"msg":"partition leases released for the next owners"`) || !strings.Contains(tail, `"not_released":0`) {
			t.Errorf("%s (%d partitions) did not release every lease on SIGTERM:\n%s", n.id, owned, n.tail(20))
		}
	}
	pub.halt()

	events := int(pub.next.Load())
	want := rec.waitComplete(events)
	rec.check("scale 1→4→1", events, want, time.Since(start))
	if lost := n1.metric(`streamer_lease_changes_total{change="lost"}`) + n1.metric(`streamer_lease_changes_total{change="expired"}`); lost != 0 {
		t.Errorf("%s lost %v leases during clean scaling", n1.id, lost)
	}
}

func TestPoolRedisRestartUnderLoad(t *testing.T) {
	p := newPool(t, []redistest.Option{redistest.WithAOF()})
	nodes := []*nodeProc{p.start(), p.start()}
	waitUntil(t, "partitions balanced over 2 nodes", p.balanced)
	w := newWorkload("restart", 200)
	pub := newPublisher(t, p, w)
	rec := newRecorder(t, w, pub)
	for g := range 4 {
		rec.attach(p, g, nodes[g%len(nodes)], true)
	}
	start := time.Now()
	pub.startContinuous(1500, 50)
	waitUntil(t, "load running", func() bool { return pub.next.Load() >= 1500 })

	killed := time.Now()
	p.redis.Kill()
	waitUntil(t, "every node unready", func() bool {
		for _, n := range nodes {
			if n.ready() {
				return false
			}
		}
		return true
	})
	unready := time.Since(killed)
	p.redis.Restart()
	restarted := time.Since(killed)
	waitUntil(t, "every node ready again", func() bool {
		for _, n := range nodes {
			if !n.ready() {
				return false
			}
		}
		return true
	})
	ready := time.Since(killed)
	at := pub.next.Load()
	waitUntil(t, "load after the restart", func() bool { return pub.next.Load() >= at+1500 })
	pub.halt()

	events := int(pub.next.Load())
	want := rec.waitComplete(events)
	var redisErrors float64
	for _, n := range nodes {
		redisErrors += n.metric("streamer_redis_errors_total")
	}
	t.Logf("redis killed (AOF on): nodes unready after %v, redis back after %v, nodes ready after %v; %v redis errors counted by the nodes",
		unready.Round(time.Millisecond), restarted.Round(time.Millisecond), ready.Round(time.Millisecond), redisErrors)
	rec.check("redis restart", events, want, time.Since(start))
	if redisErrors == 0 {
		t.Errorf("streamer_redis_errors_total stayed 0 across a Redis restart")
	}
}

func TestPoolVanishedGatewayIsExpired(t *testing.T) {
	const ttl = time.Second
	p := newPool(t, nil, "--gateway-ttl", ttl.String())
	n1, n2 := p.start(), p.start()
	waitUntil(t, "partitions balanced over 2 nodes", p.balanced)
	w := newWorkload("vanish", 100)
	pub := newPublisher(t, p, w)
	rec := newRecorder(t, w, pub)

	// The gateway that will vanish reaches n1 through a proxy, so that it
	// can disappear without closing its connection.
	proxy, err := testproxy.New(n1.grpcAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	vanishing := rec.attach(p, 0, nil, true, client.WithDialer(func(ctx context.Context, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", proxy.Addr())
	}))
	live := rec.attach(p, 1, n2, true)
	pub.publishAll(t, 0, 320, 32)
	rec.waitComplete(320)
	indexed := func() float64 {
		return n1.metric("streamer_subscriptions_indexed") + n2.metric("streamer_subscriptions_indexed")
	}
	want := float64(len(vanishing.subs) + len(live.subs))
	waitUntil(t, "both gateways' subscriptions indexed", func() bool { return indexed() == want })

	rdb, err := redis.NewClient(p.redis.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	keys := redis.Keys{Prefix: redis.DefaultPrefix}
	exists := func(key string) bool {
		n, err := rdb.Exists(context.Background(), key).Result()
		return err != nil || n > 0
	}
	if !exists(keys.Subs(vanishing.id)) || !exists(keys.Outbox(vanishing.id)) {
		t.Fatal("the gateway's subscriptions or outbox are not in Redis before it vanishes")
	}

	proxy.Pause() // no more bytes either way, no connection closed
	vanished := time.Now()
	waitUntil(t, "the vanished gateway's subscriptions gone, its outbox retired and no node indexing its subscriptions", func() bool {
		retired, err := p.store.Outboxes.Retired(context.Background(), vanishing.id)
		n, lerr := p.store.Outboxes.Len(context.Background(), vanishing.id)
		return !exists(keys.Subs(vanishing.id)) && err == nil && retired != "" && lerr == nil && n == 0 && indexed() == float64(len(live.subs))
	})
	gone := time.Since(vanished)
	// Its node notices the dead connection (keepalive) and releases the
	// session; the janitor's Forget deletes the session record, so no key of
	// the gateway is left but its outbox's retirement.
	waitUntil(t, "the vanished gateway's session released and its session record gone", func() bool {
		node, _, err := p.store.Sessions.Current(context.Background(), vanishing.id)
		return err == nil && node == "" && !exists(keys.Session(vanishing.id))
	})
	released := time.Since(vanished)
	left, err := rdb.Keys(context.Background(), keys.Prefix+":{gw:"+vanishing.id+"}*").Result()
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(left)
	if want := []string{keys.Outbox(vanishing.id), keys.OutboxDeleted(vanishing.id), keys.OutboxMeta(vanishing.id)}; !slices.Equal(left, want) {
		t.Fatalf("keys of the vanished gateway left in Redis: %v, want only its outbox's retirement %v", left, want)
	}
	t.Logf("gateway vanished (ttl %v): subscriptions and index entries gone, outbox retired after %v, session record gone after %v",
		ttl, gone.Round(time.Millisecond), released.Round(time.Millisecond))
	if gone > ttl+3*time.Second {
		t.Errorf("cleanup took %v, want within ttl %v + 3s", gone, ttl)
	}

	// The live gateway is unaffected.
	pub.publishAll(t, 320, 640, 32)
	rec.waitComplete(640, live)
}

func TestPoolPoisonEntryIsDeadLettered(t *testing.T) {
	p := newPool(t, nil)
	n := p.start()
	w := newWorkload("poison", 100)
	pub := newPublisher(t, p, w)
	rec := newRecorder(t, w, pub)
	rec.attach(p, 0, n, true) // tenant t0: partitions 0, 4, 8, 12
	pub.publishAll(t, 0, 320, 32)
	rec.waitComplete(320)

	ctx := context.Background()
	const part = 0
	noID, err := proto.Marshal(&streamerv1.LogEntry{Entry: &streamerv1.LogEntry_Event{Event: &streamerv1.ChangeEvent{
		EventId: "no-document-id", Tenant: w.pairs[part].tenant, Collection: w.pairs[part].collection, Operation: streamerv1.Operation_OPERATION_CREATE}}})
	if err != nil {
		t.Fatal(err)
	}
	poison := [][]byte{[]byte("\xff\x00 not a log entry"), noID}
	if _, err := p.store.Log.Append(ctx, part, poison...); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	pub.publishAll(t, 320, 640, 32)
	want := rec.waitComplete(640)
	rec.check("after poison entries", 640, want, time.Since(start))

	dead, err := p.store.Log.DeadLetters(ctx, part, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(dead) != len(poison) {
		t.Fatalf("partition %d has %d dead letters, want %d: %+v", part, len(dead), len(poison), dead)
	}
	for i, d := range dead {
		if !slices.Equal(d.Original.Payload, poison[i]) || d.Reason == "" {
			t.Errorf("dead letter %d = %+v, want the poison entry with a reason", i, d)
		}
		t.Logf("dead letter %d: %q", i, d.Reason)
	}
	if got := n.metric("streamer_dead_letters_total"); got != float64(len(poison)) {
		t.Errorf("streamer_dead_letters_total = %v, want %d", got, len(poison))
	}
	waitUntil(t, "nothing pending in the partition", func() bool { // acks follow the outbox appends
		pending, err := p.store.Log.Pending(ctx, part)
		return err == nil && pending == 0
	})
}

func TestPoolSlowGatewayGetsResyncOthersUnaffected(t *testing.T) {
	const outboxCap, events = 30, 3000
	p := newPool(t, nil, "--outbox-max-len", fmt.Sprint(outboxCap))
	n := p.start()
	w := newWorkload("slow", 1000)
	pub := newPublisher(t, p, w)
	rec := newRecorder(t, w, pub)
	fast := rec.attach(p, 0, n, true)
	// The slow gateway has the same tenant (t0) and reads nothing for now.
	slow := rec.attach(p, 4, n, false, client.WithDeliveryBuffer(0))

	start := time.Now()
	pub.publishAll(t, 0, events, 8) // small batches: many outbox entries
	want := rec.waitComplete(events, fast)
	elapsed := time.Since(start)

	ctx := context.Background()
	var slowLen int64
	waitUntil(t, "the slow gateway's outbox at its cap", func() bool {
		var err error
		slowLen, err = p.store.Outboxes.Len(ctx, slow.id)
		return err == nil && slowLen > 0
	})
	if slowLen > outboxCap {
		t.Errorf("slow gateway's outbox holds %d entries, over the cap %d", slowLen, outboxCap)
	}
	rss := n.metric("process_resident_memory_bytes")

	rec.startReading(slow)
	waitUntil(t, "a Resync for the slow gateway", func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return slow.resyncs > 0
	})

	rec.mu.Lock()
	lat := slices.Clone(fast.latencies)
	fastResyncs, foreign, disorder := fast.resyncs, fast.foreign+slow.foreign, 0
	for _, s := range fast.subs {
		disorder += s.disorder
	}
	rec.mu.Unlock()
	slices.Sort(lat)
	t.Logf("%d events, fast gateway got all %d pairs in %v: latency p50 %v p99 %v max %v; slow gateway's outbox %d entries (cap %d); node RSS %.1f MiB; slow gateway resynced",
		events, want, elapsed.Round(time.Millisecond), lat[len(lat)/2].Round(time.Microsecond), lat[len(lat)*99/100].Round(time.Microsecond),
		lat[len(lat)-1].Round(time.Microsecond), slowLen, outboxCap, rss/(1<<20))
	if fastResyncs != 0 || foreign != 0 || disorder != 0 {
		t.Errorf("fast gateway: %d resyncs, %d out of order; %d foreign deliveries; want 0", fastResyncs, disorder, foreign)
	}
}

// TestPoolPublisherRetriesThroughRedisOutage: while Redis is down a node
// refuses to append (ERROR_CODE_UNAVAILABLE); the client library's
// Publisher retries the refused events with backoff, with the same ids,
// until Redis is back, so that a publisher loses nothing across the
// outage and the subscriber gets every event once.
func TestPoolPublisherRetriesThroughRedisOutage(t *testing.T) {
	p := newPool(t, []redistest.Option{redistest.WithAOF()})
	n := p.start()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	conn, err := client.Dial(ctx, n.grpcAddr, client.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.Subscribe(ctx, client.Subscription{ID: "all", Tenant: "t", Collection: "c"}); err != nil {
		t.Fatal(err)
	}
	pub, err := client.NewPublisher(n.grpcAddr, client.WithBackoff(20*time.Millisecond, 200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()

	p.redis.Kill()
	evs := make([]*streamerv1.ChangeEvent, 50)
	for i := range evs {
		evs[i] = &streamerv1.ChangeEvent{Tenant: "t", Collection: "c", DocumentId: fmt.Sprintf("d%d", i), // no id: Publish gives one
			Operation: streamerv1.Operation_OPERATION_CREATE, Document: []byte(`{}`)}
	}
	type outcome struct {
		res []*streamerv1.PublishResult
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := pub.Publish(ctx, evs)
		done <- outcome{res, err}
	}()
	waitUntil(t, "publishes refused while Redis is down", func() bool {
		return n.metric(`streamer_publish_events_total{result="rejected"}`) > 0
	})
	p.redis.Restart()
	o := <-done
	if o.err != nil {
		t.Fatal(o.err)
	}
	want := map[string]bool{}
	for i, r := range o.res {
		if r.GetError() != nil || r.GetEventId() != evs[i].GetEventId() || !strings.HasPrefix(r.GetEventId(), "pub-") {
			t.Fatalf("event %d: %v", i, r)
		}
		want[r.GetEventId()] = true
	}
	got := map[string]int{}
	for len(got) < len(want) {
		select {
		case d := <-conn.Deliveries():
			for _, m := range d.Matches {
				got[m.Event.GetEventId()]++
			}
		case <-ctx.Done():
			t.Fatalf("%d of %d events delivered", len(got), len(want))
		}
	}
	for id, k := range got {
		if !want[id] || k != 1 {
			t.Fatalf("event %s delivered %d times (published: %v)", id, k, want[id])
		}
	}
}

// TestPoolFollowsClusterFailover: a master of the pool's Redis Cluster is
// killed with SIGKILL under load; its replica is promoted by the cluster,
// and the node follows the new topology (it reloads the slot map when a
// connection to the dead master fails) and delivers again within seconds.
// Every acknowledged event is delivered, or announced as lost by a Resync
// that follows it: without --redis-wait-replicas the master may take
// acknowledged writes with it, which the node finds out
// (store/redis/verify.go).
func TestPoolFollowsClusterFailover(t *testing.T) {
	clusterFailover(t, func(p *pool) { p.cluster.Masters()[0].Kill() })
}

// TestPoolFollowsManualClusterFailover: a replica takes over with CLUSTER
// FAILOVER (which waits until it has the master's writes) under load:
// every acknowledged event is delivered, before the failover and after.
func TestPoolFollowsManualClusterFailover(t *testing.T) {
	clusterFailover(t, func(p *pool) {
		m := p.cluster.Masters()[0]
		r := p.cluster.ReplicaOf(m)
		if r == nil {
			t.Fatalf("no replica of %s", m.Addr())
		}
		if reply, err := r.Do("CLUSTER", "FAILOVER"); err != nil || reply != "OK" {
			t.Fatalf("CLUSTER FAILOVER on %s: %q %v", r.Addr(), reply, err)
		}
		waitUntil(t, "the replica promoted", func() bool {
			info, err := r.Do("INFO", "replication")
			return err == nil && strings.Contains(info, "role:master")
		})
	})
}

// TestPoolFollowsClusterReshard: slots move between masters (redis-cli
// --cluster reshard) under load: MOVED and ASK are followed and every
// acknowledged event is delivered.
func TestPoolFollowsClusterReshard(t *testing.T) {
	clusterFailover(t, func(p *pool) {
		ms := p.cluster.Masters()
		from, to := clusterNodeID(t, ms[0]), clusterNodeID(t, ms[1])
		out, err := exec.Command("redis-cli", "--cluster", "reshard", ms[0].Addr(), "--cluster-from", from, "--cluster-to", to,
			"--cluster-slots", "2000", "--cluster-yes").CombinedOutput()
		if err != nil {
			t.Fatalf("redis-cli --cluster reshard: %v\n%s", err, out)
		}
	})
}

// clusterNodeID returns the cluster node id of s.
func clusterNodeID(t *testing.T, s *redistest.Server) string {
	t.Helper()
	id, err := s.Do("CLUSTER", "MYID")
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// clusterCollections are the collections watchedClusterPool subscribes to:
// spread over the partitions, so over every master.
const clusterCollections = 8

// watchedClusterPool starts a pool of one node on a Redis Cluster of three
// masters with a replica each, and a client subscribed to
// clusterCollections collections of tenant t (c0, c1, …).
func watchedClusterPool(t *testing.T, ctx context.Context) (*pool, *nodeProc, *client.Conn) {
	t.Helper()
	p := newClusterPool(t)
	n := p.start()
	waitUntil(t, "partitions owned", p.balanced)
	conn, err := client.Dial(ctx, n.grpcAddr, client.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	for c := range clusterCollections {
		if err := conn.Subscribe(ctx, client.Subscription{ID: fmt.Sprintf("s%d", c), Tenant: "t", Collection: fmt.Sprintf("c%d", c)}); err != nil {
			t.Fatal(err)
		}
	}
	return p, n, conn
}

// clusterFailover runs fault on the pool's cluster under load and checks
// that delivery resumes and that every acknowledged event arrives or is
// followed by a Resync.
func clusterFailover(t *testing.T, fault func(*pool)) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p, n, conn := watchedClusterPool(t, ctx)
	var mu sync.Mutex
	got := map[string]bool{}
	var resynced time.Time // when the last Resync arrived
	// back[c]: when collection c's subscription delivered again after the
	// last Resync (the client library subscribes again after one; events
	// between the two matched no subscription).
	back := map[string]time.Time{}
	go func() {
		for d := range conn.Deliveries() {
			mu.Lock()
			for _, m := range d.Matches {
				got[m.Event.GetEventId()] = true
				if c := m.Event.GetCollection(); !resynced.IsZero() && back[c].IsZero() {
					back[c] = time.Now()
				}
			}
			if d.Resync != nil {
				resynced, back = time.Now(), map[string]time.Time{}
				t.Logf("resync: %s", d.Resync.Reason)
			}
			mu.Unlock()
		}
	}()
	pub, err := client.NewPublisher(n.grpcAddr, client.WithBackoff(20*time.Millisecond, 300*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	var acked sync.Map // event id → when its Publish succeeded
	var stop atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; !stop.Load(); i++ {
			evs := make([]*streamerv1.ChangeEvent, clusterCollections)
			for c := range evs {
				evs[c] = &streamerv1.ChangeEvent{EventId: fmt.Sprintf("e%d-%d", i, c), Tenant: "t", Collection: fmt.Sprintf("c%d", c), DocumentId: "d",
					Operation: streamerv1.Operation_OPERATION_CREATE, Document: []byte(`{}`)}
			}
			pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
			res, err := pub.Publish(pctx, evs)
			pcancel()
			now := time.Now()
			for _, r := range res {
				if err == nil && r.GetError() == nil {
					acked.Store(r.GetEventId(), now)
				}
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	count := func() int {
		k := 0
		acked.Range(func(any, any) bool { k++; return true })
		return k
	}
	waitUntil(t, "load", func() bool { return count() >= 200 })

	killed := time.Now()
	fault(p)
	before := count()
	waitUntil(t, "publishes acknowledged again after the failover", func() bool { return count() >= before+400 })
	recovered := time.Since(killed)
	stop.Store(true)
	<-done
	var first time.Time // the first publish acknowledged after the fault
	var all []string
	acked.Range(func(id, at any) bool {
		if t := at.(time.Time); t.After(killed) && (first.IsZero() || t.Before(first)) {
			first = t
		}
		all = append(all, id.(string))
		return true
	})
	// A Resync says events before it may be missing: those acknowledged
	// before the last one are excused (never silently), and so are those
	// acknowledged before their subscription was back.
	missing := func() []string {
		mu.Lock()
		defer mu.Unlock()
		var out []string
		for _, id := range all {
			v, _ := acked.Load(id)
			at := v.(time.Time)
			_, c, _ := strings.Cut(id, "-") // e<round>-<collection>
			if excused := at.Before(resynced) || at.Before(back["c"+c]); !got[id] && !excused {
				out = append(out, id)
			}
		}
		return out
	}
	if f := testwait.Until(30*time.Second, func() (bool, any) { return len(missing()) == 0, nil }); f != nil {
		m := missing()
		t.Fatalf("%d events acknowledged after the fault (and after any Resync) never delivered, e.g. %v", len(m), m[:min(5, len(m))])
	}
	mu.Lock()
	delivered := 0
	for _, id := range all {
		if got[id] {
			delivered++
		}
	}
	mu.Unlock()
	t.Logf("first publish acknowledged %v after the fault, 400 more within %v; %d events acknowledged, %d delivered, the others before a Resync",
		first.Sub(killed).Round(10*time.Millisecond), recovered.Round(10*time.Millisecond), len(all), delivered)
}

// TestPoolAnnouncesWritesLostInFailover: without --redis-wait-replicas, a
// master killed before its replica had its last writes (the replicas are
// paused and their links cut while events are published) takes
// acknowledged events with it when the replica takes over. The node finds
// out (store/redis/verify.go) and the subscriber gets a Resync that says
// so; every event it did not get was published before that Resync.
func TestPoolAnnouncesWritesLostInFailover(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p, n, conn := watchedClusterPool(t, ctx)
	var mu sync.Mutex
	got := map[string]bool{}
	var resyncs []string
	go func() {
		for d := range conn.Deliveries() {
			mu.Lock()
			for _, m := range d.Matches {
				got[m.Event.GetEventId()] = true
			}
			if d.Resync != nil {
				resyncs = append(resyncs, d.Resync.Reason)
			}
			mu.Unlock()
		}
	}()
	pub, err := client.NewPublisher(n.grpcAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	var sent []string
	publish := func(round string) {
		evs := make([]*streamerv1.ChangeEvent, clusterCollections)
		for c := range evs {
			evs[c] = &streamerv1.ChangeEvent{EventId: fmt.Sprintf("%s-%d", round, c), Tenant: "t", Collection: fmt.Sprintf("c%d", c), DocumentId: "d",
				Operation: streamerv1.Operation_OPERATION_CREATE, Document: []byte(`{}`)}
			sent = append(sent, evs[c].EventId)
		}
		res, err := pub.Publish(ctx, evs)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range res {
			if r.GetError() != nil {
				t.Fatalf("publish %s: %v", r.GetEventId(), r.GetError())
			}
		}
	}
	publish("before")
	waitUntil(t, "the first events delivered", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == clusterCollections
	})

	masters := p.cluster.Masters()
	replicas := make([]*redistest.Server, len(masters))
	for i, m := range masters {
		if replicas[i] = p.cluster.ReplicaOf(m); replicas[i] == nil {
			t.Fatalf("no replica of %s", m.Addr())
		}
		replicas[i].Pause()
		if k, err := m.Do("CLIENT", "KILL", "TYPE", "replica"); err != nil || k != "1" {
			t.Fatalf("CLIENT KILL TYPE replica on %s: %q %v", m.Addr(), k, err)
		}
	}
	for i := range 5 {
		publish(fmt.Sprintf("unreplicated%d", i))
	}
	masters[0].Kill()
	for _, r := range replicas {
		r.Resume()
	}
	if reply, err := replicas[0].Do("CLUSTER", "FAILOVER", "TAKEOVER"); err != nil || reply != "OK" {
		t.Fatalf("CLUSTER FAILOVER TAKEOVER: %q %v", reply, err)
	}
	waitUntil(t, "a Resync that names the failover", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return slices.ContainsFunc(resyncs, func(r string) bool { return strings.Contains(r, "failover") })
	})
	mu.Lock()
	defer mu.Unlock()
	missing := 0
	for _, id := range sent {
		if !got[id] {
			missing++
		}
	}
	t.Logf("%d of %d events published delivered; Resyncs: %q", len(sent)-missing, len(sent), resyncs)
}
