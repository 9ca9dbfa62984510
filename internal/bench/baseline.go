package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/proto"

	"github.com/streamerd/streamer/match"
	streamerv1 "github.com/streamerd/streamer/proto/streamer/v1"
	"github.com/streamerd/streamer/store"
	"github.com/streamerd/streamer/store/redis"
)

// Baseline is one alternative measured in the same run as Streamer.
type Baseline struct {
	// What the baseline is, in a sentence.
	What string `json:"what"`
	// EventsPerSec the baseline sustained.
	EventsPerSec float64 `json:"events_per_sec"`
	// Ratio is Streamer's events_per_sec divided by the baseline's: above 1
	// Streamer is faster. It compares capacities only in a --rate max run;
	// at a fixed rate Streamer's figure is the offered rate.
	Ratio float64 `json:"ratio"`
	// P99Ms is the baseline's own 99th percentile latency, when it has one.
	P99Ms float64 `json:"p99_ms,omitempty"`
}

// Baselines are the alternatives measured; a nil one was not run.
type Baselines struct {
	// Naive is the design Streamer replaces: every gateway receives every
	// event and evaluates each of its subscriptions itself.
	Naive *Baseline `json:"naive,omitempty"`
	// RedisStreams is the raw XADD → XREADGROUP → XACK loop Streamer's
	// Redis mode is built on, with no matching: its physical ceiling.
	RedisStreams *Baseline `json:"redis_streams,omitempty"`
}

// naiveEvents is how many distinct events the naive baseline cycles
// through.
const naiveEvents = 1 << 14

// naiveBaseline runs Gateways goroutines that each decode every event and
// evaluate all of their gateway's subscriptions against it (collection
// check first, then the compiled criterion), for d. Events/s is what the
// slowest gateway processed. It leaves out the cost of sending every event
// to every gateway, which favours the naive design.
func naiveBaseline(ctx context.Context, wl *workload, d time.Duration) (*Baseline, error) {
	eng, err := match.NewEngine(match.Config{})
	if err != nil {
		return nil, err
	}
	type sub struct {
		tenant, collection string
		crit               *match.Compiled
	}
	gws := make([][]sub, wl.gateways)
	for g := range wl.gateways {
		for i := range wl.perGateway {
			sp := wl.spec(g, i)
			c, err := eng.Compile(sp.crit)
			if err != nil {
				return nil, err
			}
			gws[g] = append(gws[g], sub{sp.sub.Tenant, sp.sub.Collection, c})
		}
	}
	type event struct {
		collection, id string
		doc            []byte
	}
	evs := make([]event, naiveEvents)
	for i := range evs {
		seq := uint64(1)<<40 + uint64(i) // outside the run's sequence numbers
		e := wl.event(seq)
		evs[i] = event{collectionName(e.collection), docName(e.doc), e.appendDocument(nil, seq)}
	}

	counts := make([]int64, len(gws))
	var stop atomic.Bool
	var wg sync.WaitGroup
	start := time.Now()
	for g, subs := range gws {
		wg.Go(func() {
			var matched int64
			k := 0
			for ; !stop.Load(); k++ {
				ev := &evs[k%len(evs)]
				var doc map[string]any
				if err := json.Unmarshal(ev.doc, &doc); err != nil {
					panic("bench: generated document is not JSON: " + err.Error())
				}
				for i := range subs {
					s := &subs[i]
					if s.collection == ev.collection && s.tenant == tenant && s.crit.Match(doc, ev.id) {
						matched++
					}
				}
			}
			counts[g] = int64(k)
			_ = matched // what a gateway would then send to its clients
		})
	}
	t := time.NewTimer(d)
	select {
	case <-t.C:
	case <-ctx.Done():
	}
	t.Stop()
	stop.Store(true)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	elapsed := time.Since(start)
	slowest := counts[0]
	for _, c := range counts {
		slowest = min(slowest, c)
	}
	return &Baseline{
		What: fmt.Sprintf("every gateway decodes every event and evaluates all its %d subscriptions (%d gateways in parallel, no transport)",
			wl.perGateway, wl.gateways),
		EventsPerSec: float64(slowest) / elapsed.Seconds(),
	}, nil
}

// rawGroup is the consumer group of the raw Redis Streams baseline.
const rawGroup = "g"

