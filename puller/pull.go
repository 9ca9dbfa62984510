package puller

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"go.mongodb.org/mongo-driver/bson"
	"google.golang.org/protobuf/proto"

	"github.com/streamerd/streamer/internal/clock"
	streamerv1 "github.com/streamerd/streamer/proto/streamer/v1"
	"github.com/streamerd/streamer/store"
)

// closeTimeout bounds closing a change stream (killCursors) on the way out.
const closeTimeout = 5 * time.Second

// reader is the state of one leadership term's reading.
type reader struct {
	p          *Puller
	partitions int

	saved     bson.Raw // the checkpointed token; nil if none
	lastToken bson.Raw // token covering every change consumed so far; nil if none

	// pending events, in stream order, grouped by partition at flush time
	pending   []pendingEvent
	firstAt   time.Time // when the oldest pending event was read
	lastTime  time.Time // commit time of the newest pending event
	byPart    [][][]byte
	order     []int
	appended  []bool
	streamErr int // consecutive change stream failures (backoff attempt)
}

type pendingEvent struct {
	partition int
	payload   []byte
}

// pull reads change streams, reopening them from the checkpoint after
// transient failures, until ctx is done or reading fails for good.
func (p *Puller) pull(ctx context.Context) error {
	r := p.newReader()
	if err := r.loadCheckpoint(ctx); err != nil {
		return err
	}
	p.metrics.checkpointAt.Store(time.Now().UnixNano())
	fromNow := r.saved == nil
	if fromNow {
		p.log.Info("no saved resume token: starting from the current time", "checkpoint", CheckpointName(p.cfg.Name))
	}
	for {
		opts := WatchOptions{PreImages: p.cfg.PreImages, MaxAwait: p.cfg.MaxAwait}
		if !fromNow {
			opts.ResumeAfter = r.saved
		}
		cs, err := p.cfg.Watcher.Watch(ctx, opts)
		if err == nil {
			p.log.Info("change stream open", "resume_after", tokenID(opts.ResumeAfter))
			err = r.consume(ctx, cs)
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), closeTimeout)
			_ = cs.Close(cctx) // the stream failed or we are leaving: nothing to do about a close error
			cancel()
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var end *EndError
		if errors.As(err, &end) {
			return err
		}
		switch classify(err) {
		case tokenUnusable:
			if !p.cfg.StartFromNow {
				herr := &HistoryLostError{EventID: tokenID(r.saved), Err: err}
				p.log.Error("cannot resume the change stream", "err", herr)
				return herr
			}
			p.log.Error("the saved resume token cannot be used: starting from the current time because StartFromNow is set; "+
				"the changes since the token are NOT published", "token", tokenID(r.saved), "err", err)
			p.metrics.errors.WithLabelValues("history_lost").Inc()
			r.saved, r.lastToken, fromNow = nil, nil, true
			continue
		case permanent:
			err = fmt.Errorf("puller: change stream failed and retrying cannot help: %w", err)
			p.log.Error("stopping", "err", err)
			return err
		}
		p.metrics.errors.WithLabelValues("stream").Inc()
		p.setHealth(err)
		d := r.p.backoff(r.streamErr)
		r.streamErr++
		p.log.Warn("change stream failed: reopening it from the checkpoint", "err", err, "retry_in", d)
		if err := r.p.sleep(ctx, d); err != nil {
			return err
		}
		fromNow = r.saved == nil
	}
}

func (p *Puller) newReader() *reader {
	n := p.backend.Log.Partitions()
	return &reader{p: p, partitions: n, byPart: make([][][]byte, n), appended: make([]bool, n)}
}

