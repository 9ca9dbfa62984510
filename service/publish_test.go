package service

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/streamerd/streamer/internal/wire"
	streamerv1 "github.com/streamerd/streamer/proto/streamer/v1"
	"github.com/streamerd/streamer/store"
	"github.com/streamerd/streamer/store/memory"
)

// checkIngestRaw compares Node.ingestRaw on the encoded PublishRequest b with
// proto.Unmarshal(b): it accepts exactly the requests proto.Unmarshal
// accepts, gives every event the result of validating the decoded event,
// the partition of its tenant's collection, and a LogEntry that decodes to
// the event with the partition and position the log sets cleared. It returns
// whether ingestRaw accepted the request, and how many of its events are
// valid.
func checkIngestRaw(t testing.TB, n *Node, b []byte) (accepted bool, valid int) {
	t.Helper()
	in, ok := n.ingestRaw(b)
	var req streamerv1.PublishRequest
	perr := proto.Unmarshal(b, &req)
	if ok != (perr == nil) {
		t.Fatalf("ingestRaw accepted = %v, but proto.Unmarshal: %v", ok, perr)
	}
	if !ok {
		return false, 0
	}
	if len(in) != len(req.GetEvents()) {
		t.Fatalf("ingestRaw read %d events, proto.Unmarshal %d", len(in), len(req.GetEvents()))
	}
	for i, ev := range req.GetEvents() {
		got := in[i]
		wantErr := n.validateEvent(eventFields{
			id: ev.GetEventId(), noCollection: ev.GetCollection() == "", noDocumentID: ev.GetDocumentId() == "",
			op: ev.GetOperation(), document: ev.GetDocument(), before: ev.GetBefore(),
		})
		if got.result.GetEventId() != ev.GetEventId() || !proto.Equal(got.result.GetError(), wantErr) {
			t.Fatalf("event %d: result %v, want id %q and error %v", i, got.result, ev.GetEventId(), wantErr)
		}
		if wantErr != nil {
			continue
		}
		valid++
		if want := store.PartitionOf(ev.GetTenant(), ev.GetCollection(), n.cfg.Partitions); got.p != want {
			t.Fatalf("event %d: partition %d, want %d", i, got.p, want)
		}
		var entry streamerv1.LogEntry
		if err := proto.Unmarshal(got.payload, &entry); err != nil {
			t.Fatalf("event %d: payload does not decode: %v", i, err)
		}
		want := proto.Clone(ev).(*streamerv1.ChangeEvent)
		want.Partition, want.Position = 0, ""
		if !proto.Equal(entry.GetEvent(), want) {
			t.Fatalf("event %d: log entry holds %v, want %v", i, entry.GetEvent(), want)
		}
	}
	return true, valid
}

// randomPublishRequest encodes a request field by field: events with their
// fields in any order, some repeated, missing, invalid or unknown, and now
// and then bytes proto.Unmarshal refuses.
func randomPublishRequest(r *rand.Rand) []byte {
	pick := func(vs ...string) string { return vs[r.IntN(len(vs))] }
	str := func() string {
		if r.IntN(40) == 0 {
			return "\xff" // not UTF-8
		}
		return pick("", "e1", "t", "c", "d", "ü", "a\x00b", "x")
	}
	doc := func() string {
		return pick("", `{}`, `{"a":1}`, ` {"n":[1,2]} `, `[1]`, `{"a":`, `nope`, `{"big":"`+string(make([]byte, 40))+`"}`)
	}
	var b []byte
	for range r.IntN(6) {
		var ev []byte
		for range r.IntN(12) {
			f := protowire.Number(1 + r.IntN(13))
			if (f == wire.FieldEventPartition || f == wire.FieldEventPosition) && r.IntN(10) != 0 {
				f = wire.FieldEventTenant // set by the log: rare in requests
			}
			switch {
			case f == wire.FieldEventOperation || f == wire.FieldEventPartition || f == 9:
				ev = protowire.AppendTag(ev, f, protowire.VarintType)
				ev = protowire.AppendVarint(ev, uint64(r.IntN(5)))
			case f == wire.FieldEventDocument || f == wire.FieldEventBefore:
				ev = protowire.AppendTag(ev, f, protowire.BytesType)
				ev = protowire.AppendString(ev, doc())
			case f == 12 || f == 13: // unknown fields
				ev = protowire.AppendTag(ev, f, protowire.Fixed32Type)
				ev = protowire.AppendFixed32(ev, 7)
			default:
				ev = protowire.AppendTag(ev, f, protowire.BytesType)
				ev = protowire.AppendString(ev, str())
			}
		}
		if r.IntN(10) == 0 { // the usual fields, so that most events are valid
			ev = nil
			for f, v := range map[protowire.Number]string{wire.FieldEventID: "e", wire.FieldEventCollection: "c", wire.FieldEventDocumentID: "d", wire.FieldEventDocument: `{"a":1}`} {
				ev = protowire.AppendString(protowire.AppendTag(ev, f, protowire.BytesType), v)
			}
			ev = protowire.AppendVarint(protowire.AppendTag(ev, wire.FieldEventOperation, protowire.VarintType), uint64(1+r.IntN(3)))
		}
		b = protowire.AppendBytes(protowire.AppendTag(b, wire.FieldPublishRequestEvents, protowire.BytesType), ev)
		if r.IntN(20) == 0 {
			b = protowire.AppendVarint(protowire.AppendTag(b, 5, protowire.VarintType), 1) // unknown request field
		}
	}
	if r.IntN(30) == 0 && len(b) > 0 {
		b = b[:r.IntN(len(b))] // truncated
	}
	return b
}

