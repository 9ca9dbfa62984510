package redis

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"sync"
	"time"
	"unsafe"

	goredis "github.com/redis/go-redis/v9"

	"github.com/streamerd/streamer/store"
)

// The hot reads (the consumers' XREADGROUP and the delivery pumps' XREAD)
// take their reply as RESP bytes (go-redis's RawWriteToCmd) and parse it
// here. go-redis's own parser builds a map, boxed field names and a string
// per field for every entry; at a few thousand reads a second that was a
// fifth of everything a node allocated. Here a reply is one byte slice,
// and every entry's payload points into it.
//
// Raw replies are used on a single server and with Sentinel, not on
// Cluster: there go-redis must see MOVED and ASK errors to follow slots,
// and a raw reply hides them.

// streamReply is one stream's share of an XREAD or XREADGROUP reply.
type streamReply struct {
	stream  string
	entries []store.Entry
}

// replyBuf receives a raw reply. Buffers are pooled: a reply is copied out
// of its buffer into a slice of exactly its size before it is parsed, and
// the parsed entries point into that copy.
type replyBuf struct{ b []byte }

var replyBufs = sync.Pool{New: func() any { return &replyBuf{b: make([]byte, 0, 4096)} }}

// maxPooledReply bounds the buffers kept in replyBufs.
const maxPooledReply = 1 << 20

func (r *replyBuf) Write(p []byte) (int, error) {
	r.b = append(r.b, p...)
	return len(p), nil
}

