package puller

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/bson/primitive"
	"go.mongodb.org/mongo-driver/event"
	"go.mongodb.org/mongo-driver/mongo/integration/mtest"
	"google.golang.org/protobuf/proto"

	"github.com/streamerd/streamer/internal/clock"
	"github.com/streamerd/streamer/internal/testwait"
	streamerv1 "github.com/streamerd/streamer/proto/streamer/v1"
	"github.com/streamerd/streamer/store"
	"github.com/streamerd/streamer/store/memory"
)

// testDB is the database the tests watch.
const testDB = "shop"

// token returns a resume token document with the given _data.
func token(data string) bson.D { return bson.D{{Key: "_data", Value: data}} }

// tokenBytes returns the BSON of token(data), as the checkpoint stores it.
func tokenBytes(t testing.TB, data string) bson.Raw {
	t.Helper()
	b, err := bson.Marshal(token(data))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// crud returns a change event of a document of shop.orders, shaped like
// MongoDB's: op is insert, update, replace or delete.
func crud(data, op, tenant string, id int32) bson.D {
	ev := bson.D{
		{Key: "_id", Value: token(data)},
		{Key: "operationType", Value: op},
		{Key: "clusterTime", Value: primitiveTimestamp(1700000000 + uint32(id))},
		{Key: "ns", Value: bson.D{{Key: "db", Value: testDB}, {Key: "coll", Value: "orders"}}},
		{Key: "documentKey", Value: bson.D{{Key: "_id", Value: id}}},
	}
	doc := bson.D{{Key: "_id", Value: id}, {Key: "tenant", Value: tenant}, {Key: "n", Value: id}}
	switch op {
	case "update":
		ev = append(ev, bson.E{Key: "updateDescription", Value: bson.D{
			{Key: "updatedFields", Value: bson.D{{Key: "n", Value: id}}},
			{Key: "removedFields", Value: bson.A{}},
		}})
		fallthrough
	case "insert", "replace":
		ev = append(ev, bson.E{Key: "fullDocument", Value: doc})
	case "delete":
		ev = append(ev, bson.E{Key: "fullDocumentBeforeChange", Value: doc})
	}
	return ev
}

// cannedD returns the canned event called name (mapping_test.go) as a bson.D.
func cannedD(t testing.TB, name string) bson.D {
	var d bson.D
	if err := bson.Unmarshal(canned(t, name), &d); err != nil {
		t.Fatal(err)
	}
	return d
}

// cursorReply is a server reply to the change stream's aggregate (kind
// mtest.FirstBatch) or to a getMore (mtest.NextBatch), with a
// postBatchResumeToken when pbrt is not nil.
func cursorReply(kind mtest.BatchIdentifier, cursorID int64, pbrt bson.D, events ...bson.D) bson.D {
	reply := mtest.CreateCursorResponse(cursorID, testDB+".$cmd.aggregate", kind, events...)
	if pbrt != nil {
		cursor := reply[1].Value.(bson.D)
		reply[1].Value = append(cursor, bson.E{Key: "postBatchResumeToken", Value: pbrt})
	}
	return reply
}

// recorder records, in order, what a puller did to the backend.
type recorder struct {
	mu     sync.Mutex
	ops    []string // "append <partition> <event ids>", "append-failed <p>", "save <token>"
	events []*streamerv1.ChangeEvent
}

func (r *recorder) add(op string) {
	r.mu.Lock()
	r.ops = append(r.ops, op)
	r.mu.Unlock()
}

func (r *recorder) snapshot() ([]string, []*streamerv1.ChangeEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.ops...), append([]*streamerv1.ChangeEvent(nil), r.events...)
}

// eventIDs lists the ids of the events appended, in order.
func (r *recorder) eventIDs() []string {
	_, evs := r.snapshot()
	ids := make([]string, len(evs))
	for i, e := range evs {
		ids[i] = e.GetEventId()
	}
	return ids
}

// recordingLog is an EventLog that records appends and can fail them.
type recordingLog struct {
	store.EventLog
	rec  *recorder
	fail func(p int) error // called before each Append; a non-nil error fails it
}

func (l *recordingLog) Append(ctx context.Context, p int, payloads ...[]byte) ([]string, error) {
	if l.fail != nil {
		if err := l.fail(p); err != nil {
			l.rec.add(fmt.Sprintf("append-failed %d", p))
			return nil, err
		}
	}
	ids, err := l.EventLog.Append(ctx, p, payloads...)
	if err != nil {
		return ids, err
	}
	var names []string
	var evs []*streamerv1.ChangeEvent
	for _, pl := range payloads {
		var le streamerv1.LogEntry
		if err := proto.Unmarshal(pl, &le); err != nil {
			panic(err)
		}
		evs = append(evs, le.GetEvent())
		names = append(names, le.GetEvent().GetEventId())
	}
	l.rec.mu.Lock()
	l.rec.ops = append(l.rec.ops, fmt.Sprintf("append %d %s", p, strings.Join(names, ",")))
	l.rec.events = append(l.rec.events, evs...)
	l.rec.mu.Unlock()
	return ids, nil
}

