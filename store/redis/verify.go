package redis

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/streamerd/streamer/internal/clock"
)

// Writes lost in a failover (Config.WaitReplicas 0).
//
// Redis replicates asynchronously: a master that dies can take with it the
// writes it acknowledged but had not yet sent to the replica that replaces
// it. Two such losses would be silent: an appended event (nobody will ever
// read it) and, on Cluster, where a gateway's outbox and the partitions
// live on different masters, outbox entries whose log entries were already
// acknowledged. (Elsewhere a failover loses a suffix of one master's
// writes: an outbox entry lost with the acknowledgement that followed it
// is delivered again.)
//
// The verifier announces them. It remembers, for each stream this backend
// appended to in the last verifyRetain, the last id it appended and the
// master that served the stream's slot. Every verifyEvery it reads which
// master serves each slot (CLUSTER SHARDS; off Cluster, the server's
// run_id): for a stream whose master changed, it checks that its last id
// is still there (replication is in order: then every earlier write of
// this backend to it is too), or was deleted on purpose (trimmed,
// acknowledged). If it is gone:
//   - an outbox gets a loss marker, an entry with an empty payload that
//     the gateway's session turns into a Resync at that point of its
//     stream;
//   - an event log partition gets a marker in the outbox of every gateway
//     with subscriptions in it.
//
// The Resync comes about verifyEvery after the failover: events of later
// positions may reach the gateway before it. A backend that dies together
// with the master announces nothing: --redis-wait-replicas is the guarantee.

// verifyEvery is how often the verifier looks for failovers;
// verifyRetain how long it remembers a stream after its last write (a
// failover later than that cannot lose the write unless the replica was
// that far behind); verifyMaxStreams bounds what it remembers.
const (
	verifyEvery      = time.Second
	verifyRetain     = time.Minute
	verifyMaxStreams = 100_000
)

// written is a stream this backend appended to.
type written struct {
	id      string    // the last id appended
	at      time.Time // when
	master  string    // the master serving its slot then; "" until the next round tells
	gateway string    // an outbox's gateway; "" for a partition
	p       int       // a partition's number
}

// verifier finds the writes a failover lost (see above).
type verifier struct {
	c       *core
	mu      sync.Mutex
	streams map[string]*written // by stream key
	full    bool                // verifyMaxStreams reached: logged once
	prev    func(slot int) string
	ctx     context.Context // canceled by close: a round in progress ends
	cancel  context.CancelFunc
	done    chan struct{}
}

func newVerifier(c *core) *verifier {
	ctx, cancel := context.WithCancel(context.Background())
	return &verifier{c: c, streams: map[string]*written{}, ctx: ctx, cancel: cancel, done: make(chan struct{})}
}

// wrote records that id was appended to stream key (an outbox of gateway,
// or partition p when gateway is "").
func (v *verifier) wrote(key, id, gateway string, p int) {
	if v == nil || id == "" {
		return
	}
	now := v.c.clock.Now()
	v.mu.Lock()
	defer v.mu.Unlock()
	if w := v.streams[key]; w != nil {
		w.id, w.at = id, now
		return
	}
	if len(v.streams) >= verifyMaxStreams {
		if !v.full {
			v.full = true
			v.c.log.Warn("redis: tracking the maximum of streams for failover losses; writes to others go unchecked", "max", verifyMaxStreams)
		}
		return
	}
	v.streams[key] = &written{id: id, at: now, gateway: gateway, p: p}
}

// run checks every verifyEvery until close.
func (v *verifier) run() {
	defer close(v.done)
	t := v.c.clock.NewTicker(verifyEvery)
	defer t.Stop()
	for {
		select {
		case <-v.ctx.Done():
			return
		case <-t.C():
		}
		ctx, cancel := clock.WithTimeout(v.ctx, v.c.clock, verifyEvery)
		if err := v.round(ctx); err != nil && ctx.Err() == nil && !v.c.closed.Load() {
			v.c.log.Debug("redis: checking for writes lost in a failover", "err", err)
		}
		cancel()
	}
}

func (v *verifier) close() {
	v.cancel()
	<-v.done
}

