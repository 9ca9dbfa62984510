package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/streamerd/streamer/client"
	"github.com/streamerd/streamer/match"
	streamerv1 "github.com/streamerd/streamer/proto/streamer/v1"
)

const watchSynopsis = `watch --addr HOST:PORT --tenant T --collection C [--doc ID | --filters JSON | --cel EXPR] [flags]

Registers as a gateway, subscribes to the collection (every document, one
document with --doc, the documents matching --filters, a JSON list of
{"field","op","value"} objects, or the CEL expression --cel), writes
"subscribed <id>" to stderr once the node acknowledged the subscription, and
prints each delivered event as one JSON line on stdout: the event's JSON form
(see "streamer publish --help") with "op" the effective operation for the
subscription, plus "subs" and the delivery "cursor".

With --snapshot the subscription first delivers its initial result set: one
line per matching document as it is now, {"op":"snapshot","id","doc","ts",
"event_id","tenant","collection","subs","cursor"}, then one line
{"snapshot_end":true,"documents":N,"position":"P","partition":N} (with
"more":true and "next_after":"ID" when --snapshot-limit cut it short; pass
that id as --snapshot-after for the next documents), then the events after
that position: none missed, none twice. Snapshot lines do not count towards
--count.

Exits 0 after --count lines (0: until interrupted), non-zero when the
subscription is refused (with the node's reason), on --timeout, or when the
connection fails for good. A "resync" line on stderr means events may have
been lost. Every flag also reads STREAMER_<FLAG>, e.g. STREAMER_ADDR.`

var errWatchTimeout = errors.New("timeout")