// loadCheckpoint reads the saved token, retrying store errors with backoff.
func (r *reader) loadCheckpoint(ctx context.Context) error {
	for attempt := 0; ; attempt++ {
		tok, found, err := r.p.backend.Checkpoints.Load(ctx, CheckpointName(r.p.cfg.Name))
		if err == nil {
			if found && len(tok) > 0 {
				if verr := bson.Raw(tok).Validate(); verr != nil {
					return fmt.Errorf("puller: the checkpoint %s is not a BSON resume token (%v); delete it to start from the current time", CheckpointName(r.p.cfg.Name), verr)
				}
				r.saved = tok
			}
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		r.p.metrics.errors.WithLabelValues("checkpoint").Inc()
		r.p.setHealth(err)
		d := r.p.backoff(attempt)
		r.p.log.Warn("cannot load the checkpoint; retrying", "err", err, "retry_in", d)
		if err := r.p.sleep(ctx, d); err != nil {
			return err
		}
	}
}

// consume reads cs until it fails, an event ends it, or ctx is done. Events
// are appended in batches, each followed by a checkpoint.
func (r *reader) consume(ctx context.Context, cs ChangeStream) error {
	defer r.dropPending()
	m := r.p.metrics
	for {
		if !cs.TryNext(ctx) {
			if err := cs.Err(); err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				// What was read before the failure is valid: keep it.
				if ferr := r.flush(ctx, r.lastToken); ferr != nil {
					return ferr
				}
				return err
			}
			// Caught up: the last getMore brought nothing new, and its
			// postBatchResumeToken (if any) covers everything so far.
			m.lag.Set(0)
			r.p.setHealth(nil)
			if rt := cs.ResumeToken(); rt != nil && !bytes.Equal(rt, r.lastToken) {
				r.lastToken = clone(rt)
			}
			if err := r.flush(ctx, r.lastToken); err != nil {
				return err
			}
			continue
		}
		r.streamErr = 0
		c, err := r.p.mapper.convert(cs.Current())
		m.read.WithLabelValues(opLabel(c.op)).Inc()
		tok := clone(bson.Raw(c.token))
		if tok == nil { // the driver refuses events without a token; be safe anyway
			tok = clone(cs.ResumeToken())
		}
		var end *EndError
		var skip *SkipError
		switch {
		case err == nil:
			if err := r.add(c); err != nil {
				return err
			}
		case errors.As(err, &end):
			// Everything before the event is appended and the checkpoint
			// moves onto the event itself, which carries nothing to append.
			if ferr := r.flush(ctx, tok); ferr != nil {
				return ferr
			}
			r.p.log.Error("the change stream was ended by the source", "operation", end.Operation, "namespace", end.Namespace, "err", end)
			return end
		case errors.As(err, &skip):
			m.skipped.WithLabelValues(skipLabel(skip)).Inc()
			level := slog.LevelWarn
			if skip.Err != nil {
				level = slog.LevelError
			}
			r.p.log.Log(ctx, level, "skipping a change event", "operation", skip.Operation, "event_id", skip.EventID, "err", skip)
		default:
			return err
		}
		r.lastToken = tok

		last := cs.RemainingBatchLength() == 0
		if last {
			// The batch is used up: its postBatchResumeToken, if the server
			// sent one, covers everything returned so far.
			if rt := cs.ResumeToken(); rt != nil && !bytes.Equal(rt, r.lastToken) {
				r.lastToken = clone(rt)
			}
		}
		if last || len(r.pending) >= r.p.cfg.Batch || (len(r.pending) > 0 && clock.Since(r.p.cfg.Clock, r.firstAt) >= r.p.cfg.MaxDelay) {
			if err := r.flush(ctx, r.lastToken); err != nil {
				return err
			}
		}
	}
}

// add encodes a converted change as a log entry and queues it.
func (r *reader) add(c change) error {
	ev := c.event
	payload, err := proto.Marshal(&streamerv1.LogEntry{Entry: &streamerv1.LogEntry_Event{Event: ev}})
	if err != nil {
		return fmt.Errorf("puller: encoding event %s: %w", ev.GetEventId(), err)
	}
	if len(r.pending) == 0 {
		r.firstAt = r.p.cfg.Clock.Now()
	}
	r.pending = append(r.pending, pendingEvent{partition: store.PartitionOf(ev.GetTenant(), ev.GetCollection(), r.partitions), payload: payload})
	r.lastTime = c.time()
	return nil
}