// round reads the slots' masters and checks the streams whose master
// changed since they were written.
func (v *verifier) round(ctx context.Context) error {
	v.mu.Lock()
	now := v.c.clock.Now()
	for k, w := range v.streams {
		if now.Sub(w.at) > verifyRetain {
			delete(v.streams, k)
		}
	}
	if len(v.streams) == 0 {
		v.mu.Unlock()
		return nil
	}
	v.mu.Unlock()
	masters, err := v.masters(ctx)
	if err != nil {
		return err
	}
	type check struct {
		key string
		w   written
		now string // the master now
	}
	var checks []check
	v.mu.Lock()
	for k, w := range v.streams {
		slot := keySlot(k)
		if w.master == "" { // written since the last round: its master then
			if v.prev == nil {
				w.master = "?" // none known: check
			} else {
				w.master = v.prev(slot)
			}
		}
		if m := masters(slot); m != w.master {
			checks = append(checks, check{k, *w, m})
		}
	}
	v.prev = masters
	v.mu.Unlock()
	if len(checks) == 0 {
		return nil
	}
	pipe := v.c.client.Pipeline()
	cmds := make([]*goredis.Cmd, len(checks))
	for i, ch := range checks {
		if ch.w.gateway != "" {
			cmds[i] = scriptVerifyOutbox.Eval(ctx, pipe, (&Outboxes{v.c}).keys(ch.w.gateway), ch.w.id)
		} else {
			cmds[i] = scriptVerifyLog.Eval(ctx, pipe, []string{ch.key}, ch.w.id)
		}
	}
	_, _ = pipe.Exec(ctx) // errors are per command
	var lostParts []int
	var lostChecks []check
	var firstErr error
	for i, ch := range checks {
		if err := cmds[i].Err(); err != nil {
			firstErr = firstOf(firstErr, err)
			continue // checked again next round
		}
		switch marker, _ := cmds[i].Val().(string); {
		case marker != "": // an outbox: lost, and marked
			v.c.log.Error("redis: a failover lost outbox entries not yet delivered; the gateway gets a Resync",
				"gateway", ch.w.gateway, "last_written", ch.w.id, "marker", marker)
			// Checked again (another node's view of the slots may still be
			// the old one), it is the marker that must be there.
			ch.w.id = marker
			v.settle(ch.key, ch.w, ch.now, marker)
		case ch.w.gateway == "" && cmds[i].Val() == int64(0):
			lostParts = append(lostParts, ch.w.p)
			lostChecks = append(lostChecks, ch)
		default:
			v.settle(ch.key, ch.w, ch.now, ch.w.id)
		}
	}
	if len(lostParts) > 0 {
		if err := v.markPartitions(ctx, lostParts); err != nil {
			return firstOf(firstErr, err)
		}
		v.mu.Lock()
		for _, ch := range lostChecks { // announced: forgotten, unless written since
			if cur := v.streams[ch.key]; cur != nil && cur.id == ch.w.id {
				delete(v.streams, ch.key)
			}
		}
		v.mu.Unlock()
	}
	return firstErr
}

// settle records that stream key, as written (w), is accounted for under
// master, with id its last entry: unless written again since.
func (v *verifier) settle(key string, w written, master, id string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if cur := v.streams[key]; cur != nil && cur.at.Equal(w.at) {
		cur.master, cur.id = master, id
	}
}

// markPartitions puts a loss marker in the outbox of every gateway with
// subscriptions in one of parts.
func (v *verifier) markPartitions(ctx context.Context, parts []int) error {
	c := v.c
	gateways, err := c.client.ZRange(ctx, c.keys.Gateways(), 0, -1).Result()
	if err != nil {
		return err
	}
	pipe := c.client.Pipeline()
	counts := make([][]*goredis.IntCmd, len(gateways))
	for i, g := range gateways {
		for _, p := range parts {
			counts[i] = append(counts[i], pipe.SCard(ctx, c.keys.SubsIn(g, p)))
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return err
	}
	var marked []string
	pipe = c.client.Pipeline()
	for i, g := range gateways {
		for _, n := range counts[i] {
			if n.Val() > 0 {
				scriptOutboxMarkLost.Eval(ctx, pipe, (&Outboxes{c}).keys(g))
				marked = append(marked, g)
				break
			}
		}
	}
	if len(marked) > 0 {
		if _, err := pipe.Exec(ctx); err != nil {
			return err
		}
	}
	c.log.Error("redis: a failover lost appended events; the gateways with subscriptions in their partitions get a Resync",
		"partitions", fmt.Sprint(parts), "gateways", len(marked))
	return nil
}

// masters returns which master serves each slot now: on Cluster the node
// id CLUSTER SHARDS gives, elsewhere the server's run_id for every slot.
func (v *verifier) masters(ctx context.Context) (func(slot int) string, error) {
	if cc, ok := v.c.client.(*goredis.ClusterClient); ok {
		shards, err := cc.ClusterShards(ctx).Result()
		if err != nil {
			return nil, err
		}
		var bySlot [16384]string
		for _, sh := range shards {
			master := ""
			for _, n := range sh.Nodes {
				if n.Role == "master" && (master == "" || n.Health == "online") {
					master = n.ID
				}
			}
			for _, r := range sh.Slots {
				for i := max(r.Start, 0); i <= r.End && i < int64(len(bySlot)); i++ {
					bySlot[i] = master
				}
			}
		}
		return func(slot int) string { return bySlot[slot] }, nil
	}
	info, err := v.c.client.Info(ctx, "server").Result()
	if err != nil {
		return nil, err
	}
	_, rest, _ := strings.Cut(info, "run_id:")
	id, _, _ := strings.Cut(rest, "\r\n")
	return func(int) string { return id }, nil
}

// firstOf keeps the first error.
func firstOf(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

// keySlot is the Redis Cluster slot of key: CRC16 (XMODEM) of its hash tag
// (the first {…} with something inside) or of the whole key, mod 16384.
func keySlot(key string) int {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	var crc uint16
	for i := 0; i < len(key); i++ {
		crc ^= uint16(key[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return int(crc) % 16384
}
