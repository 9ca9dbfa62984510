package redis

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"github.com/streamerd/streamer/internal/redistest"
	"github.com/streamerd/streamer/store"
)

// TestRawReadsMatchGoRedis reads the same streams with go-redis's parser
// and with parseStreams, over RESP2 and RESP3, from a real server: entries
// with and without "p", with other fields, empty, binary and CRLF-laden
// payloads, across several streams, one of them empty or missing.
func TestRawReadsMatchGoRedis(t *testing.T) {
	srv := redistest.Start(t)
	rng := rand.New(rand.NewPCG(7, 7))
	keys := []string{"{t}:a", "{t}:b", "{t}:c", "{t}:missing"}
	setup := goredis.NewClient(&goredis.Options{Addr: srv.Addr()})
	defer setup.Close()
	for i := range 300 {
		key := keys[rng.IntN(3)]
		var values []any
		switch rng.IntN(5) {
		case 0:
			values = []any{"other", "x"}
		case 1:
			values = []any{"p", ""}
		case 2:
			values = []any{"a", "1", "p", randomBytes(rng, 40), "z", "2"}
		default:
			values = []any{"p", randomBytes(rng, rng.IntN(3000))}
		}
		if err := setup.XAdd(t.Context(), &goredis.XAddArgs{Stream: key, Values: values}).Err(); err != nil {
			t.Fatalf("XADD %d: %v", i, err)
		}
	}
	if err := setup.Del(t.Context(), "{t}:c").Err(); err != nil {
		t.Fatal(err)
	}
	if err := setup.XAdd(t.Context(), &goredis.XAddArgs{Stream: "{t}:c", Values: []any{"p", "only"}}).Err(); err != nil {
		t.Fatal(err)
	}

	for _, protocol := range []int{2, 3} {
		t.Run(fmt.Sprintf("RESP%d", protocol), func(t *testing.T) {
			client := goredis.NewClient(&goredis.Options{Addr: srv.Addr(), Protocol: protocol})
			defer client.Close()
			for _, count := range []int{0, 1, 7, 1000} {
				streams := []string{keys[0], keys[1], keys[2], keys[3], "0", "0-1", "0", "0"}
				args := []any{"xread"}
				if count > 0 {
					args = append(args, "count", count)
				}
				args = append(args, "streams")
				for _, s := range streams {
					args = append(args, s)
				}
				raw, err := rawStreamsCmd(t.Context(), client, nil, args).result()
				if err != nil {
					t.Fatalf("raw XREAD count %d: %v", count, err)
				}
				typed, err := typedStreams{client.XRead(t.Context(), &goredis.XReadArgs{Streams: streams, Count: int64(count), Block: -1})}.result()
				if err != nil {
					t.Fatalf("XREAD count %d: %v", count, err)
				}
				if want, got := describe(typed), describe(raw); got != want {
					t.Fatalf("count %d: raw reply parsed as\n%s\nwant\n%s", count, got, want)
				}
				if len(raw) != 3 {
					t.Fatalf("count %d: %d streams, want 3 (the missing one has no entries)", count, len(raw))
				}
			}

			// A timed-out blocking read is a null reply: no streams, no error.
			got, err := rawStreamsCmd(t.Context(), client, nil, []any{"xread", "block", 10, "streams", keys[3], "$"}).result()
			if err != nil || len(got) != 0 {
				t.Fatalf("timed-out XREAD: %v, %v; want nothing", got, err)
			}
			// An error reply is an error go-redis recognises as Redis's.
			_, err = rawStreamsCmd(t.Context(), client, nil, []any{"xreadgroup", "group", "nogroup", "c", "streams", keys[0], ">"}).result()
			if !goredis.HasErrorPrefix(err, "NOGROUP") {
				t.Fatalf("XREADGROUP on a missing group: %v, want a NOGROUP Redis error", err)
			}
		})
	}
}

// describe renders parsed streams for comparison.
func describe(got []streamReply) string {
	var b strings.Builder
	for _, st := range got {
		fmt.Fprintf(&b, "%s:", st.stream)
		for _, e := range st.entries {
			fmt.Fprintf(&b, " %s=%x", e.ID, e.Payload)
			if e.Payload == nil {
				b.WriteString("(nil)")
			}
		}
		b.WriteString("\n")
	}
	return b.String()
}

func randomBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.IntN(256))
		if rng.IntN(20) == 0 {
			b[i] = "\r\n$*"[rng.IntN(4)]
		}
	}
	return b
}

