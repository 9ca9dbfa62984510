package redis_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/streamerd/streamer/internal/redistest"
	"github.com/streamerd/streamer/internal/testwait"
	"github.com/streamerd/streamer/store"
	"github.com/streamerd/streamer/store/redis"
	"github.com/streamerd/streamer/store/storetest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// Caps the conformance suite runs with.
const (
	logMaxLen    = 100
	outboxMaxLen = 100
)

var prefixes atomic.Int64

// newPrefix returns a key prefix no other backend of this test binary uses,
// so that every backend starts empty on a shared server.
func newPrefix() string {
	return fmt.Sprintf("t%d.%d", time.Now().UnixNano()%1e6, prefixes.Add(1))
}

// testLogger writes the backend's log lines into the test's output.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), nil))
}

// newBackend returns a backend on srv (unless cfg sets Client), with a fresh
// prefix unless cfg sets one, closed by t.Cleanup.
func newBackend(t testing.TB, srv *redistest.Server, cfg redis.Config) (*store.Backend, redis.Keys) {
	t.Helper()
	if cfg.Client == nil {
		cfg.URL = srv.URL()
	}
	if cfg.Prefix == "" {
		cfg.Prefix = newPrefix()
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	b, err := redis.New(t.Context(), cfg)
	if err != nil {
		t.Fatalf("redis.New: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b, redis.Keys{Prefix: cfg.Prefix}
}

// rawClient is a plain client for inspecting the server.
func rawClient(t testing.TB, srv *redistest.Server) *goredis.Client {
	t.Helper()
	opt, err := goredis.ParseURL(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	c := goredis.NewClient(opt)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// conformance runs the store conformance suite on backends created from
// url, each with a fresh prefix.
func conformance(t *testing.T, url string, multi bool) {
	conformanceWaiting(t, url, multi, 0)
}

// conformanceWaiting is conformance with Config.WaitReplicas wait.
func conformanceWaiting(t *testing.T, url string, multi bool, wait int) {
	storetest.Run(t, func(t *testing.T) *store.Backend {
		b, err := redis.New(t.Context(), redis.Config{
			URL: url, Prefix: newPrefix(), MaxLen: logMaxLen, OutboxMaxLen: outboxMaxLen, OutboxMaxBytes: storetest.OutboxBytesCap, Logger: testLogger(t),
			WaitReplicas: wait,
		})
		if err != nil {
			t.Fatalf("redis.New: %v", err)
		}
		if (b.Multi != nil) != multi {
			t.Fatalf("Backend.Multi set: %v, want %v (only Cluster cannot read partitions together)", b.Multi != nil, multi)
		}
		return b
	}, storetest.Options{LogMaxLen: logMaxLen, OutboxMaxLen: outboxMaxLen, OutboxMaxBytes: storetest.OutboxBytesCap, BlockedReads: blockedClients(t, url)})
}

// blockedClients returns the conformance suite's BlockedReads for the Redis
// at url: its INFO clients blocked_clients (every scenario has the server to
// itself while it runs).
func blockedClients(t *testing.T, url string) func(*store.Backend) int {
	client, err := redis.NewClient(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close() })
	count := func(c goredis.Cmdable) int {
		info, err := c.Info(context.Background(), "clients").Result()
		if err != nil {
			t.Errorf("INFO clients: %v", err)
			return 0
		}
		_, rest, _ := strings.Cut(info, "blocked_clients:")
		n, _ := strconv.Atoi(rest[:max(strings.IndexAny(rest, "\r\n"), 0)])
		return n
	}
	return func(*store.Backend) int {
		cc, ok := client.(*goredis.ClusterClient)
		if !ok {
			return count(client)
		}
		var mu sync.Mutex
		total := 0
		err := cc.ForEachMaster(context.Background(), func(ctx context.Context, c *goredis.Client) error {
			n := count(c)
			mu.Lock()
			total += n
			mu.Unlock()
			return nil
		})
		if err != nil {
			t.Errorf("INFO clients on the masters: %v", err)
		}
		return total
	}
}

func TestConformance(t *testing.T) {
	conformance(t, redistest.Start(t).URL(), true)
}

// TestConformanceRESP2 runs the suite over RESP2 (go-redis speaks RESP3
// by default), whose replies the raw reads (resp.go) parse differently.
func TestConformanceRESP2(t *testing.T) {
	conformance(t, redistest.Start(t).URL()+"?protocol=2", true)
}

// TestConformanceOnCluster runs the suite through a cluster client against
// a one-node Redis Cluster, which refuses cross-slot scripts and
// transactions like a real one: it checks that every multi-key operation
// stays within one hash tag.
func TestConformanceOnCluster(t *testing.T) {
	conformance(t, "redis://"+redistest.Start(t, redistest.WithCluster()).Addr()+"?cluster=true", false)
}

// TestConformanceOnRealCluster runs the suite on a Redis Cluster of three
// masters with a replica each: partitions, outboxes and subscriptions on
// different shards, reached through MOVED redirections.
func TestConformanceOnRealCluster(t *testing.T) {
	c := redistest.StartCluster(t, 3, 1)
	conformance(t, "redis://"+c.Nodes[0].Addr()+"?cluster=true", false)
}

// TestConformanceOnRealClusterWaitingForReplicas runs the suite on such a
// cluster, password-protected (the URL's credentials reach every node the
// client discovers; the replicas authenticate to their masters), with
// WaitReplicas 1: the writes that acknowledge data and their WAIT go to
// the master of their slot, on one connection.
func TestConformanceOnRealClusterWaitingForReplicas(t *testing.T) {
	c := redistest.StartCluster(t, 3, 1, redistest.WithPassword("s3cret/+"))
	conformanceWaiting(t, "redis://:"+url.QueryEscape("s3cret/+")+"@"+c.Nodes[0].Addr()+"?cluster=true", false, 1)
}

// TestConformanceWaitingForReplicas runs the suite on a master with one
// replica and WaitReplicas 1.
func TestConformanceWaitingForReplicas(t *testing.T) {
	master, _ := startReplicated(t)
	conformanceWaiting(t, master.URL(), true, 1)
}

// startReplicated starts a master and a replica of it, and waits until the
// replica is in sync.
func startReplicated(t *testing.T) (master, replica *redistest.Server) {
	t.Helper()
	master = redistest.Start(t)
	host, port, _ := strings.Cut(master.Addr(), ":")
	replica = redistest.Start(t, redistest.WithArgs("--replicaof", host, port))
	if f := testwait.Until(30*time.Second, func() (bool, any) {
		info, err := replica.Do("INFO", "replication")
		return err == nil && strings.Contains(info, "master_link_status:up"), info
	}); f != nil {
		t.Fatalf("replica of %s not in sync: %v", master.Addr(), f)
	}
	return master, replica
}

// TestWaitReplicasRefusesUnreplicatedWrites: with WaitReplicas 1, every
// write that acknowledges data succeeds while the replica follows, and
// fails with ErrNotReplicated once it is gone (the master has the write, a
// failover could lose it): appends, outbox appends, checkpoints,
// subscriptions. Without WaitReplicas the same writes succeed.
func TestWaitReplicasRefusesUnreplicatedWrites(t *testing.T) {
	master, replica := startReplicated(t)
	ctx := t.Context()
	open := func(wait int) *store.Backend {
		b, err := redis.New(ctx, redis.Config{URL: master.URL(), Prefix: newPrefix(), Partitions: 2, WaitReplicas: wait,
			WaitTimeout: 200 * time.Millisecond, Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = b.Close() })
		return b
	}
	waiting, plain := open(1), open(0)
	writes := func(b *store.Backend) map[string]error {
		_, appendErr := b.Log.Append(ctx, 0, []byte("e"))
		many := []store.PartitionAppend{{P: 0, Payloads: [][]byte{[]byte("a")}}, {P: 1, Payloads: [][]byte{[]byte("b")}}}
		b.Log.AppendMany(ctx, many)
		_, outboxErr := b.Outboxes.Append(ctx, []store.OutboxItem{{Gateway: "g", Payload: []byte("x")}, {Gateway: "h", Payload: []byte("y")}})
		return map[string]error{
			"append":      appendErr,
			"append many": errors.Join(many[0].Err, many[1].Err),
			"outbox":      outboxErr,
			"checkpoint":  b.Checkpoints.Save(ctx, "puller", []byte("token")),
			"subscribe":   b.Subscriptions.Put(ctx, "g", store.StoredSubscription{ID: "s", Data: []byte("d"), Tenant: "t"}, time.Minute),
		}
	}
	for op, err := range writes(waiting) {
		if err != nil {
			t.Errorf("%s with the replica in sync: %v", op, err)
		}
	}
	replica.Kill()
	for op, err := range writes(waiting) {
		if !errors.Is(err, redis.ErrNotReplicated) {
			t.Errorf("%s without a replica: %v, want ErrNotReplicated", op, err)
		}
	}
	for op, err := range writes(plain) {
		if err != nil {
			t.Errorf("%s without a replica, not waiting: %v", op, err)
		}
	}
}

// TestConformanceWithSentinel runs the suite through a Sentinel URL.
func TestConformanceWithSentinel(t *testing.T) {
	sentinel := redistest.StartSentinel(t, redistest.Start(t), "mymaster")
	conformance(t, "redis://"+sentinel.Addr()+"?master_name=mymaster", true)
}

func TestKeyLayout(t *testing.T) {
	srv := redistest.Start(t)
	raw := rawClient(t, srv)
	ctx := t.Context()
	b, _ := newBackend(t, srv, redis.Config{Prefix: "stm", Partitions: 4})

	if _, err := b.Log.Append(ctx, 3, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := b.Log.DeadLetter(ctx, 3, store.Entry{ID: "1-1"}, "bad"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Leases.Acquire(ctx, 3, "n1", time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := b.Nodes.Heartbeat(ctx, "n1", time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := b.Subscriptions.Put(ctx, "G", store.StoredSubscription{ID: "s", Tenant: "t", Partition: 0, Data: []byte("x")}, time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Outboxes.Append(ctx, []store.OutboxItem{{Gateway: "G", Payload: []byte("x")}, {Gateway: "G", Payload: []byte("y")}}); err != nil {
		t.Fatal(err)
	}
	last, err := b.Outboxes.Last(ctx, "G")
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Outboxes.Trim(ctx, "G", last); err != nil { // records the deleted id, deletes the stream's entries
		t.Fatal(err)
	}
	if _, err := b.Outboxes.Append(ctx, []store.OutboxItem{{Gateway: "G", Payload: []byte("z")}}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Sessions.Claim(ctx, "G", "n1"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Locks.Acquire(ctx, "leader", "n1", time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := b.Checkpoints.Save(ctx, "puller", []byte("tok")); err != nil {
		t.Fatal(err)
	}

	want := map[string]string{
		"stm:meta":                "hash",
		"stm:{p:0}:events":        "stream",
		"stm:{p:3}:events":        "stream",
		"stm:{p:3}:dead":          "stream",
		"stm:{p:3}:lease":         "string",
		"stm:nodes":               "zset",
		"stm:{gw:G}:subs":         "hash",
		"stm:{gw:G}:subs:0":       "set",
		"stm:{gw:G}:subsidx":      "string",
		"stm:{gw:G}:substenant":   "hash",
		"stm:tenantsubs":          "hash",
		"stm:{gw:G}:out":          "stream",
		"stm:{gw:G}:outdel":       "string",
		"stm:{gw:G}:outmeta":      "hash",
		"stm:{gw:G}:outsz":        "stream",
		"stm:{gw:G}:session":      "string",
		"stm:gateways":            "zset",
		"stm:{lock:leader}":       "string",
		"stm:checkpoint:{puller}": "string",
	}
	keys, err := raw.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, k := range keys {
		got[k] = raw.Type(ctx, k).Val()
	}
	for k, typ := range want {
		if got[k] != typ {
			t.Errorf("key %s: type %q, want %q", k, got[k], typ)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok && !strings.HasSuffix(k, ":events") {
			t.Errorf("unexpected key %s", k)
		}
	}
	if n := len(got); n != len(want)+2 { // partitions 1 and 2 have empty streams
		t.Errorf("%d keys, want %d: %v", n, len(want)+2, keys)
	}
	groups, err := raw.XInfoGroups(ctx, "stm:{p:2}:events").Result()
	if err != nil || len(groups) != 1 || groups[0].Name != store.Group {
		t.Errorf("groups of an untouched partition = %+v, %v; want one named %q", groups, err, store.Group)
	}
	if p := raw.HGet(ctx, "stm:meta", "partitions").Val(); p != "4" {
		t.Errorf("stm:meta partitions = %q, want 4", p)
	}
	if ttl := raw.PTTL(ctx, "stm:{gw:G}:subs").Val(); ttl <= 0 || ttl > time.Minute {
		t.Errorf("PTTL of the subscription hash = %v, want (0, 1m]", ttl)
	}
}

func TestPartitionCountMismatchRefused(t *testing.T) {
	srv := redistest.Start(t)
	prefix := newPrefix()
	newBackend(t, srv, redis.Config{Prefix: prefix, Partitions: 16})

	b, err := redis.New(t.Context(), redis.Config{URL: srv.URL(), Prefix: prefix, Partitions: 8})
	if err == nil {
		_ = b.Close()
		t.Fatal("New with 8 partitions where Redis records 16 succeeded")
	}
	if !errors.Is(err, redis.ErrPartitionMismatch) || !strings.Contains(err.Error(), "16") || !strings.Contains(err.Error(), " 8") {
		t.Errorf("error = %v; want ErrPartitionMismatch naming 16 and 8", err)
	}
	again, _ := newBackend(t, srv, redis.Config{Prefix: prefix}) // the default is 16 too
	if n := again.Log.Partitions(); n != 16 {
		t.Errorf("Partitions = %d, want 16", n)
	}
	other, _ := newBackend(t, srv, redis.Config{Partitions: 8}) // another prefix is another deployment
	if n := other.Log.Partitions(); n != 8 {
		t.Errorf("Partitions = %d, want 8", n)
	}
}

func TestConfigRejected(t *testing.T) {
	client := goredis.NewClient(&goredis.Options{Addr: "127.0.0.1:1"})
	t.Cleanup(func() { _ = client.Close() })
	tests := []struct {
		name string
		cfg  redis.Config
		want error // nil: any error
	}{
		{"neither URL nor client", redis.Config{}, store.ErrInvalid},
		{"both URL and client", redis.Config{URL: "redis://127.0.0.1:1", Client: client}, store.ErrInvalid},
		{"prefix with a brace", redis.Config{URL: "redis://127.0.0.1:1", Prefix: "a{b"}, store.ErrInvalid},
		{"unknown scheme", redis.Config{URL: "http://127.0.0.1:1"}, nil},
		{"unknown option", redis.Config{URL: "redis://127.0.0.1:1?nope=1"}, nil},
		{"unreachable", redis.Config{URL: "redis://127.0.0.1:1?dial_timeout=100ms&max_retries=-1"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := redis.New(t.Context(), tt.cfg)
			if err == nil {
				_ = b.Close()
				t.Fatal("New succeeded")
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("error = %v, want one wrapping %v", err, tt.want)
			}
		})
	}
}

func TestNewClientKinds(t *testing.T) {
	tests := []struct {
		url  string
		want string
	}{
		{"redis://127.0.0.1:1", "*redis.Client"},
		{"rediss://127.0.0.1:1/2", "*redis.Client"},
		{"unix:///tmp/redis.sock", "*redis.Client"},
		{"redis://127.0.0.1:1?addr=127.0.0.1:2", "*redis.ClusterClient"},
		{"redis://127.0.0.1:1?cluster=true", "*redis.ClusterClient"},
		{"redis://127.0.0.1:1?master_name=mymaster&addr=127.0.0.1:2", "*redis.Client"},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			c, err := redis.NewClient(tt.url)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if got := fmt.Sprintf("%T", c); got != tt.want {
				t.Errorf("client is %s, want %s", got, tt.want)
			}
		})
	}
}

func TestNewClientRefusesShortReadTimeout(t *testing.T) {
	for _, url := range []string{
		"redis://127.0.0.1:1?read_timeout=50ms",
		"redis://127.0.0.1:1?cluster=true&read_timeout=150ms",
		"redis://127.0.0.1:1?master_name=m&addr=127.0.0.1:2&read_timeout=100ms",
	} {
		if c, err := redis.NewClient(url); !errors.Is(err, store.ErrInvalid) {
			if c != nil {
				c.Close()
			}
			t.Errorf("NewClient(%s) = %v, want an error wrapping ErrInvalid", url, err)
		}
	}
	for _, url := range []string{"redis://127.0.0.1:1?read_timeout=200ms", "redis://127.0.0.1:1?read_timeout=-1"} {
		c, err := redis.NewClient(url)
		if err != nil {
			t.Errorf("NewClient(%s): %v", url, err)
			continue
		}
		c.Close()
	}
}

// TestExpiredGatewayLeavesOnlyItsRetirement checks that the janitor's Forget
// plus Outboxes.Retire remove every key of a gateway, its session record
// included, but the outbox's retirement (an empty stream, outdel and
// outmeta: what makes a later resume see the expiry), and that a later
// session of the same gateway still gets a greater epoch.
func TestExpiredGatewayLeavesOnlyItsRetirement(t *testing.T) {
	srv := redistest.Start(t)
	raw := rawClient(t, srv)
	ctx := t.Context()
	b, keys := newBackend(t, srv, redis.Config{Partitions: 1})
	if err := b.Subscriptions.Put(ctx, "G", store.StoredSubscription{ID: "s", Tenant: "t", Partition: 0, Data: []byte("x")}, time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Outboxes.Append(ctx, []store.OutboxItem{{Gateway: "G", Payload: []byte("x")}}); err != nil {
		t.Fatal(err)
	}
	epoch, err := b.Sessions.Claim(ctx, "G", "n1")
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Sessions.Release(ctx, "G", "n1", epoch); err != nil {
		t.Fatal(err)
	}
	if err := b.Subscriptions.Forget(ctx, "G"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Outboxes.Retire(ctx, "G", map[int]string{0: "1-0"}); err != nil {
		t.Fatal(err)
	}
	left, err := raw.Keys(ctx, keys.Prefix+":{gw:G}*").Result()
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(left)
	if want := []string{keys.Outbox("G"), keys.OutboxDeleted("G"), keys.OutboxMeta("G")}; !slices.Equal(left, want) {
		t.Fatalf("keys left after Forget and Retire: %v, want %v", left, want)
	}
	if n, err := raw.XLen(ctx, keys.Outbox("G")).Result(); err != nil || n != 0 {
		t.Fatalf("retired outbox holds %d entries (%v)", n, err)
	}
	next, err := b.Sessions.Claim(ctx, "G", "n2")
	if err != nil || next <= epoch {
		t.Fatalf("Claim after Forget = %d, %v; want an epoch > %d", next, err, epoch)
	}
}

// TestAppendManyWakesReadersOnce: without Cluster one AppendMany over
// several partitions is one script, so a reader blocked on all of them
// wakes once and finds every partition's entries (one script per partition
// woke it after the first, with one partition's share). Before Redis 7.2 the
// woken read itself brings one partition's entries; the wake-up read queued
// behind it (resp.go) brings the others in the same round trip.
func TestAppendManyWakesReadersOnce(t *testing.T) {
	srv := redistest.Start(t)
	b, _ := newBackend(t, srv, redis.Config{Partitions: 4})
	ctx := t.Context()
	routes := []store.PartitionRoute{{P: 0}, {P: 1}, {P: 2}, {P: 3}}
	if _, err := b.Multi.RouteReadMany(ctx, "c", routes, 0, -1); err != nil { // creates the groups
		t.Fatal(err)
	}
	for round := range 20 {
		done := make(chan error, 1)
		go func() {
			_, err := b.Multi.RouteReadMany(ctx, "c", routes, 0, 10*time.Second)
			done <- err
		}()
		waitBlocked(t, srv, 1)
		appends := []store.PartitionAppend{
			{P: 0, Payloads: [][]byte{[]byte("a")}},
			{P: 2, Payloads: [][]byte{[]byte("b"), []byte("c")}},
			{P: 3, Payloads: [][]byte{[]byte("d")}},
		}
		b.Log.AppendMany(ctx, appends)
		for _, a := range appends {
			if a.Err != nil {
				t.Fatal(a.Err)
			}
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		got := []int{len(routes[0].Entries), len(routes[1].Entries), len(routes[2].Entries), len(routes[3].Entries)}
		if !slices.Equal(got, []int{1, 0, 2, 1}) {
			t.Fatalf("round %d: one wake-up read %v entries per partition, want [1 0 2 1]", round, got)
		}
		for i := range routes {
			for _, e := range routes[i].Entries {
				routes[i].Ack = append(routes[i].Ack, e.ID)
			}
		}
	}
}

// TestOutboxAppendWakesFetchOnce: one append to several outboxes answers a
// FetchMany blocked on all of them with every outbox's entries, whatever the
// server version (see TestAppendManyWakesReadersOnce), and a second round
// from the new cursors finds them again when they are all read.
func TestOutboxAppendWakesFetchOnce(t *testing.T) {
	srv := redistest.Start(t)
	b, _ := newBackend(t, srv, redis.Config{Partitions: 1})
	ctx := t.Context()
	fetches := []store.OutboxFetch{{Gateway: "a"}, {Gateway: "b"}, {Gateway: "c"}}
	for round := range 10 {
		done := make(chan error, 1)
		go func() { done <- b.MultiFetch.FetchMany(ctx, fetches, 100, 10*time.Second) }()
		waitBlocked(t, srv, 1)
		items := []store.OutboxItem{
			{Gateway: "c", Payload: []byte("c1")},
			{Gateway: "a", Payload: []byte("a1")},
			{Gateway: "c", Payload: []byte("c2")},
		}
		if _, err := b.Outboxes.Append(ctx, items); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		got := []int{len(fetches[0].Entries), len(fetches[1].Entries), len(fetches[2].Entries)}
		if !slices.Equal(got, []int{1, 0, 2}) {
			t.Fatalf("round %d: one wake-up fetched %v entries per outbox, want [1 0 2]", round, got)
		}
		if p := string(fetches[2].Entries[1].Payload); p != "c2" || fetches[0].Lost || fetches[2].Lost {
			t.Fatalf("round %d: last entry of c %q, lost %v %v", round, p, fetches[0].Lost, fetches[2].Lost)
		}
		for i := range fetches {
			if n := len(fetches[i].Entries); n > 0 {
				fetches[i].After = fetches[i].Entries[n-1].ID
			}
		}
	}
}

// TestAppendManyFailsOnlyTheBrokenPartition: a partition whose stream key
// holds another type fails alone; the others of the same call are
// appended and get their ids.
func TestAppendManyFailsOnlyTheBrokenPartition(t *testing.T) {
	srv := redistest.Start(t)
	raw := rawClient(t, srv)
	b, keys := newBackend(t, srv, redis.Config{Partitions: 3})
	ctx := t.Context()
	if err := raw.Del(ctx, keys.Events(1)).Err(); err != nil {
		t.Fatal(err)
	}
	if err := raw.Set(ctx, keys.Events(1), "not a stream", 0).Err(); err != nil {
		t.Fatal(err)
	}
	appends := []store.PartitionAppend{
		{P: 0, Payloads: [][]byte{[]byte("a"), []byte("b")}},
		{P: 1, Payloads: [][]byte{[]byte("x")}},
		{P: 2, Payloads: [][]byte{[]byte("c")}},
	}
	b.Log.AppendMany(ctx, appends)
	if err := appends[1].Err; err == nil || !strings.Contains(err.Error(), "WRONGTYPE") || appends[1].IDs != nil {
		t.Errorf("partition 1 (not a stream): ids %v, error %v; want a WRONGTYPE error", appends[1].IDs, err)
	}
	for _, i := range []int{0, 2} {
		a := appends[i]
		if a.Err != nil || len(a.IDs) != len(a.Payloads) {
			t.Fatalf("partition %d: ids %v, error %v; want %d ids", a.P, a.IDs, a.Err, len(a.Payloads))
		}
		n, err := raw.XLen(ctx, keys.Events(a.P)).Result()
		if err != nil || n != int64(len(a.Payloads)) {
			t.Errorf("partition %d holds %d entries (%v), want %d", a.P, n, err, len(a.Payloads))
		}
	}
}

// waitBlocked waits until srv has at least n clients blocked in a command.
func waitBlocked(t *testing.T, srv *redistest.Server, n int) {
	t.Helper()
	raw := rawClient(t, srv)
	want := fmt.Sprintf("blocked_clients:%d\r", n)
	testwait.ForState(t, fmt.Sprintf("%d client(s) blocked on %s", n, srv.Addr()), func() (bool, any) {
		info, err := raw.Info(t.Context(), "clients").Result()
		if err != nil {
			t.Fatal(err)
		}
		return strings.Contains(info, want), info
	})
}

// commandCalls returns how many times srv has run cmd (lower case), from
// INFO commandstats.
func commandCalls(t *testing.T, srv *redistest.Server, cmd string) int {
	t.Helper()
	info, err := rawClient(t, srv).Info(t.Context(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(info, "cmdstat_"+cmd+":calls=")
	if !ok {
		return 0
	}
	n, err := strconv.Atoi(rest[:strings.IndexAny(rest, ",\r\n")])
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestListPartitionReadsLegacyGatewaysWhole: a gateway whose subscriptions
// were stored before the partition sets existed (no index marker) is read
// whole, so that a node taking over after an upgrade loses none of them;
// its next subscription keeps it that way.
func TestListPartitionReadsLegacyGatewaysWhole(t *testing.T) {
	srv := redistest.Start(t)
	raw := rawClient(t, srv)
	ctx := t.Context()
	b, keys := newBackend(t, srv, redis.Config{Partitions: 4})
	if err := raw.HSet(ctx, keys.Subs("old"), "a", "1", "b", "2").Err(); err != nil {
		t.Fatal(err)
	}
	got, err := b.Subscriptions.ListPartition(ctx, "old", 3)
	if err != nil || len(got) != 2 {
		t.Fatalf("ListPartition of a legacy gateway = %q, %v; want both subscriptions", got, err)
	}
	if err := b.Subscriptions.Put(ctx, "old", store.StoredSubscription{ID: "c", Tenant: "t", Partition: 1, Data: []byte("3")}, time.Minute); err != nil {
		t.Fatal(err)
	}
	if got, err := b.Subscriptions.ListPartition(ctx, "old", 3); err != nil || len(got) != 3 {
		t.Fatalf("after a new subscription: %q, %v; want all three (still read whole)", got, err)
	}
}
