package store

import (
	"context"
	"time"
)

// OutboxItem is one entry to append to a gateway's outbox.
type OutboxItem struct {
	// Gateway names the outbox; it must not be empty (ErrInvalid).
	Gateway string
	// Payload is the encoded delivery batch, opaque to the store.
	Payload []byte
	// Partition and Position say where the item's events were read in the
	// event log: the partition and the position of its first event. They
	// fence the item against the gateway's retirement (see Retire): Append
	// drops an item whose Position is before the gateway's fence in
	// Partition. Position "" leaves the item unfenced.
	Partition int
	Position  string
}

// Outboxes holds, per gateway, a stream of delivery batches (Redis: stream
// stm:{gw:G}:out). The node owning a partition appends; the node holding the
// gateway's session reads from the session cursor and trims what the gateway
// acknowledged.
//
// Cap: each outbox keeps at least its newest OutboxMaxLen entries (a
// constructor setting, DefaultOutboxMaxLen when zero); appending beyond that
// deletes the oldest entries, exactly or approximately (keeping up to one
// Redis stream node, 100 entries by default, more), and records the greatest
// deleted id so that Lost reports the gap.
//
// Cursors: the cursor "" is the same as "0-0", before every entry; any other
// cursor must be a stream id (ErrBadID otherwise) but need not be the id of
// an existing entry. An empty gateway name is an error wrapping ErrInvalid.
//
// Every method returns ctx.Err() (possibly wrapped) when ctx is done before
// it completes, and an error wrapping ErrClosed after Backend.Close.
type Outboxes interface {
	// Append adds one entry per item, in order, possibly to many outboxes at
	// once (pipelined in Redis), and returns their ids in the same order.
	// Ids are strictly increasing per gateway. An item fenced off by an
	// earlier Retire is dropped; its id is "". No items: no-op, (nil, nil).
	// If any item names no gateway nothing is appended. Payloads are not
	// empty: an entry with an empty payload is a loss marker, which a
	// backend appends when it finds that entries were lost (Redis: a
	// failover lost writes, store/redis/verify.go) and which reads as a
	// Resync at that point.
	Append(ctx context.Context, items []OutboxItem) ([]string, error)

	// Read returns, oldest first, up to count entries of gateway's outbox
	// with id > after (count <= 0: no limit), like XREAD. When there are
	// none it waits up to block for one (block <= 0: do not wait; Redis
	// rounds it up to whole milliseconds) and returns (nil, nil) if none
	// came. An append to that outbox wakes a waiting Read promptly. An unknown
	// gateway simply has no entries yet.
	Read(ctx context.Context, gateway, after string, count int, block time.Duration) ([]Entry, error)

	// Fetch is Read followed by Lost(after), in one round trip where the
	// backend allows: a delivery pump's read. lost is false when no entries
	// are returned. When lost is true, entries after `after` were deleted
	// before they could be read, and the caller must resynchronise instead
	// of delivering entries. The check runs just after the read, so it never
	// misses a gap; a cap overflow that deletes entries between the read and
	// the check may report one the read did not skip, which only happens
	// while the outbox is full anyway.
	Fetch(ctx context.Context, gateway, after string, count int, block time.Duration) (entries []Entry, lost bool, err error)

	// Trim deletes the entries with id <= upTo (the gateway acknowledged
	// them) and records the greatest deleted id (see Lost). upTo "" deletes
	// nothing; an unknown gateway is a no-op.
	Trim(ctx context.Context, gateway, upTo string) error

	// Last returns the id of the newest entry ever appended to gateway's
	// outbox, even if it was trimmed since, or "" when nothing was appended
	// since the outbox was created or deleted. A gateway registering without
	// a resume cursor starts there.
	Last(ctx context.Context, gateway string) (string, error)

	// Lost reports whether resuming gateway's outbox from after would
	// silently skip data: true when the greatest id ever deleted from it,
	// by the cap or by Trim, is greater than after. So Trim(upTo) alone
	// never makes Lost(x) true for x >= upTo, while a cap overflow makes it
	// true for every cursor before the newest deleted entry. False for an
	// unknown gateway or when nothing was deleted.
	//
	// Redis: the scripts that delete outbox entries (cap and Trim) record
	// the greatest deleted id in stm:{gw:G}:outdel, which Lost reads with
	// one GET.
	Lost(ctx context.Context, gateway, after string) (bool, error)

	// Len returns the number of entries in gateway's outbox (XLEN); 0 for an
	// unknown gateway.
	Len(ctx context.Context, gateway string) (int64, error)

	// Retire ends the outbox's incarnation when its gateway expires, so that
	// nothing appended for the expired gateway can ever be delivered as if
	// it were still the same stream:
	//   - every entry is deleted, and the outbox moves past every id it ever
	//     issued: Retire returns an id R greater than all of them, Last
	//     returns R until the next append, later appends get ids > R, and
	//     Lost(x) is true for every x < R: a cursor issued before the expiry
	//     is always recognised (Retired tells why it was lost);
	//   - fences[p] is where the gateway's expiry was announced in partition
	//     p: from now on Append drops the items routed from p at a position
	//     before it (matched for the expired incarnation by an owner still
	//     behind in its log). Fences only move forward.
	// A retirement is never forgotten (it costs a few keys per gateway id);
	// retiring an unknown gateway's outbox records it all the same.
	Retire(ctx context.Context, gateway string, fences map[int]string) (string, error)

	// Retired returns the id that the gateway's latest Retire returned, or
	// "" if its outbox was never retired.
	Retired(ctx context.Context, gateway string) (string, error)
}

// OutboxFetch is one gateway's share of a MultiFetcher.FetchMany call: the
// outbox to read after After, and, once FetchMany returns, what Fetch would
// have returned for it.
type OutboxFetch struct {
	Gateway string
	After   string

	Entries []Entry
	Lost    bool
}

// MultiFetcher reads several gateways' outboxes in one round trip.
// Backends offer it (Backend.MultiFetch) where a single call may span
// gateways: Redis without Cluster. A node then waits for the outboxes of
// all its gateway sessions with one blocking XREAD instead of one each.
type MultiFetcher interface {
	// FetchMany is Fetch over distinct gateways at once: it waits up to
	// block (<= 0: not at all) until one of the outboxes has entries after
	// its fetch's After, then fills every fetch's Entries (up to count each;
	// count <= 0: no limit) and Lost as Fetch would. A gateway named twice,
	// or an empty one, is an error and nothing is read.
	FetchMany(ctx context.Context, fetches []OutboxFetch, count int, block time.Duration) error
}