func runWatch(ctx context.Context, args []string, sio stdio) error {
	fs := newFlagSet("watch", watchSynopsis, sio)
	addr := fs.String("addr", "localhost:7070", "`HOST:PORT` of a node's gRPC listener")
	tenant := fs.String("tenant", "", "`tenant` whose events to watch (empty: the empty tenant)")
	collection := fs.String("collection", "", "`collection` to watch (required)")
	doc := fs.String("doc", "", "watch only this document `id`")
	filters := fs.String("filters", "", "watch the documents matching this `JSON` list of {\"field\",\"op\",\"value\"} filters")
	cel := fs.String("cel", "", "watch the documents for which this CEL `expression` (over doc and id) is true")
	count := fs.Int("count", 0, "exit after this many events (0: until interrupted)")
	timeout := fs.Duration("timeout", 0, "fail after this `duration` (0: no limit)")
	dialTimeout := fs.Duration("dial-timeout", 10*time.Second, "fail if no node answers within this `duration` at start")
	tokenFlag := secretFlag(fs, "auth-token", "bearer `token` the node requires")
	gatewayID := fs.String("gateway-id", "", "gateway `id` to register as (default: a random one)")
	subID := fs.String("sub-id", "watch", "subscription `id` (printed in \"subscribed <id>\" and in each line's subs)")
	snapshot := fs.Bool("snapshot", false, "print the matching documents first, then the changes after them (see above)")
	snapshotLimit := fs.Int("snapshot-limit", 0, "most documents in the snapshot (0: the node's --snapshot-max-documents)")
	snapshotAfter := fs.String("snapshot-after", "", "snapshot only the documents whose `id` sorts after this one (a previous snapshot's next_after)")
	tlsFlags := clientTLSFlags(fs)
	if err := parseFlagsEnv(fs, args); err != nil {
		return err
	}
	usage := func(msg string) error {
		fmt.Fprintln(sio.err, msg)
		return errUsage
	}
	if *collection == "" {
		return usage("--collection is required")
	}
	if *count < 0 || *timeout < 0 || *dialTimeout <= 0 {
		return usage("--count and --timeout must not be negative, --dial-timeout must be positive")
	}
	if *subID == "" {
		return usage("--sub-id must not be empty")
	}
	if !*snapshot && (*snapshotLimit != 0 || *snapshotAfter != "") {
		return usage("--snapshot-limit and --snapshot-after need --snapshot")
	}
	if *snapshotLimit < 0 {
		return usage("--snapshot-limit must not be negative")
	}
	token, err := tokenFlag()
	if err != nil {
		return usage(err.Error())
	}
	sub := client.Subscription{ID: *subID, Tenant: *tenant, Collection: *collection, DocumentID: *doc, CEL: *cel}
	if *snapshot {
		sub.Snapshot = &client.SnapshotRequest{Limit: *snapshotLimit, After: *snapshotAfter}
	}
	criteria := 0
	for _, set := range []bool{*doc != "", *filters != "", *cel != ""} {
		if set {
			criteria++
		}
	}
	if criteria > 1 {
		return usage("give at most one of --doc, --filters and --cel")
	}
	if *filters != "" {
		var fl []match.Filter
		if err := json.Unmarshal([]byte(*filters), &fl); err != nil {
			return usage(fmt.Sprintf("--filters: want a JSON list of {\"field\",\"op\",\"value\"} objects: %v", err))
		}
		sub.Filters = make([]client.Filter, len(fl))
		for i, f := range fl {
			sub.Filters[i] = client.Filter{Field: f.Field, Op: string(f.Op), Value: f.Value}
		}
	}

	if *timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, *timeout, errWatchTimeout)
		defer cancel()
	}
	transport, err := tlsFlags.option()
	if err != nil {
		return usageError(sio, err)
	}
	opts := []client.Option{
		transport,
		client.WithLogger(slog.New(slog.NewTextHandler(sio.err, &slog.HandlerOptions{Level: slog.LevelWarn}))),
	}
	if token != "" {
		opts = append(opts, client.WithToken(token))
	}
	if *gatewayID != "" {
		opts = append(opts, client.WithGatewayID(*gatewayID))
	}
	w := &watcher{sio: sio, want: *count, timeout: *timeout, tenant: *tenant, collection: *collection}
	dctx, cancel := context.WithTimeout(ctx, *dialTimeout)
	conn, err := client.Dial(dctx, *addr, opts...)
	cancel()
	if err != nil {
		if ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("no streamer node answered at %s within --dial-timeout %v: %w", *addr, *dialTimeout, err)
		}
		return w.ctxErr(ctx, err)
	}
	defer w.close(conn, *subID)
	if err := conn.Subscribe(ctx, sub); err != nil {
		return w.ctxErr(ctx, fmt.Errorf("subscribe: %w", err))
	}
	w.subscribed = true
	fmt.Fprintf(sio.err, "subscribed %s\n", *subID)
	return w.print(ctx, conn)
}

// watcher prints deliveries until the wanted count.
type watcher struct {
	sio        stdio
	want       int
	timeout    time.Duration
	got        int
	subscribed bool

	tenant, collection string // of the snapshot lines
}

// snapshotLine is the JSON line of one snapshot document.
type snapshotLine struct {
	EventID    string          `json:"event_id,omitempty"`
	Tenant     string          `json:"tenant"`
	Collection string          `json:"collection"`
	ID         string          `json:"id"`
	Op         string          `json:"op"`
	Doc        json.RawMessage `json:"doc"`
	TS         int64           `json:"ts,omitempty"`
	Subs       []string        `json:"subs"`
	Cursor     string          `json:"cursor"`
}

// snapshotEndLine is the JSON line that ends a snapshot.
type snapshotEndLine struct {
	SnapshotEnd bool   `json:"snapshot_end"`
	Documents   int32  `json:"documents"`
	Partition   int32  `json:"partition"`
	Position    string `json:"position"`
	More        bool   `json:"more,omitempty"`
	NextAfter   string `json:"next_after,omitempty"`
	Error       string `json:"error,omitempty"`
}

