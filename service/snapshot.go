package service

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/streamerd/streamer/match"
	streamerv1 "github.com/streamerd/streamer/proto/streamer/v1"
	"github.com/streamerd/streamer/store"
)

// snapshotTimeout bounds one snapshot query: the partition waits for it.
const snapshotTimeout = 10 * time.Second

// recordDocument keeps the node's document source (a store.DocumentWriter)
// up to date with the event c.wire, transformed into ev: a create or update
// stores the document, a delete, or an event the soft-delete transform
// dropped (the document is flagged deleted), removes it.
func (c *consumer) recordDocument(ev *match.Event, kept bool) {
	w := c.n.docWriter
	if w == nil {
		return
	}
	if !kept || ev.Op == match.Delete {
		w.Delete(ev.Tenant, ev.Collection, ev.ID)
		return
	}
	// A copy: the entry's payload also holds the pre-image, and the
	// source's budget counts the document only.
	w.Put(ev.Tenant, ev.Collection, store.Document{ID: ev.ID, Data: bytes.Clone(c.wire.Document),
		TimestampMs: c.wire.TimestampMs, EventID: string(c.wire.EventID)})
}

// snapshot routes gw the initial result set of sub, compiled, as of
// position: the consumer applied every event before the subscription's
// control entry, and none after, so the documents are exactly those the
// subscription would have matched there. Pages are outbox entries of their
// own, after the gateway's matches of earlier events and before those of
// later ones. A failure is reported on the last page (SnapshotEnd.error);
// the subscription stays active.
func (c *consumer) snapshot(gw string, sub *streamerv1.Subscription, compiled *match.Compiled, position string) {
	req := sub.GetSnapshot()
	limit := c.n.cfg.SnapshotMaxDocuments
	if l := int(req.GetLimit()); l > 0 && l < limit {
		limit = l
	}
	end := &streamerv1.SnapshotEnd{Partition: int32(c.p), Position: position}
	var docs []store.Document
	if c.n.cfg.Documents == nil { // refused at subscribe; a node configured otherwise accepted it
		end.Error = errorf(streamerv1.ErrorCode_ERROR_CODE_SNAPSHOT_UNAVAILABLE, "streamer: snapshot of subscription %q: node %s, owning partition %d, has no document source", sub.GetSubscriptionId(), c.n.cfg.NodeID, c.p)
	} else {
		ctx, cancel := context.WithTimeout(context.Background(), snapshotTimeout)
		page, err := c.n.cfg.Documents.Query(ctx, store.DocumentQuery{
			Tenant: sub.GetTenant(), Collection: sub.GetCollection(), DocumentID: sub.GetDocumentId(),
			After: req.GetAfter(), Limit: limit, Conditions: storeConditions(compiled.Conditions()),
			Keep: func(id string, data []byte) bool {
				doc, err := match.ParseDocumentInto(c.snapDoc, data)
				if err != nil {
					return false
				}
				c.snapDoc = doc
				return compiled.Match(doc, id)
			},
		})
		cancel()
		clear(c.snapDoc)
		switch {
		case err != nil:
			code := streamerv1.ErrorCode_ERROR_CODE_UNAVAILABLE
			if errors.Is(err, store.ErrSnapshotUnavailable) {
				code = streamerv1.ErrorCode_ERROR_CODE_SNAPSHOT_UNAVAILABLE
			}
			end.Error = errorf(code, "streamer: snapshot of subscription %q: %v", sub.GetSubscriptionId(), err)
			c.log.Warn("snapshot failed; the subscription is active without it", "gateway", gw, "subscription", sub.GetSubscriptionId(), "err", err)
		default:
			docs = page.Documents
			end.Documents = int32(len(docs))
			end.More, end.NextAfter = page.More, page.Next
			if page.ClusterTime != 0 {
				// Read from a database at that cluster time: the events
				// after this entry up to it are in the documents already.
				if c.skips == nil {
					c.skips = map[match.Member]uint64{}
				}
				c.skips[match.Member{Gateway: gw, ID: sub.GetSubscriptionId()}] = page.ClusterTime
			}
		}
	}
	c.n.metrics.snapshots.Inc()
	c.n.metrics.snapshotDocuments.Add(float64(len(docs)))
	pageNo := int32(0)
	for {
		n, size := 0, 0
		for n < len(docs) && (n == 0 || size+len(docs[n].Data) <= c.n.cfg.SnapshotPageBytes) {
			size += len(docs[n].Data) + len(docs[n].ID) + len(docs[n].EventID) + 16
			n++
		}
		p := &streamerv1.SnapshotPage{SubscriptionId: sub.GetSubscriptionId(), Page: pageNo, Documents: make([]*streamerv1.SnapshotDocument, n)}
		for i, d := range docs[:n] {
			p.Documents[i] = &streamerv1.SnapshotDocument{DocumentId: d.ID, Document: d.Data, TimestampMs: d.TimestampMs, EventId: d.EventID}
		}
		docs = docs[n:]
		if len(docs) == 0 {
			p.End = end
		}
		payload, err := proto.Marshal(&streamerv1.OutboxBatch{Snapshot: p})
		if err != nil {
			panic("service: encoding a snapshot page: " + err.Error()) // strings, bytes and numbers: cannot fail
		}
		c.router.notice(gw, int32(c.p), position, payload)
		if p.End != nil {
			return
		}
		pageNo++
	}
}

// storeConditions converts a criterion's conditions for a store query.
func storeConditions(cs []match.Condition) []store.Condition {
	out := make([]store.Condition, len(cs))
	for i, c := range cs {
		out[i] = store.Condition{Path: c.Path, Op: string(c.Op), Value: c.Value}
	}
	return out
}

// skipSnapshotted drops from c.results the matches of subscriptions whose
// snapshot was read from a database at or after the event's cluster time
// (it is in their documents already), and forgets the snapshots the
// event's cluster time has passed: the source appends in commit order, so
// no later event is at or before them.
func (c *consumer) skipSnapshotted(clusterTime uint64) {
	if len(c.skips) == 0 || clusterTime == 0 {
		return
	}
	c.results = slices.DeleteFunc(c.results, func(r match.Result) bool {
		t, ok := c.skips[match.Member{Gateway: r.Gateway, ID: r.ID}]
		return ok && clusterTime <= t
	})
	maps.DeleteFunc(c.skips, func(_ match.Member, t uint64) bool { return t < clusterTime })
}

// forgetSkip forgets the snapshot read time of a subscription replaced or
// removed.
func (c *consumer) forgetSkip(gw, id string) {
	if len(c.skips) > 0 {
		delete(c.skips, match.Member{Gateway: gw, ID: id})
	}
}