// flush appends the pending events, then saves tok as the checkpoint if it
// differs from the saved one. It returns an error only when ctx is done
// (appends are retried until they succeed; a failed save is logged and
// retried at the next flush), and then saves nothing.
func (r *reader) flush(ctx context.Context, tok bson.Raw) error {
	if len(r.pending) > 0 {
		if err := r.appendPending(ctx); err != nil {
			return err
		}
	}
	if len(tok) == 0 || bytes.Equal(tok, r.saved) {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err() // never checkpoint after losing the lease
	}
	if err := r.p.backend.Checkpoints.Save(ctx, CheckpointName(r.p.cfg.Name), tok); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		r.p.metrics.errors.WithLabelValues("checkpoint").Inc()
		r.p.log.Warn("saving the checkpoint failed; the next batch saves a later one (a restart meanwhile replays more events)", "err", err)
		return nil
	}
	r.saved = tok
	r.p.metrics.checkpoints.Inc()
	r.p.metrics.checkpointAt.Store(time.Now().UnixNano())
	return nil
}

// appendPending appends the pending events, one Append per partition in
// stream order within each partition. A partition whose Append fails is
// retried with backoff, alone (the partitions that succeeded are not
// appended twice), until it succeeds or ctx is done.
func (r *reader) appendPending(ctx context.Context) error {
	for _, p := range r.order {
		r.byPart[p] = r.byPart[p][:0]
	}
	r.order = r.order[:0]
	for _, e := range r.pending {
		if len(r.byPart[e.partition]) == 0 {
			r.order = append(r.order, e.partition)
		}
		r.byPart[e.partition] = append(r.byPart[e.partition], e.payload)
	}
	for _, p := range r.order {
		r.appended[p] = false
	}
	m := r.p.metrics
	for attempt := 0; ; attempt++ {
		var failed error
		for _, p := range r.order {
			if r.appended[p] {
				continue
			}
			start := time.Now()
			_, err := r.p.backend.Log.Append(ctx, p, r.byPart[p]...)
			m.appendSeconds.Observe(time.Since(start).Seconds())
			if err != nil {
				if failed == nil {
					failed = fmt.Errorf("appending %d events to partition %d: %w", len(r.byPart[p]), p, err)
				}
				continue
			}
			r.appended[p] = true
			m.appended.Add(float64(len(r.byPart[p])))
		}
		if failed == nil {
			break
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		m.errors.WithLabelValues("append").Inc()
		r.p.setHealth(failed)
		d := r.p.backoff(attempt)
		r.p.log.Warn("appending to the event log failed: retrying; the checkpoint does not move meanwhile", "err", failed, "retry_in", d)
		if err := r.p.sleep(ctx, d); err != nil {
			return err
		}
	}
	if !r.lastTime.IsZero() {
		m.lag.Set(max(0, time.Since(r.lastTime).Seconds()))
	}
	r.p.setHealth(nil)
	r.dropPending()
	return nil
}

// dropPending forgets the pending events (appended, or abandoned because the
// term ended: the next leader reads them again from the checkpoint).
func (r *reader) dropPending() {
	clear(r.pending)
	r.pending = r.pending[:0]
}

// backoff returns the wait before retry attempt n (0-based): uniformly random
// between half and all of RetryMin·2ⁿ, capped at RetryMax.
func (p *Puller) backoff(n int) time.Duration {
	c := p.cfg.RetryMin
	for i := 0; i < n && c < p.cfg.RetryMax; i++ {
		c *= 2
	}
	c = min(c, p.cfg.RetryMax)
	return c/2 + rand.N(c/2+1)
}

// tokenID is the _data of a resume token, for logs ("" for none).
func tokenID(tok bson.Raw) string {
	if len(tok) == 0 {
		return ""
	}
	if s, ok := tok.Lookup("_data").StringValueOK(); ok {
		return s
	}
	return tok.String()
}

func clone(b bson.Raw) bson.Raw {
	if b == nil {
		return nil
	}
	return bytes.Clone(b)
}