func TestParseStreamsRefusesMalformedReplies(t *testing.T) {
	good := "*1\r\n*2\r\n$1\r\ns\r\n*1\r\n*2\r\n$3\r\n1-1\r\n*2\r\n$1\r\np\r\n$2\r\nhi\r\n"
	if got, err := parseStreams([]byte(good)); err != nil || describe(got) != "s: 1-1=6869\n" {
		t.Fatalf("parseStreams(good) = %q, %v", describe(got), err)
	}
	for _, tt := range []struct{ name, reply string }{
		{"empty", ""},
		{"no CRLF", "*1"},
		{"truncated", good[:len(good)-3]},
		{"bad count", "*x\r\n"},
		{"negative count", "*-2\r\n"},
		{"string where an array belongs", "$1\r\nx\r\n"},
		{"stream of three", "*1\r\n*3\r\n$1\r\ns\r\n*0\r\n*0\r\n"},
		{"entry of one", "*1\r\n*2\r\n$1\r\ns\r\n*1\r\n*1\r\n$3\r\n1-1\r\n"},
		{"entry without id", "*1\r\n*2\r\n$1\r\ns\r\n*1\r\n*2\r\n$0\r\n\r\n*0\r\n"},
		{"odd fields", "*1\r\n*2\r\n$1\r\ns\r\n*1\r\n*2\r\n$3\r\n1-1\r\n*1\r\n$1\r\np\r\n"},
		{"string past the end", "*1\r\n*2\r\n$9\r\ns\r\n"},
		{"integer as a field", "*1\r\n*2\r\n$1\r\ns\r\n*1\r\n*2\r\n$3\r\n1-1\r\n*2\r\n:1\r\n$1\r\nx\r\n"},
	} {
		if got, err := parseStreams([]byte(tt.reply)); !errors.Is(err, errBadReply) {
			t.Errorf("%s: parseStreams = %v, %v; want an error wrapping errBadReply", tt.name, got, err)
		}
	}
	for _, reply := range []string{"-NOGROUP no such group\r\n", "!21\r\nNOGROUP no such group\r\n"} {
		_, err := parseStreams([]byte(reply))
		if !goredis.HasErrorPrefix(err, "NOGROUP") || err.Error() != "NOGROUP no such group" {
			t.Errorf("parseStreams(%q) = %v, want the NOGROUP error", reply, err)
		}
	}
	for _, reply := range []string{"*-1\r\n", "_\r\n", "*0\r\n", "%0\r\n"} {
		if got, err := parseStreams([]byte(reply)); err != nil || len(got) != 0 {
			t.Errorf("parseStreams(%q) = %v, %v; want nothing", reply, got, err)
		}
	}
}

// FuzzParseStreams checks that no reply makes parseStreams panic or hand
// out bytes outside the reply, and that an encoded reply parses back.
func FuzzParseStreams(f *testing.F) {
	f.Add([]byte("*1\r\n*2\r\n$1\r\ns\r\n*1\r\n*2\r\n$3\r\n1-1\r\n*2\r\n$1\r\np\r\n$2\r\nhi\r\n"), []byte("x"))
	f.Add([]byte("%1\r\n$1\r\ns\r\n*1\r\n*2\r\n$3\r\n1-1\r\n_\r\n"), []byte{})
	f.Fuzz(func(t *testing.T, reply, payload []byte) {
		got, err := parseStreams(reply)
		if err == nil {
			for _, st := range got {
				for _, e := range st.entries {
					if e.ID == "" || e.Payload == nil || !within(reply, e.Payload) {
						t.Fatalf("entry %+v is not a slice of the reply", e)
					}
				}
			}
		}
		enc := fmt.Appendf(nil, "*1\r\n*2\r\n$3\r\nkey\r\n*1\r\n*2\r\n$3\r\n1-1\r\n*2\r\n$1\r\np\r\n$%d\r\n%s\r\n", len(payload), payload)
		back, err := parseStreams(enc)
		if err != nil || len(back) != 1 || len(back[0].entries) != 1 || !bytes.Equal(back[0].entries[0].Payload, payload) {
			t.Fatalf("round trip of %q: %v, %v", payload, back, err)
		}
	})
}

func within(outer, inner []byte) bool {
	if len(inner) == 0 {
		return true
	}
	for i := range outer {
		if &outer[i] == &inner[0] {
			return i+len(inner) <= len(outer)
		}
	}
	return false
}

func TestMergeWakeUpReads(t *testing.T) {
	e := func(ids ...string) []store.Entry {
		var out []store.Entry
		for _, id := range ids {
			out = append(out, store.Entry{ID: id})
		}
		return out
	}
	show := func(rs []streamReply) string {
		var b strings.Builder
		for _, r := range rs {
			b.WriteString(r.stream + ":")
			for _, x := range r.entries {
				b.WriteString(x.ID + ",")
			}
			b.WriteString(" ")
		}
		return b.String()
	}
	first := func() []streamReply {
		return []streamReply{{"p0", e("1-1", "1-2")}, {"p1", e("2-1")}}
	}
	second := []streamReply{{"p1", e("2-1", "2-2")}, {"p2", e("3-1")}}
	// XREADGROUP: the second read delivered only new entries.
	f := first()
	backing := f[0].entries
	if got, want := show(appendReads(f, []streamReply{{"p0", e("1-3")}, {"p2", e("3-1")}})), "p0:1-1,1-2,1-3, p1:2-1, p2:3-1, "; got != want {
		t.Errorf("appendReads = %q, want %q", got, want)
	}
	if len(backing) != 2 {
		t.Errorf("appendReads grew the first reply's entries in place")
	}
	// XREAD from the same cursors: the later reply of a stream wins.
	if got, want := show(laterReads(first(), second)), "p0:1-1,1-2, p1:2-1,2-2, p2:3-1, "; got != want {
		t.Errorf("laterReads = %q, want %q", got, want)
	}
	if got, want := show(laterReads(nil, second)), "p1:2-1,2-2, p2:3-1, "; got != want {
		t.Errorf("laterReads after a timeout = %q, want %q", got, want)
	}
}
