package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/streamerd/streamer/client"
	streamerv1 "github.com/streamerd/streamer/proto/streamer/v1"
)

const publishSynopsis = `publish --addr HOST:PORT [flags] < events.jsonl

Reads change events as JSON lines on stdin and publishes them to a node's
Ingest service in batches. Each line is one event in the JSON form
  {"event_id","tenant","collection","id","op":"create|update|delete","doc","before","changed","ts"}
(doc and before are JSON objects, ts is milliseconds since the epoch or an
RFC 3339 time). A missing event_id is generated; a missing ts is now. Blank
lines are skipped.

Events a node cannot append for a transient reason (its Redis is down or
failing over: ERROR_CODE_UNAVAILABLE), and batches no node answers, are sent
again with backoff, with the same event ids (a retry of an event appended
after all is a duplicate the nodes drop), until --timeout for the batch.

Every rejected event and every line that is not a valid event is reported on
stderr with its line number; after all lines are processed the command exits
non-zero if there was any. Every flag also reads STREAMER_<FLAG>, e.g.
STREAMER_ADDR and STREAMER_AUTH_TOKEN.`

// maxLineBytes bounds one input line: a document and a pre-image of the
// node's default 1 MiB limit each fit many times over.
const maxLineBytes = 16 << 20

func runPublish(ctx context.Context, args []string, sio stdio) error {
	fs := newFlagSet("publish", publishSynopsis, sio)
	addr := fs.String("addr", "localhost:7070", "`HOST:PORT` of a node's gRPC listener")
	tokenFlag := secretFlag(fs, "auth-token", "bearer `token` the node requires")
	batch := fs.Int("batch", 500, "most events per Publish call (calls are also cut at 4 MiB)")
	tlsFlags := clientTLSFlags(fs)
	timeout := fs.Duration("timeout", 30*time.Second, "`limit` of each batch, retries of refused events included")
	if err := parseFlagsEnv(fs, args); err != nil {
		return err
	}
	if *batch < 1 || *timeout <= 0 {
		fmt.Fprintln(sio.err, "--batch and --timeout must be positive")
		return errUsage
	}
	token, err := tokenFlag()
	if err != nil {
		return usageError(sio, err)
	}
	transport, err := tlsFlags.option()
	if err != nil {
		return usageError(sio, err)
	}
	opts := []client.Option{transport}
	if token != "" {
		opts = append(opts, client.WithToken(token))
	}
	pub, err := client.NewPublisher(*addr, opts...)
	if err != nil {
		return err
	}
	defer pub.Close()

	p := &publisher{pub: pub, errOut: sio.err, timeout: *timeout, max: *batch}
	lines := newLineReader(sio.in, maxLineBytes)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		line, n, err := lines.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if errors.Is(err, errLineTooLong) {
			fmt.Fprintf(sio.err, "line %d: longer than %d bytes, skipped\n", n, maxLineBytes)
			p.invalid++
			continue
		}
		if err != nil {
			return fmt.Errorf("reading stdin: %w", err)
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		ev, err := client.ParseEventJSON(line)
		if err != nil {
			fmt.Fprintf(sio.err, "line %d: invalid event: %v\n", n, err)
			p.invalid++
			continue
		}
		if ev.EventId == "" {
			ev.EventId = newEventID()
		}
		if ev.TimestampMs == 0 {
			ev.TimestampMs = time.Now().UnixMilli()
		}
		if err := p.add(ctx, ev, n); err != nil {
			return err
		}
	}
	if err := p.flush(ctx); err != nil {
		return err
	}
	if p.rejected > 0 || p.invalid > 0 {
		return fmt.Errorf("%d events published, %d rejected, %d invalid lines", p.published, p.rejected, p.invalid)
	}
	fmt.Fprintf(sio.err, "%d events published\n", p.published)
	return nil
}

// publisher batches events and reports rejections by input line.
type publisher struct {
	pub     *client.Publisher
	errOut  io.Writer
	timeout time.Duration
	max     int

	events []*streamerv1.ChangeEvent
	lines  []int // input line of each event
	size   int   // encoded bytes of events

	published, rejected, invalid int
}

func (p *publisher) add(ctx context.Context, ev *streamerv1.ChangeEvent, line int) error {
	// Batches are cut by count and by bytes; an event too large for one
	// call goes alone and is refused by itself (client.Publisher).
	n := proto.Size(ev)
	if len(p.events) > 0 && p.size+n > client.MaxPublishBytes {
		if err := p.flush(ctx); err != nil {
			return err
		}
	}
	p.events = append(p.events, ev)
	p.lines = append(p.lines, line)
	p.size += n
	if len(p.events) >= p.max {
		return p.flush(ctx)
	}
	return nil
}

func (p *publisher) flush(ctx context.Context) error {
	if len(p.events) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	results, err := p.pub.Publish(ctx, p.events)
	if err != nil {
		return fmt.Errorf("publishing lines %d-%d: %w", p.lines[0], p.lines[len(p.lines)-1], err)
	}
	for i, r := range results {
		if e := r.GetError(); e != nil {
			fmt.Fprintf(p.errOut, "line %d: event %q rejected: %s: %s\n", p.lines[i], p.events[i].GetEventId(), e.GetCode(), e.GetMessage())
			p.rejected++
			continue
		}
		p.published++
	}
	p.events, p.lines, p.size = p.events[:0], p.lines[:0], 0
	return nil
}

var errLineTooLong = errors.New("line too long")

// lineReader splits input into lines of at most max bytes; a longer line is
// skipped (errLineTooLong) without being held in memory.
type lineReader struct {
	r    *bufio.Reader
	max  int
	n    int // number of the line last returned
	line []byte
}

func newLineReader(r io.Reader, max int) *lineReader {
	return &lineReader{r: bufio.NewReaderSize(r, 64<<10), max: max}
}

// next returns the next line without its end, and its 1-based number.
func (l *lineReader) next() ([]byte, int, error) {
	l.line = l.line[:0]
	tooLong := false
	for {
		chunk, err := l.r.ReadSlice('\n')
		if !tooLong {
			if len(l.line)+len(chunk) > l.max+2 { // +2: the line end
				tooLong = true
				l.line = l.line[:0]
			} else {
				l.line = append(l.line, chunk...)
			}
		}
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF):
			if len(chunk) == 0 && len(l.line) == 0 && !tooLong {
				return nil, l.n, io.EOF
			}
		case err != nil:
			return nil, l.n, err
		}
		l.n++
		if tooLong {
			return nil, l.n, errLineTooLong
		}
		return bytes.TrimRight(l.line, "\r\n"), l.n, nil
	}
}

// newEventID returns a random event id for an event published without one.
func newEventID() string {
	return "pub-" + randomHex(12)
}
