package service

import (
	"context"
	"fmt"
	"time"

	"github.com/streamerd/streamer/internal/clock"
	"github.com/streamerd/streamer/internal/wire"
	streamerv1 "github.com/streamerd/streamer/proto/streamer/v1"
	"github.com/streamerd/streamer/store"
)

// Delivery pump tuning.
const (
	pumpReadCount = 64          // outbox entries per read
	pumpBlock     = time.Second // longest wait of one outbox read
	retryDelay    = 200 * time.Millisecond
)

// pump reads the gateway's outbox after cursor and hands each entry to the
// session owner as a Delivery (cursor = the entry's id), in outbox order,
// until ctx is done. When entries after its cursor were dropped by the
// outbox cap before being sent (a slow gateway), it hands over a Resync and
// continues after the newest entry.
func (s *session) pump(ctx context.Context, cursor string) {
	ob := s.n.backend.Outboxes
	fetch := func() ([]store.Entry, bool, error) {
		return ob.Fetch(ctx, s.gateway, cursor, pumpReadCount, pumpBlock)
	}
	if s.n.pumps != nil {
		req := &pumpReq{reply: make(chan pumpReply, 1)}
		fetch = func() ([]store.Entry, bool, error) { return s.n.pumps.fetch(ctx, req, s.gateway, cursor) }
	}
	for {
		entries, lost, err := fetch()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			s.log.Warn("reading outbox", "err", err)
			if !clock.Sleep(ctx, s.n.cfg.Clock, retryDelay) {
				return
			}
			continue
		}
		if len(entries) == 0 {
			continue
		}
		if lost {
			last, err := ob.Last(ctx, s.gateway)
			if err != nil {
				s.log.Warn("reading outbox", "err", err)
				if !clock.Sleep(ctx, s.n.cfg.Clock, retryDelay) {
					return
				}
				continue
			}
			s.log.Warn("outbox overflowed before delivery, sending Resync", "cursor", cursor, "continue_after", last)
			resync := &streamerv1.Resync{
				Reason: fmt.Sprintf("outbox overflow: the gateway fell further behind than its outbox holds (%s)", s.n.outboxCaps()),
				Cursor: last,
			}
			if !s.emit(ctx, outgoing{msg: &streamerv1.StreamerMessage{Msg: &streamerv1.StreamerMessage_Resync{Resync: resync}}}) {
				return
			}
			cursor = last
			continue
		}
		for _, e := range entries {
			cursor = e.ID
			if len(e.Payload) == 0 { // a loss marker (store.Outboxes.Append)
				s.log.Warn("outbox entries were lost in a Redis failover, sending Resync", "at", e.ID)
				resync := &streamerv1.Resync{
					Reason: "a Redis failover lost events before they were delivered (set --redis-wait-replicas to prevent it): fetch the current state again",
					Cursor: e.ID,
				}
				if !s.emit(ctx, outgoing{msg: &streamerv1.StreamerMessage{Msg: &streamerv1.StreamerMessage_Resync{Resync: resync}}}) {
					return
				}
				continue
			}
			// The entry's bytes are the Delivery's matches (log.proto); they are
			// checked, not decoded, and forwarded as they are.
			if n, notices, err := wire.ScanBatch(e.Payload, func(int64) {}); err != nil || n+notices == 0 {
				s.log.Error("skipping undecodable outbox entry", "id", e.ID, "matches", n, "notices", notices, "err", err)
				continue
			}
			if !s.emit(ctx, outgoing{cursor: e.ID, batch: e.Payload}) {
				return
			}
		}
	}
}

// emit hands m to the session owner; false when ctx ended first.
func (s *session) emit(ctx context.Context, o outgoing) bool {
	select {
	case s.out <- o:
		return true
	case <-ctx.Done():
		return false
	}
}

// sleepCtx waits for d or until ctx is done; false when ctx is done.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