func TestIngestRawIsWhatProtoDecodes(t *testing.T) {
	n, err := New(Config{MaxDocumentBytes: 32, Partitions: 7}, memoryBackend(t, 7))
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	accepted, valid := 0, 0
	for range 5000 {
		ok, v := checkIngestRaw(t, n, randomPublishRequest(r))
		if ok {
			accepted++
		}
		valid += v
	}
	// Requests built by a real client are taken too.
	b, err := proto.Marshal(&streamerv1.PublishRequest{Events: []*streamerv1.ChangeEvent{
		event("a", "t", "c", "d", opCreate, `{"x":1}`, ""), event("b", "t2", "c", "d", opUpdate, `{}`, `{"y":2}`),
	}})
	if err != nil {
		t.Fatal(err)
	}
	if ok, v := checkIngestRaw(t, n, b); !ok || v != 2 {
		t.Fatalf("ingestRaw on an ordinary request: accepted %v, %d valid events; want true, 2", ok, v)
	}
	if accepted < 2500 || valid < 500 {
		t.Fatalf("ingestRaw accepted %d of 5000 random requests, with %d valid events; the test exercises too little", accepted, valid)
	}
	t.Logf("ingestRaw accepted %d of 5000 random requests, with %d valid events", accepted, valid)
}

func TestPublishRawRefusesWhatGRPCCouldNotDecode(t *testing.T) {
	n, err := New(Config{Partitions: 2}, memoryBackend(t, 2))
	if err != nil {
		t.Fatal(err)
	}
	_, err = (&ingestService{n: n}).publishRaw(context.Background(), &rawRequest{data: []byte{0x0a, 0x05, 0x01}})
	if status.Code(err) != codes.Internal {
		t.Fatalf("publishRaw of truncated bytes: %v, want codes.Internal", err)
	}
}

func FuzzIngestRaw(f *testing.F) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 20 {
		f.Add(randomPublishRequest(r))
	}
	n, err := New(Config{MaxDocumentBytes: 32, Partitions: 5}, memoryBackend(f, 5))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) { _, _ = checkIngestRaw(t, n, b) })
}

// memoryBackend returns a memory backend closed by tb.Cleanup.
func memoryBackend(tb testing.TB, partitions int) *store.Backend {
	b := memory.New(memory.Config{Partitions: partitions})
	tb.Cleanup(func() { _ = b.Close() })
	return b
}

// BenchmarkIngest compares reading a 20-event Publish request, validating
// and encoding its log entries, with and without decoding the events (the
// append itself excluded).
func BenchmarkIngest(b *testing.B) {
	n, err := New(Config{Partitions: 16}, memoryBackend(b, 16))
	if err != nil {
		b.Fatal(err)
	}
	var req streamerv1.PublishRequest
	for i := range 20 {
		req.Events = append(req.Events, event(fmt.Sprintf("w%d.1795741547795608647", i), "bench", fmt.Sprintf("items%d", i%16),
			fmt.Sprintf("d%d", 1000+i), opUpdate, fmt.Sprintf(`{"user":"u%d","score":982.56,"region":"r1","n":%d}`, i, i), ""))
	}
	data, err := proto.Marshal(&req)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("decode-validate-encode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var r streamerv1.PublishRequest
			if err := proto.Unmarshal(data, &r); err != nil {
				b.Fatal(err)
			}
			for _, ev := range r.GetEvents() {
				if e := n.validateEvent(eventFields{id: ev.GetEventId(), noCollection: ev.GetCollection() == "", noDocumentID: ev.GetDocumentId() == "",
					op: ev.GetOperation(), document: ev.GetDocument(), before: ev.GetBefore()}); e != nil {
					b.Fatal(e)
				}
				_ = store.PartitionOf(ev.GetTenant(), ev.GetCollection(), 16)
				if _, err := proto.Marshal(&streamerv1.LogEntry{Entry: &streamerv1.LogEntry_Event{Event: ev}}); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("raw", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := n.ingestRaw(data); !ok {
				b.Fatal("declined")
			}
		}
	})
}