// snapshotPage prints one page of the snapshot.
func (w *watcher) snapshotPage(enc *json.Encoder, cursor string, p *streamerv1.SnapshotPage) error {
	for _, d := range p.GetDocuments() {
		if err := enc.Encode(snapshotLine{EventID: d.GetEventId(), Tenant: w.tenant, Collection: w.collection, ID: d.GetDocumentId(), Op: "snapshot",
			Doc: d.GetDocument(), TS: d.GetTimestampMs(), Subs: []string{p.GetSubscriptionId()}, Cursor: cursor}); err != nil {
			return fmt.Errorf("writing stdout: %w", err)
		}
	}
	if e := p.GetEnd(); e != nil {
		line := snapshotEndLine{SnapshotEnd: true, Documents: e.GetDocuments(), Partition: e.GetPartition(), Position: e.GetPosition(), More: e.GetMore(), NextAfter: e.GetNextAfter()}
		if e.GetError() != nil {
			line.Error = e.GetError().GetMessage()
			fmt.Fprintf(w.sio.err, "snapshot failed: %s (the changes after it follow)\n", line.Error)
		}
		if err := enc.Encode(line); err != nil {
			return fmt.Errorf("writing stdout: %w", err)
		}
	}
	return nil
}

func (w *watcher) print(ctx context.Context, conn *client.Conn) error {
	out := bufio.NewWriter(w.sio.out)
	enc := json.NewEncoder(out)
	enc.SetEscapeHTML(false)
	for {
		select {
		case d, ok := <-conn.Deliveries():
			if !ok {
				return fmt.Errorf("connection failed: %w", conn.Err())
			}
			switch {
			case d.Resync != nil:
				fmt.Fprintf(w.sio.err, "resync %s (events may have been lost)\n", d.Resync.Reason)
			case d.Dropped != nil:
				return fmt.Errorf("subscription dropped by the node: %w", d.Dropped)
			case d.Snapshot != nil:
				if err := w.snapshotPage(enc, d.Cursor, d.Snapshot); err != nil {
					return err
				}
			}
			for _, m := range d.Matches {
				if err := enc.Encode(m.JSON(d.Cursor)); err != nil {
					return fmt.Errorf("writing stdout: %w", err)
				}
				w.got++
				if w.got == w.want {
					return flushOut(out)
				}
			}
			if err := flushOut(out); err != nil {
				return err
			}
		case <-ctx.Done():
			return w.ctxErr(ctx, ctx.Err())
		}
	}
}

func flushOut(out *bufio.Writer) error {
	if err := out.Flush(); err != nil {
		return fmt.Errorf("writing stdout: %w", err)
	}
	return nil
}

// ctxErr turns the end of ctx into the command's result: the timeout is an
// error, an interrupt is not when watching until interrupted.
func (w *watcher) ctxErr(ctx context.Context, err error) error {
	if ctx.Err() == nil {
		return err
	}
	if errors.Is(context.Cause(ctx), errWatchTimeout) {
		if !w.subscribed {
			return fmt.Errorf("timeout after %v before the subscription was acknowledged: %w", w.timeout, err)
		}
		if w.want > 0 {
			return fmt.Errorf("timeout after %v: %d of %d events received", w.timeout, w.got, w.want)
		}
		return fmt.Errorf("timeout after %v: %d events received", w.timeout, w.got)
	}
	switch {
	case !w.subscribed:
		return fmt.Errorf("interrupted before the subscription was acknowledged: %w", err)
	case w.want == 0:
		return nil // watching until interrupted, as documented
	}
	return fmt.Errorf("interrupted: %d of %d events received", w.got, w.want)
}

// close removes the subscription (so the node stops matching it at once
// rather than at the gateway's TTL) and closes conn.
func (w *watcher) close(conn *client.Conn, id string) {
	if w.subscribed {
		// The answer follows the deliveries on the stream: keep draining.
		var wg sync.WaitGroup
		wg.Go(func() {
			for range conn.Deliveries() {
			}
		})
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = conn.Unsubscribe(ctx, id)
		cancel()
		_ = conn.Close()
		wg.Wait()
		return
	}
	_ = conn.Close()
}

// randomHex returns n random bytes as hex.
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return hex.EncodeToString(b)
}
