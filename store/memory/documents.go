package memory

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/streamerd/streamer/store"
)

// DefaultDocumentBytes is the budget of a Documents made with a size of 0.
const DefaultDocumentBytes = 512 << 20

// Documents keeps the latest version of every document the node's
// partition consumers apply, in memory: the snapshot source of the embedded
// mode (store.Documents and store.DocumentWriter). It knows every document
// only if it has seen every change since the collection was empty, which
// holds in the embedded mode, where the event log starts with the process.
//
// Its memory is bounded: when the documents held would exceed the budget,
// the collection being written is dropped and marked unavailable (its
// queries fail with store.ErrSnapshotUnavailable, saying so) until the
// process restarts, rather than serving snapshots with documents missing.
type Documents struct {
	budget int64

	mu    sync.RWMutex
	colls map[collKey]*collection
	bytes int64 // Data and ids held, every collection
}

type collKey struct{ tenant, collection string }

type collection struct {
	mu      sync.Mutex
	docs    map[string]store.Document
	ids     []string // sorted ids; nil when stale
	bytes   int64
	dropped string // why the collection is unavailable; "" when it is not
}

// NewDocuments returns an empty source holding at most budget bytes of
// documents and ids (<= 0: DefaultDocumentBytes).
func NewDocuments(budget int64) *Documents {
	if budget <= 0 {
		budget = DefaultDocumentBytes
	}
	return &Documents{budget: budget, colls: map[collKey]*collection{}}
}

// Bytes returns the bytes of documents and ids held.
func (d *Documents) Bytes() int64 {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.bytes
}

func (d *Documents) coll(tenant, name string, create bool) *collection {
	k := collKey{tenant, name}
	d.mu.RLock()
	c := d.colls[k]
	d.mu.RUnlock()
	if c != nil || !create {
		return c
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if c = d.colls[k]; c == nil {
		c = &collection{docs: map[string]store.Document{}}
		d.colls[k] = c
	}
	return c
}

// grow charges delta bytes to the budget; false when it would exceed it.
func (d *Documents) grow(delta int64) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if delta > 0 && d.bytes+delta > d.budget {
		return false
	}
	d.bytes += delta
	return true
}

func docSize(doc store.Document) int64 {
	return int64(len(doc.ID) + len(doc.Data) + len(doc.EventID) + 64)
}

// Put implements store.DocumentWriter.
func (d *Documents) Put(tenant, collection string, doc store.Document) {
	c := d.coll(tenant, collection, true)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dropped != "" {
		return
	}
	old, existed := c.docs[doc.ID]
	delta := docSize(doc)
	if existed {
		delta -= docSize(old)
	}
	if !d.grow(delta) {
		d.grow(-c.bytes)
		c.dropped = fmt.Sprintf("the node's document memory (%d bytes, --snapshot-memory-bytes) ran out while this collection held %d documents (%d bytes): its snapshots are unavailable until the node restarts",
			d.budget, len(c.docs), c.bytes)
		c.docs, c.ids, c.bytes = nil, nil, 0
		return
	}
	c.docs[doc.ID] = doc
	c.bytes += delta
	if !existed {
		c.ids = nil
	}
}

// Delete implements store.DocumentWriter.
func (d *Documents) Delete(tenant, collection, id string) {
	c := d.coll(tenant, collection, false)
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	old, existed := c.docs[id]
	if !existed {
		return
	}
	delete(c.docs, id)
	c.bytes -= docSize(old)
	d.grow(-docSize(old))
	c.ids = nil
}

// Query implements store.Documents. Documents come by ascending id
// (bytewise); Next is the last one's id, and After any id.
func (d *Documents) Query(ctx context.Context, q store.DocumentQuery) (store.DocumentPage, error) {
	if err := ctx.Err(); err != nil {
		return store.DocumentPage{}, err
	}
	if q.Limit < 1 {
		return store.DocumentPage{}, fmt.Errorf("%w: limit %d, want at least 1", store.ErrInvalid, q.Limit)
	}
	c := d.coll(q.Tenant, q.Collection, false)
	if c == nil {
		return store.DocumentPage{}, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dropped != "" {
		return store.DocumentPage{}, fmt.Errorf("%w: %s", store.ErrSnapshotUnavailable, c.dropped)
	}
	keep := func(doc store.Document) bool { return q.Keep == nil || q.Keep(doc.ID, doc.Data) }
	var page store.DocumentPage
	if q.DocumentID != "" {
		if doc, ok := c.docs[q.DocumentID]; ok && q.DocumentID > q.After && keep(doc) {
			page.Documents = []store.Document{doc}
		}
		return page, nil
	}
	if c.ids == nil {
		c.ids = make([]string, 0, len(c.docs))
		for id := range c.docs {
			c.ids = append(c.ids, id)
		}
		slices.Sort(c.ids)
	}
	start := 0
	if q.After != "" {
		start, _ = slices.BinarySearch(c.ids, q.After)
		if start < len(c.ids) && c.ids[start] == q.After {
			start++
		}
	}
	for i := start; i < len(c.ids); i++ {
		if i&1023 == 1023 {
			if err := ctx.Err(); err != nil {
				return store.DocumentPage{}, err
			}
		}
		doc := c.docs[c.ids[i]]
		if !keep(doc) {
			continue
		}
		if len(page.Documents) == q.Limit {
			page.More, page.Next = true, page.Documents[len(page.Documents)-1].ID
			break
		}
		page.Documents = append(page.Documents, doc)
	}
	return page, nil
}
