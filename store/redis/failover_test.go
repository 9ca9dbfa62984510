package redis_test

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/streamerd/streamer/internal/redistest"
	"github.com/streamerd/streamer/internal/testwait"
	"github.com/streamerd/streamer/store"
	"github.com/streamerd/streamer/store/redis"
)

// TestFailoverLossesAreAnnounced: writes that a killed master acknowledged
// but never replicated (its replica was paused) are gone once the replica
// takes over; without WaitReplicas the backend finds out and puts loss
// markers (entries with an empty payload, read as a Resync) in the outbox
// that lost entries and in the outbox of every gateway with subscriptions
// in the partition that lost events, and in no other.
func TestFailoverLossesAreAnnounced(t *testing.T) {
	c := redistest.StartCluster(t, 3, 1)
	url := "redis://" + c.Nodes[0].Addr() + "?cluster=true"
	const partitions = 16
	prefix := newPrefix()
	b, err := redis.New(t.Context(), redis.Config{URL: url, Prefix: prefix, Partitions: partitions, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	keys := redis.Keys{Prefix: prefix}
	ctx := t.Context()
	cc, err := redis.NewClient(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	masterOf := func(key string) string {
		m, err := cc.(*goredis.ClusterClient).MasterForKey(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		return m.Options().Addr
	}

	// The victim master holds partition p and gateway g's outbox;
	// gateway "sub" (subscribed in p) and "other" (subscribed elsewhere)
	// have their outboxes on other masters.
	victim := masterOf(keys.Events(0))
	p := 0
	var g, sub, other string
	for i := 0; g == "" || sub == "" || other == ""; i++ {
		name := "gw" + strconv.Itoa(i)
		switch on := masterOf(keys.Outbox(name)) == victim; {
		case on && g == "":
			g = name
		case !on && sub == "":
			sub = name
		case !on && other == "":
			other = name
		}
	}
	q := 1
	for masterOf(keys.Events(q)) == victim {
		q++
	}
	for _, s := range []struct {
		gw string
		p  int
	}{{sub, p}, {other, q}} {
		if err := b.Subscriptions.Put(ctx, s.gw, store.StoredSubscription{ID: "s", Data: []byte("d"), Tenant: "t", Partition: s.p}, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	kept, err := b.Log.Append(ctx, p, []byte("kept"))
	if err != nil {
		t.Fatal(err)
	}
	keptOut, err := b.Outboxes.Append(ctx, []store.OutboxItem{{Gateway: g, Payload: []byte("kept")}})
	if err != nil {
		t.Fatal(err)
	}
	var m, r *redistest.Server
	for _, s := range c.Nodes {
		if s.Addr() == victim {
			m = s
		}
	}
	if r = c.ReplicaOf(m); r == nil {
		t.Fatalf("no replica of %s", victim)
	}
	waitUntilReplicated(t, m, r)

	// Acknowledged by the master, never replicated: the replica is paused
	// and its link cut (a paused process's socket would still take in
	// what the master sent).
	r.Pause()
	if n, err := m.Do("CLIENT", "KILL", "TYPE", "replica"); err != nil || n != "1" {
		t.Fatalf("CLIENT KILL TYPE replica on %s: %q %v", m.Addr(), n, err)
	}
	lost, err := b.Log.Append(ctx, p, []byte("lost"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Outboxes.Append(ctx, []store.OutboxItem{{Gateway: g, Payload: []byte("lost")}}); err != nil {
		t.Fatal(err)
	}
	m.Kill()
	r.Resume()
	if reply, err := r.Do("CLUSTER", "FAILOVER", "TAKEOVER"); err != nil || reply != "OK" {
		t.Fatalf("CLUSTER FAILOVER TAKEOVER: %q %v", reply, err)
	}

	entries := func(gw string) []store.Entry {
		es, err := b.Outboxes.Read(ctx, gw, "0-0", 100, 0)
		if err != nil {
			return nil
		}
		return es
	}
	marked := func(gw string) bool {
		for _, e := range entries(gw) {
			if len(e.Payload) == 0 {
				return true
			}
		}
		return false
	}
	if f := testwait.Until(30*time.Second, func() (bool, any) {
		return marked(g) && marked(sub), map[string][]store.Entry{g: entries(g), sub: entries(sub)}
	}); f != nil {
		t.Fatalf("no loss markers in the outboxes of %s (lost an entry) and %s (subscribed in partition %d, which lost event %s): %v", g, sub, p, lost[0], f)
	}
	if es := entries(g); len(es) != 2 || es[0].ID != keptOut[0] || string(es[0].Payload) != "kept" {
		t.Errorf("outbox of %s after the failover: %v, want the kept entry %s then the marker", g, es, keptOut[0])
	}
	if marked(other) {
		t.Errorf("outbox of %s (subscribed in partition %d, nothing lost) got a loss marker", other, q)
	}
	var ids []goredis.XMessage
	if f := testwait.Until(10*time.Second, func() (bool, any) {
		ids, err = cc.XRange(ctx, keys.Events(p), "-", "+").Result()
		if err != nil {
			cc.(*goredis.ClusterClient).ReloadState(ctx) // go-redis alone would not (see topology.go)
		}
		return err == nil, err
	}); f != nil {
		t.Fatal(f)
	}
	if len(ids) != 1 || ids[0].ID != kept[0] {
		t.Errorf("partition %d after the failover: %v, want only %s (the test's premise: %s was lost)", p, ids, kept[0], lost[0])
	}
}

// waitUntilReplicated waits until replica r has every write of master m
// so far (its replication offset has reached the master's).
func waitUntilReplicated(t *testing.T, m, r *redistest.Server) {
	t.Helper()
	offset := func(s *redistest.Server, field string) int64 {
		info, err := s.Do("INFO", "replication")
		if err != nil {
			return -1
		}
		_, rest, _ := strings.Cut(info, field+":")
		v, _, _ := strings.Cut(rest, "\r\n")
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return -1
		}
		return n
	}
	want := offset(m, "master_repl_offset")
	if f := testwait.Until(10*time.Second, func() (bool, any) {
		got := offset(r, "slave_repl_offset")
		return want >= 0 && got >= want, got
	}); f != nil {
		t.Fatalf("replica %s did not reach offset %d of %s: %v", r.Addr(), want, m.Addr(), f)
	}
}

// TestSentinelFailoverLossesAreAnnounced: the same off Cluster, through
// Sentinel. A failover there loses a suffix of the master's writes; the
// backend sees the master change (its run_id) and checks what it
// appended: the lost event gets a loss marker in the outbox of the gateway
// subscribed in its partition.
func TestSentinelFailoverLossesAreAnnounced(t *testing.T) {
	master := redistest.Start(t)
	host, port, _ := strings.Cut(master.Addr(), ":")
	replica := redistest.Start(t, redistest.WithArgs("--replicaof", host, port))
	waitUntilReplicated(t, master, replica)
	sentinel := redistest.StartSentinel(t, master, "m")
	if f := testwait.Until(30*time.Second, func() (bool, any) {
		info, err := sentinel.Do("INFO", "sentinel")
		return err == nil && strings.Contains(info, "slaves=1"), info
	}); f != nil {
		t.Fatalf("sentinel does not know the replica: %v", f)
	}
	prefix := newPrefix()
	b, err := redis.New(t.Context(), redis.Config{URL: "redis://" + sentinel.Addr() + "?master_name=m", Prefix: prefix, Partitions: 2, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	ctx := t.Context()
	if err := b.Subscriptions.Put(ctx, "sub", store.StoredSubscription{ID: "s", Data: []byte("d"), Tenant: "t", Partition: 0}, time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Log.Append(ctx, 0, []byte("kept")); err != nil {
		t.Fatal(err)
	}
	waitUntilReplicated(t, master, replica)

	replica.Pause()
	if n, err := master.Do("CLIENT", "KILL", "TYPE", "replica"); err != nil || n != "1" {
		t.Fatalf("CLIENT KILL TYPE replica: %q %v", n, err)
	}
	if _, err := b.Log.Append(ctx, 0, []byte("lost")); err != nil {
		t.Fatal(err)
	}
	master.Kill()
	replica.Resume()
	if reply, err := sentinel.Do("SENTINEL", "FAILOVER", "m"); err != nil || reply != "OK" {
		t.Fatalf("SENTINEL FAILOVER: %q %v", reply, err)
	}
	if f := testwait.Until(30*time.Second, func() (bool, any) {
		es, err := b.Outboxes.Read(ctx, "sub", "0-0", 10, 0)
		return err == nil && len(es) == 1 && len(es[0].Payload) == 0, fmt.Sprint(es, err)
	}); f != nil {
		t.Fatalf("no loss marker in the outbox of the gateway subscribed in the partition that lost an event: %v", f)
	}
}