// ReadFrom reads a bulk string's bytes straight into the buffer. go-redis
// copies them with io.CopyN, which without it allocates a buffer of the
// string's size for every string.
func (r *replyBuf) ReadFrom(src io.Reader) (int64, error) {
	var total int64
	for {
		want := 512
		if lr, ok := src.(*io.LimitedReader); ok {
			if lr.N <= 0 {
				return total, nil
			}
			want = int(min(lr.N, maxPooledReply))
		}
		r.b = slices.Grow(r.b, want)
		n, err := src.Read(r.b[len(r.b):cap(r.b)])
		r.b = r.b[:len(r.b)+n]
		total += int64(n)
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// take returns a copy of the reply and puts the buffer back in the pool.
func (r *replyBuf) take() []byte {
	b := bytes.Clone(r.b)
	if cap(r.b) <= maxPooledReply {
		r.b = r.b[:0]
		replyBufs.Put(r)
	}
	return b
}

// streamsCmd is a queued XREAD or XREADGROUP, in either form.
type streamsCmd interface {
	// result returns the streams that had entries; none on a timeout.
	result() ([]streamReply, error)
}

// typedStreams is the go-redis form (Cluster).
type typedStreams struct{ cmd *goredis.XStreamSliceCmd }

func (t typedStreams) result() ([]streamReply, error) {
	got, err := t.cmd.Result()
	if err != nil {
		return nil, ignoreNil(err)
	}
	out := make([]streamReply, 0, len(got))
	for _, st := range got {
		if len(st.Messages) > 0 {
			out = append(out, streamReply{stream: st.Stream, entries: entries(st.Messages)})
		}
	}
	return out, nil
}

// rawStreams is the raw form.
type rawStreams struct {
	cmd *goredis.RawWriteToCmd
	buf *replyBuf
}

// result parses the reply; it may be called once.
func (r rawStreams) result() ([]streamReply, error) {
	if err := r.cmd.Err(); err != nil {
		return nil, ignoreNil(err)
	}
	return parseStreams(r.buf.take())
}

// rawStreamsCmd returns a raw command with args, queued on pipe (nil: run
// at once on client). go-redis never retries it (a raw command may have
// written part of its reply), which is what a read of new entries needs: a
// retried XREADGROUP > would leave the first attempt's entries pending with
// nobody holding them.
func rawStreamsCmd(ctx context.Context, client goredis.UniversalClient, pipe goredis.Pipeliner, args []any) rawStreams {
	buf := replyBufs.Get().(*replyBuf)
	cmd := goredis.NewRawWriteToCmd(ctx, buf, args...)
	if pipe != nil {
		_ = pipe.Process(ctx, cmd)
	} else {
		_ = client.Process(ctx, cmd)
	}
	return rawStreams{cmd: cmd, buf: buf}
}

// replyError is an error reply found in a raw reply. It satisfies
// goredis.Error, so goredis.HasErrorPrefix (isNoGroup, …) sees it as
// Redis's.
type replyError string

func (e replyError) Error() string { return string(e) }

// RedisError marks replyError as an error Redis replied with.
func (replyError) RedisError() {}

var _ goredis.Error = replyError("")

// errBadReply is wrapped by a raw reply that is not what was asked for.
var errBadReply = errors.New("redis: unexpected reply")

// parseStreams parses an XREAD or XREADGROUP reply, RESP2 or RESP3: a
// null, or streams each with an array of [id, [field, value, …]]. The
// payload is field "p" (empty if absent or if the entry was deleted). ids
// are copied; payloads and stream names point into b.
func parseStreams(b []byte) ([]streamReply, error) {
	r := respReader{b: b}
	n, pairs, err := r.aggregate()
	if err != nil || n < 0 {
		return nil, err
	}
	streams := n // RESP2: [[stream, entries], …]
	if pairs {
		streams = n / 2 // RESP3: a map stream → entries
	}
	out := make([]streamReply, 0, r.fits(streams))
	for range streams {
		if !pairs {
			m, _, err := r.aggregate()
			if err != nil {
				return nil, err
			}
			if m != 2 {
				return nil, fmt.Errorf("%w: a stream of %d elements", errBadReply, m)
			}
		}
		st, err := r.stream()
		if err != nil {
			return nil, err
		}
		if len(st.entries) > 0 {
			out = append(out, st)
		}
	}
	return out, nil
}

// readArgs returns the arguments of an XREAD or XREADGROUP up to STREAMS:
// head (the command, and its GROUP), COUNT count (if > 0), BLOCK block (if
// >= 0). room is how many stream arguments the caller appends.
func readArgs(count int, block time.Duration, room int, head ...any) []any {
	args := make([]any, 0, len(head)+5+room)
	args = append(args, head...)
	if count > 0 {
		args = append(args, "count", count)
	}
	if block >= 0 {
		args = append(args, "block", int64(block/time.Millisecond))
	}
	return append(args, "streams")
}

// respReader reads RESP from a complete reply.
type respReader struct {
	b []byte
	i int
}

// fits bounds a count read from the reply to what the rest of it can hold
// (every element takes at least 3 bytes), so that a corrupt count cannot
// make a huge allocation.
func (r *respReader) fits(n int) int { return min(n, (len(r.b)-r.i)/3) }

// line returns the next line's type byte and text, without CRLF.
func (r *respReader) line() (byte, []byte, error) {
	end := bytes.Index(r.b[r.i:], crlf)
	if end < 1 {
		return 0, nil, fmt.Errorf("%w: truncated at byte %d", errBadReply, r.i)
	}
	t, text := r.b[r.i], r.b[r.i+1:r.i+end]
	r.i += end + 2
	if t == '-' {
		return 0, nil, replyError(text)
	}
	if t == '!' { // RESP3 blob error
		s, err := r.bulkBody(text)
		if err != nil {
			return 0, nil, err
		}
		return 0, nil, replyError(s)
	}
	return t, text, nil
}

var crlf = []byte("\r\n")

// length parses a length or count; -1 is null.
func length(text []byte) (int, error) {
	n, err := strconv.Atoi(unsafe.String(unsafe.SliceData(text), len(text)))
	if err != nil || n < -1 {
		return 0, fmt.Errorf("%w: bad length %q", errBadReply, text)
	}
	return n, nil
}

// bulkBody reads the n bytes (text holds n) and CRLF after a '$' line.
func (r *respReader) bulkBody(text []byte) ([]byte, error) {
	n, err := length(text)
	if err != nil || n < 0 {
		return nil, err
	}
	if r.i+n+2 > len(r.b) {
		return nil, fmt.Errorf("%w: truncated string at byte %d", errBadReply, r.i)
	}
	s := r.b[r.i : r.i+n : r.i+n]
	r.i += n + 2
	return s, nil
}

// aggregate reads an array, set or map header: its element count (a map's
// counts both keys and values, pairs true), or -1 for a null.
func (r *respReader) aggregate() (n int, pairs bool, err error) {
	t, text, err := r.line()
	if err != nil {
		return 0, false, err
	}
	switch t {
	case '_':
		return -1, false, nil
	case '*', '~':
		n, err = length(text)
		return n, false, err
	case '%':
		n, err = length(text)
		return 2 * n, true, err
	}
	return 0, false, fmt.Errorf("%w: %q where an array was expected", errBadReply, t)
}

// str reads a bulk or simple string (nil for a null).
func (r *respReader) str() ([]byte, error) {
	t, text, err := r.line()
	if err != nil {
		return nil, err
	}
	switch t {
	case '$':
		return r.bulkBody(text)
	case '+':
		return text[:len(text):len(text)], nil
	case '_':
		return nil, nil
	}
	return nil, fmt.Errorf("%w: %q where a string was expected", errBadReply, t)
}

// stream reads a stream name and its entries.
func (r *respReader) stream() (streamReply, error) {
	name, err := r.str()
	if err != nil {
		return streamReply{}, err
	}
	n, _, err := r.aggregate()
	if err != nil || n <= 0 {
		return streamReply{}, err
	}
	st := streamReply{stream: unsafe.String(unsafe.SliceData(name), len(name)), entries: make([]store.Entry, 0, r.fits(n))}
	for range n {
		m, _, err := r.aggregate()
		if err != nil {
			return streamReply{}, err
		}
		if m != 2 {
			return streamReply{}, fmt.Errorf("%w: an entry of %d elements", errBadReply, m)
		}
		id, err := r.str()
		if err != nil {
			return streamReply{}, err
		}
		if len(id) == 0 {
			return streamReply{}, fmt.Errorf("%w: an entry without id", errBadReply)
		}
		e := store.Entry{ID: string(id), Payload: []byte{}}
		fields, _, err := r.aggregate()
		if err != nil {
			return streamReply{}, err
		}
		for f := 0; f+1 < fields; f += 2 {
			k, err := r.str()
			if err != nil {
				return streamReply{}, err
			}
			v, err := r.str()
			if err != nil {
				return streamReply{}, err
			}
			if string(k) == "p" && len(v) > 0 {
				e.Payload = v
			}
		}
		if fields%2 == 1 {
			return streamReply{}, fmt.Errorf("%w: entry %s has an odd field list", errBadReply, e.ID)
		}
		st.entries = append(st.entries, e)
	}
	return st, nil
}

// A blocking read of several streams is followed, in the same pipeline, by the same
// read without BLOCK ("wake-up reads"). redis-server before 7.2 answers a read blocked
// on several streams with only the first stream that receives entries, even when one
// script appended to several of them at once: the reader would need another round
// trip per stream (a node's consumers after each publish; its outbox multiplexer
// after each round of the consumers, with the gateways not in the answer waiting for
// the next round). The read without BLOCK, queued behind the blocked one, runs as soon
// as that one is answered and returns every stream's entries present then. From
// Redis 7.2, which answers a woken read with every stream that has entries, the second
// read mostly finds nothing, at the cost of one command in a round trip already made.

// appendReads merges the replies of two XREADGROUP … > calls made one after the
// other: the second delivered only entries the first did not, so each stream's
// entries are the first's followed by the second's.
func appendReads(first, second []streamReply) []streamReply {
	return mergeReads(first, second, func(a, b []store.Entry) []store.Entry { return append(slices.Clip(a), b...) })
}

// laterReads merges the replies of two XREAD calls from the same cursors made one
// after the other: each stream's later entries are a superset of its earlier ones
// (up to the same COUNT), so the second reply wins where it has the stream.
func laterReads(first, second []streamReply) []streamReply {
	return mergeReads(first, second, func(_, b []store.Entry) []store.Entry { return b })
}

// mergeReads adds second's streams to first, combining the entries of a stream in
// both.
func mergeReads(first, second []streamReply, combine func(a, b []store.Entry) []store.Entry) []streamReply {
	for _, st := range second {
		i := slices.IndexFunc(first, func(f streamReply) bool { return f.stream == st.stream })
		if i < 0 {
			first = append(first, st)
			continue
		}
		first[i].entries = combine(first[i].entries, st.entries)
	}
	return first
}