// recordingCheckpoints records successful saves.
type recordingCheckpoints struct {
	store.Checkpoints
	rec *recorder
}

func (c *recordingCheckpoints) Save(ctx context.Context, name string, value []byte) error {
	if err := c.Checkpoints.Save(ctx, name, value); err != nil {
		return err
	}
	c.rec.add("save " + tokenID(value))
	return nil
}

// testBackend is a memory backend whose log and checkpoints record what the
// puller does.
type testBackend struct {
	*store.Backend
	rec *recorder
	log *recordingLog
}

func newTestBackend(t *testing.T) *testBackend {
	t.Helper()
	return newTestBackendOn(t, nil)
}

// newTestBackendOn is newTestBackend with its TTLs on c.
func newTestBackendOn(t *testing.T, c clock.Clock) *testBackend {
	t.Helper()
	mem := memory.New(memory.Config{Partitions: 16, Clock: c})
	t.Cleanup(func() { mem.Close() })
	rec := &recorder{}
	b := *mem
	log := &recordingLog{EventLog: mem.Log, rec: rec}
	b.Log = log
	b.Checkpoints = &recordingCheckpoints{Checkpoints: mem.Checkpoints, rec: rec}
	return &testBackend{Backend: &b, rec: rec, log: log}
}

// checkpoint returns the _data of the saved token of the puller called name
// ("" if none).
func (b *testBackend) checkpoint(t testing.TB, name string) string {
	t.Helper()
	v, found, err := b.Checkpoints.Load(context.Background(), CheckpointName(name))
	if err != nil {
		t.Fatal(err)
	}
	if !found {
		return ""
	}
	return tokenID(v)
}

// syncBuffer is a log sink safe for concurrent writers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// testConfig returns a Config for tests: fast retries, logs into logs.
func testConfig(w Watcher, logs *syncBuffer) Config {
	return Config{
		Watcher:  w,
		RetryMin: 2 * time.Millisecond,
		RetryMax: 20 * time.Millisecond,
		Logger:   slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
}

// running is a Puller whose Run runs in a goroutine.
type running struct {
	*Puller
	cancel context.CancelFunc
	done   chan error
}

// start runs a new Puller of cfg over backend until stop (or the test's
// end).
func start(t *testing.T, cfg Config, backend *store.Backend) *running {
	t.Helper()
	p, err := New(cfg, backend)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{Puller: p, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- p.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop cancels Run and returns its result. It may be called more than once.
func (r *running) stop(t testing.TB) error {
	t.Helper()
	r.cancel()
	return r.wait(t)
}

// wait returns Run's result once it returns by itself.
func (r *running) wait(t testing.TB) error {
	t.Helper()
	select {
	case err := <-r.done:
		r.done <- err // for later calls
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return within 10s")
		return nil
	}
}

// waitFor polls cond until it holds, failing the test after testwait.Timeout.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	testwait.For(t, what, cond)
}

// changeStreamStages returns the $changeStream stage of every aggregate the
// client sent, in order. Call it only once the pullers using mt stopped.
func changeStreamStages(t testing.TB, mt *mtest.T) []bson.Raw {
	t.Helper()
	var stages []bson.Raw
	for _, e := range mt.GetAllStartedEvents() {
		if e.CommandName != "aggregate" {
			continue
		}
		stages = append(stages, changeStreamStage(t, e))
	}
	return stages
}

func changeStreamStage(t testing.TB, e *event.CommandStartedEvent) bson.Raw {
	t.Helper()
	first, err := e.Command.Lookup("pipeline").Array().IndexErr(0)
	if err != nil {
		t.Fatalf("aggregate without a pipeline: %v", e.Command)
	}
	stage, ok := first.Value().Document().Lookup("$changeStream").DocumentOK()
	if !ok {
		t.Fatalf("first stage is not $changeStream: %v", e.Command)
	}
	return bson.Raw(stage)
}

// resumeAfter returns the resumeAfter (or startAfter) token of a
// $changeStream stage, or nil.
func resumeAfter(stage bson.Raw) bson.Raw {
	for _, key := range []string{"resumeAfter", "startAfter"} {
		if d, ok := stage.Lookup(key).DocumentOK(); ok {
			return d
		}
	}
	return nil
}

// mockT creates the mtest mock deployment for a test.
func mockT(t *testing.T) *mtest.T {
	return mtest.New(t, mtest.NewOptions().ClientType(mtest.Mock))
}

func primitiveTimestamp(t uint32) primitive.Timestamp { return primitive.Timestamp{T: t, I: 1} }