// redisBaseline runs the raw Redis Streams loop for d: cfg.Publishers
// producers pipeline one XADD (MAXLEN ~) per event, a batch per round trip,
// into the run's partition streams (same payloads and partitioning as
// Streamer's event log); one consumer per partition loops XREADGROUP
// (COUNT cfg.Batch) → XACK. Producers stay within cfg.MaxInFlight events of
// the consumers. Events/s is what the consumers acknowledged.
func redisBaseline(ctx context.Context, cfg Config, wl *workload) (*Baseline, error) {
	rc, err := redis.NewClient(redisURLWithPool(cfg.RedisURL, cfg.Partitions, cfg.Publishers))
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	prefix := "stmbench-raw-" + randomHex(6)
	keys := make([]string, cfg.Partitions)
	for p := range keys {
		keys[p] = prefix + ":{p:" + strconv.Itoa(p) + "}"
		if err := rc.XGroupCreateMkStream(ctx, keys[p], rawGroup, "$").Err(); err != nil {
			return nil, fmt.Errorf("bench: raw baseline: %w", err)
		}
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_ = deleteByPrefix(dctx, rc, prefix)
	}()

	runCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	l := &rawLoop{ctx: runCtx, fail: cancel, rc: rc, cfg: cfg, wl: wl, keys: keys,
		progress: make(chan struct{}, 1), hist: NewHistogram(preciseBits)}
	l.start = time.Now()
	l.deadline = l.start.Add(cfg.BaselineDuration)
	l.seqs.Store(1 << 41) // outside the run's and the naive baseline's
	var wg, pwg sync.WaitGroup
	for p := range keys {
		wg.Go(func() { l.consume(p) })
	}
	for range cfg.Publishers {
		pwg.Go(l.produce)
	}
	pwg.Wait()
	elapsed := time.Since(l.start)
	cancel(nil)
	wg.Wait()
	if err := context.Cause(runCtx); err != nil && err != context.Canceled {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return &Baseline{
		What: fmt.Sprintf("raw Redis Streams loop, no matching: %d producers pipelining XADD, %d consumers XREADGROUP → XACK",
			cfg.Publishers, cfg.Partitions),
		EventsPerSec: float64(l.consumed.Load()) / min(elapsed, cfg.BaselineDuration).Seconds(),
		P99Ms:        ms(l.hist.Quantile(0.99)),
	}, nil
}

// rawLoop is the raw Redis baseline's state: producers XADD the workload's
// events to the partitions' streams, one consumer per partition reads and
// acknowledges them and records their latency until the deadline.
type rawLoop struct {
	ctx             context.Context
	fail            context.CancelCauseFunc
	rc              goredis.UniversalClient
	cfg             Config
	wl              *workload
	keys            []string
	start, deadline time.Time

	produced, consumed atomic.Int64
	seqs               atomic.Uint64
	progress           chan struct{} // a consumer acknowledged a batch
	histMu             sync.Mutex
	hist               *Histogram
}

// consume reads and acknowledges partition p's stream until the loop ends.
func (l *rawLoop) consume(p int) {
	local := NewHistogram(preciseBits)
	defer func() {
		l.histMu.Lock()
		l.hist.Merge(local)
		l.histMu.Unlock()
	}()
	for l.ctx.Err() == nil {
		streams, err := l.rc.XReadGroup(l.ctx, &goredis.XReadGroupArgs{
			Group: rawGroup, Consumer: "c", Streams: []string{l.keys[p], ">"},
			Count: int64(l.cfg.Batch), Block: 100 * time.Millisecond,
		}).Result()
		if err == goredis.Nil || (err != nil && l.ctx.Err() != nil) {
			continue
		}
		if err != nil {
			l.fail(fmt.Errorf("bench: raw baseline: XREADGROUP: %w", err))
			return
		}
		now := time.Now()
		var ids []string
		for _, m := range streams[0].Messages {
			ids = append(ids, m.ID)
			if ns, err := strconv.ParseInt(fmt.Sprint(m.Values["t"]), 10, 64); err == nil && now.Before(l.deadline) {
				local.Record(now.Sub(time.Unix(0, ns)))
			}
		}
		if err := l.rc.XAck(l.ctx, l.keys[p], rawGroup, ids...).Err(); err != nil && l.ctx.Err() == nil {
			l.fail(fmt.Errorf("bench: raw baseline: XACK: %w", err))
			return
		}
		if now.Before(l.deadline) {
			l.consumed.Add(int64(len(ids)))
		}
		select {
		case l.progress <- struct{}{}:
		default:
		}
	}
}

// produce appends batches of events until the deadline, keeping at most
// MaxInFlight events unconsumed.
func (l *rawLoop) produce() {
	batch := l.cfg.Batch
	for l.ctx.Err() == nil && time.Now().Before(l.deadline) {
		for l.produced.Load()-l.consumed.Load() > int64(l.cfg.MaxInFlight) && l.ctx.Err() == nil && time.Now().Before(l.deadline) {
			select {
			case <-l.progress:
			case <-time.After(time.Millisecond):
			}
		}
		first := l.seqs.Add(uint64(batch)) - uint64(batch)
		stamp := strconv.FormatInt(time.Now().UnixNano(), 10)
		_, err := l.rc.Pipelined(l.ctx, func(pipe goredis.Pipeliner) error {
			for i := range batch {
				ev := l.wl.changeEvent(phaseMeasure, first+uint64(i), time.Now())
				payload, err := proto.Marshal(&streamerv1.LogEntry{Entry: &streamerv1.LogEntry_Event{Event: ev}})
				if err != nil {
					return err
				}
				p := store.PartitionOf(ev.GetTenant(), ev.GetCollection(), l.cfg.Partitions)
				pipe.XAdd(l.ctx, &goredis.XAddArgs{Stream: l.keys[p], MaxLen: 1_000_000, Approx: true, Values: []any{"e", payload, "t", stamp}})
			}
			return nil
		})
		if err != nil {
			if l.ctx.Err() == nil {
				l.fail(fmt.Errorf("bench: raw baseline: XADD: %w", err))
			}
			return
		}
		l.produced.Add(int64(batch))
	}
}
