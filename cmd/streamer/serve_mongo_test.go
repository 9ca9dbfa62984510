package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/bson/primitive"
	"go.mongodb.org/mongo-driver/mongo"
	"go.mongodb.org/mongo-driver/mongo/options"

	"github.com/streamerd/streamer/client"
	"github.com/streamerd/streamer/internal/testbin"
	"github.com/streamerd/streamer/internal/testwait"
	"github.com/streamerd/streamer/puller"
)

func TestServeMongoHelp(t *testing.T) {
	var stderr pullerStderr
	err := runServe(context.Background(), []string{"--help"}, stdio{in: strings.NewReader(""), out: io.Discard, err: &stderr})
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("runServe --help = %v, want flag.ErrHelp", err)
	}
	for _, want := range []string{
		"-mongo URI", "-mongo-db database", "-mongo-collections list", "-puller-name name", `(default "default")`,
		"-tenant-field field", "-default-tenant tenant", "-collection-field field", "-id-field field", "-pre-images", "-start-from-now",
		"streamer_puller_", "exits with status 1 and the puller's\nmessage", "never keeps running without its feed",
	} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("--help lacks %q:\n%s", want, stderr.String())
		}
	}
}

func TestServeMongoFlagErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"puller flags without --mongo", []string{"--mongo-db", "app", "--pre-images"}, nil,
			"--mongo-db, --pre-images: only meaningful with --mongo URI"},
		{"no database", []string{"--mongo", "mongodb://127.0.0.1:1"}, nil, "--mongo-db is required"},
		{"bad URI", []string{"--mongo", "http://h/app"}, nil, "--mongo:"},
		{"bad URI with --mongo-db", []string{"--mongo", "http://h", "--mongo-db", "app"}, nil, "--mongo:"},
		{"--mongo from the environment", nil, map[string]string{"STREAMER_MONGO": "mongodb://127.0.0.1:1"}, "--mongo-db is required"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			var stderr pullerStderr
			err := runServe(context.Background(), append([]string{"--grpc", "127.0.0.1:0", "--http", "127.0.0.1:0"}, tc.args...),
				stdio{in: strings.NewReader(""), out: io.Discard, err: &stderr})
			if !errors.Is(err, errUsage) {
				t.Fatalf("runServe = %v, want a usage error", err)
			}
			if !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("stderr %q lacks %q", stderr.String(), tc.want)
			}
		})
	}

	// Mapping flags from an environment shared with pullers are tolerated
	// without --mongo (the node just has no puller).
	t.Setenv("STREAMER_TENANT_FIELD", "org")
	ctx, cancel := context.WithCancel(context.Background())
	s := startServeInProcess(t, ctx, nil)
	cancel()
	if err := s.wait(t); err != nil {
		t.Fatalf("serve with STREAMER_TENANT_FIELD and no --mongo = %v\n%s", err, s.logs.String())
	}
}

// inProcessServe is a serve running in this process.
type inProcessServe struct {
	base string // http://host:port of the admin listener
	grpc string // host:port of the gRPC listener
	logs *pullerStderr
	done chan error
	read sync.WaitGroup // the reader of serve's stderr: done once serve closed it
}

// startServeInProcess runs serve with JSON logs on free loopback ports,
// opening MongoDB with open (the real driver when nil), and waits for its
// "listening" log line.
func startServeInProcess(t testing.TB, ctx context.Context, open mongoOpener, args ...string) *inProcessServe {
	t.Helper()
	if open == nil {
		open = openMongo
	}
	stderrR, stderrW := io.Pipe()
	s := &inProcessServe{logs: &pullerStderr{}, done: make(chan error, 1)}
	go func() {
		err := serve(ctx, append([]string{"--grpc", "127.0.0.1:0", "--http", "127.0.0.1:0", "--log-format", "json", "--partitions", "4"}, args...),
			stdio{in: strings.NewReader(""), out: io.Discard, err: stderrW}, open)
		stderrW.Close()
		s.done <- err
	}()
	addr := make(chan string, 1)
	s.read.Go(func() {
		sc := bufio.NewScanner(stderrR)
		for sc.Scan() {
			s.logs.Write(append(sc.Bytes(), '\n'))
			var rec map[string]any
			if json.Unmarshal(sc.Bytes(), &rec) == nil && rec["msg"] == "listening" {
				s.grpc, _ = rec["grpc_addr"].(string)
				addr <- rec["http_addr"].(string)
			}
		}
	})
	t.Cleanup(s.read.Wait)
	select {
	case a := <-addr:
		s.base = "http://" + a
	case err := <-s.done:
		t.Fatalf("serve returned before listening: %v\n%s", err, s.logs.String())
	case <-time.After(10 * time.Second):
		t.Fatalf("no listening log line:\n%s", s.logs.String())
	}
	return s
}

func (s *inProcessServe) get(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := http.Get(s.base + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// wait returns serve's error, failing the test if it takes over 10s.
func (s *inProcessServe) wait(t testing.TB) error {
	t.Helper()
	select {
	case err := <-s.done:
		s.read.Wait() // every line serve wrote is in s.logs
		return err
	case <-time.After(10 * time.Second):
		t.Fatalf("serve still running after 10s\n%s", s.logs.String())
		return nil
	}
}

// chanWatcher is a puller.Watcher whose streams return the change events
// sent on events, one per server batch, and block like an idle getMore in
// between. It records the options of each Watch.
type chanWatcher struct {
	events chan bson.Raw
	mu     sync.Mutex
	opens  []puller.WatchOptions
}

func (w *chanWatcher) Watch(_ context.Context, opts puller.WatchOptions) (puller.ChangeStream, error) {
	w.mu.Lock()
	w.opens = append(w.opens, opts)
	w.mu.Unlock()
	return &chanStream{events: w.events}, nil
}

func (w *chanWatcher) options() []puller.WatchOptions {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]puller.WatchOptions(nil), w.opens...)
}

type chanStream struct {
	events   <-chan bson.Raw
	cur, tok bson.Raw
	err      error
}

func (s *chanStream) TryNext(ctx context.Context) bool {
	if s.err != nil {
		return false
	}
	select {
	case ev := <-s.events:
		s.cur, s.tok = ev, ev.Lookup("_id").Document()
		return true
	case <-ctx.Done():
		s.err = ctx.Err()
		return false
	}
}

func (s *chanStream) Current() bson.Raw           { return s.cur }
func (s *chanStream) RemainingBatchLength() int   { return 0 }
func (s *chanStream) ResumeToken() bson.Raw       { return s.tok }
func (s *chanStream) Err() error                  { return s.err }
func (s *chanStream) Close(context.Context) error { return nil }

// changeEvent is a change event document shaped as MongoDB sends it.
func changeEvent(t testing.TB, token, op string, fields ...bson.E) bson.Raw {
	t.Helper()
	d := bson.D{
		{Key: "_id", Value: bson.D{{Key: "_data", Value: token}}},
		{Key: "operationType", Value: op},
		{Key: "clusterTime", Value: primitive.Timestamp{T: uint32(time.Now().Unix()), I: 1}},
	}
	raw, err := bson.Marshal(append(d, fields...))
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// fixedOpener returns w as the change-stream source, checking what serve
// asks for.
func fixedOpener(t *testing.T, w puller.Watcher, wantDB string, wantColls []string) mongoOpener {
	return func(_ context.Context, uri, db string, colls []string) (puller.Watcher, string, *mongo.Database, func(context.Context) error, error) {
		if db != wantDB || strings.Join(colls, ",") != strings.Join(wantColls, ",") || !strings.HasPrefix(uri, "mongodb://") {
			t.Errorf("opener got uri %q db %q collections %q, want db %q collections %q", uri, db, colls, wantDB, wantColls)
		}
		return w, db, nil, func(context.Context) error { return nil }, nil
	}
}

// TestServeEmbeddedPuller runs serve in-process with a fake change stream:
// the puller appends into the node's own log (the node consumes the event),
// its metrics are on the node's /metrics, and a fatal puller error (an
// invalidate) shuts the node down with the puller's message.
func TestServeEmbeddedPuller(t *testing.T) {
	w := &chanWatcher{events: make(chan bson.Raw)}
	s := startServeInProcess(t, context.Background(), fixedOpener(t, w, "app", []string{"orders", "items"}),
		"--mongo", "mongodb://mongo.invalid:27017/?replicaSet=rs0", "--mongo-db", "app", "--mongo-collections", "orders, items",
		"--tenant-field", "org", "--pre-images", "--node-id", "node-7", "--puller-name", "shop")

	w.events <- changeEvent(t, "82A1", "insert",
		bson.E{Key: "ns", Value: bson.D{{Key: "db", Value: "app"}, {Key: "coll", Value: "orders"}}},
		bson.E{Key: "documentKey", Value: bson.D{{Key: "_id", Value: "o1"}}},
		bson.E{Key: "fullDocument", Value: bson.D{{Key: "_id", Value: "o1"}, {Key: "org", Value: "acme"}, {Key: "total", Value: 12}}})
	testwait.ForState(t, "the puller's and the node's metrics", func() (bool, any) {
		code, metrics := s.get(t, "/metrics")
		for _, want := range []string{
			"streamer_puller_events_appended_total 1", `streamer_puller_events_read_total{operation="insert"} 1`,
			"streamer_puller_leader 1", "streamer_puller_checkpoints_total 1", "streamer_puller_append_seconds_count 1",
			"# HELP streamer_puller_lag_seconds", "# TYPE streamer_puller_append_seconds histogram",
			"streamer_events_processed_total 1", // the node consumed it from the same log
			"streamer_partitions_owned 4",
		} {
			if code != 200 || !strings.Contains(metrics, want) {
				return false, fmt.Sprintf("/metrics (%d) lacks %q:\n%s\nlogs:\n%s", code, want, metrics, s.logs.String())
			}
		}
		return true, nil
	})
	if opens := w.options(); len(opens) != 1 || !opens[0].PreImages || opens[0].ResumeAfter != nil {
		t.Errorf("Watch options = %+v, want one watch from now with pre-images", opens)
	}
	if logs := s.logs.String(); !strings.Contains(logs, `"msg":"embedded puller starting","puller":"shop","database":"app"`) ||
		!strings.Contains(logs, `"owner":"node-7"`) {
		t.Errorf("logs lack the puller start or its owner (the node id):\n%s", logs)
	}

	w.events <- changeEvent(t, "82A2", "invalidate")
	err := s.wait(t)
	if err == nil || !strings.Contains(err.Error(), `embedded puller "shop" stopped`) || !errors.Is(err, puller.ErrStreamEnded) {
		t.Fatalf("serve after an invalidate = %v, want the puller's EndError", err)
	}
	logs := s.logs.String()
	for _, want := range []string{`"level":"ERROR","msg":"EMBEDDED PULLER STOPPED`, "the change stream was invalidated",
		`"msg":"node shutting down"`, `"msg":"stopped"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %s:\n%s", want, logs)
		}
	}
}

// TestServeEmbeddedPullerPermanentError: a source error retrying cannot fix
// (here: not authorized) ends serve with it, through the real classifier.
func TestServeEmbeddedPullerPermanentError(t *testing.T) {
	open := func(context.Context, string, string, []string) (puller.Watcher, string, *mongo.Database, func(context.Context) error, error) {
		return failingWatcher{mongo.CommandError{Code: 13, Name: "Unauthorized", Message: "not authorized on app to execute command { aggregate: 1 }"}},
			"app", nil, func(context.Context) error { return nil }, nil
	}
	s := startServeInProcess(t, context.Background(), open, "--mongo", "mongodb://h/app")
	err := s.wait(t)
	if err == nil || !strings.Contains(err.Error(), "retrying cannot help") || !strings.Contains(err.Error(), "not authorized") {
		t.Fatalf("serve = %v, want the puller's permanent error", err)
	}
}

type failingWatcher struct{ err error }

func (w failingWatcher) Watch(context.Context, puller.WatchOptions) (puller.ChangeStream, error) {
	return nil, w.err
}

func TestGathererCollector(t *testing.T) {
	src := prometheus.NewRegistry()
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "x_total", Help: "x."}, []string{"k"})
	c.WithLabelValues("a").Add(2)
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "h_seconds", Help: "h.", Buckets: []float64{1, 2}})
	h.Observe(1.5)
	h.Observe(5)
	s := prometheus.NewSummary(prometheus.SummaryOpts{Name: "s", Help: "s.", Objectives: map[float64]float64{0.5: 0.05}})
	s.Observe(3)
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "g", Help: "g."})
	g.Set(7)
	u := prometheus.NewUntypedFunc(prometheus.UntypedOpts{Name: "u", Help: "u."}, func() float64 { return 9 })
	src.MustRegister(c, h, s, g, u)

	dst := prometheus.NewRegistry()
	dst.MustRegister(&gathererCollector{g: src})
	want, err := src.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got, err := dst.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("gathered %d families, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].String() != want[i].String() {
			t.Errorf("family %d:\n got %v\nwant %v", i, got[i], want[i])
		}
	}
	// Not plugged in yet: nothing, and no error.
	empty := prometheus.NewRegistry()
	empty.MustRegister(&gathererCollector{})
	if mfs, err := empty.Gather(); err != nil || len(mfs) != 0 {
		t.Errorf("unset collector gathered %v, %v", mfs, err)
	}
}

// fakeMongod is a MongoDB wire-protocol server that is enough for the driver
// to connect (it presents a standalone server) and answers every aggregate
// with the error a standalone mongod gives to $changeStream.
type fakeMongod struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
	wg    sync.WaitGroup
	aggs  int
}

func startFakeMongod(t *testing.T) *fakeMongod {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := &fakeMongod{ln: ln}
	m.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			m.mu.Lock()
			m.conns = append(m.conns, c)
			m.mu.Unlock()
			m.wg.Go(func() { m.serveConn(t, c) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		m.mu.Lock()
		for _, c := range m.conns {
			c.Close()
		}
		m.mu.Unlock()
		m.wg.Wait()
	})
	return m
}

func (m *fakeMongod) addr() string { return m.ln.Addr().String() }

func (m *fakeMongod) aggregates() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.aggs
}

const (
	opReply = 1
	opQuery = 2004
	opMsg   = 2013
)

func (m *fakeMongod) serveConn(t *testing.T, c net.Conn) {
	le := binary.LittleEndian
	for {
		var hdr [16]byte
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return
		}
		size, reqID, op := int(le.Uint32(hdr[0:])), le.Uint32(hdr[4:]), le.Uint32(hdr[12:])
		if size < 16 || size > 48<<20 {
			return
		}
		body := make([]byte, size-16)
		if _, err := io.ReadFull(c, body); err != nil {
			return
		}
		var cmd bson.Raw
		switch op {
		case opQuery: // flags, collection name, skip, limit, query
			rest := body[4:]
			i := strings.IndexByte(string(rest), 0)
			if i < 0 || len(rest) < i+9 {
				return
			}
			cmd = bson.Raw(rest[i+9:])
		case opMsg: // flags, then a kind-0 section holding the command
			if len(body) < 5 || body[4] != 0 {
				t.Errorf("fake mongod: unexpected OP_MSG layout")
				return
			}
			cmd = bson.Raw(body[5:])
		default:
			t.Errorf("fake mongod: unexpected opcode %d", op)
			return
		}
		doc, err := bson.Raw(cmd[:le.Uint32(cmd)]).Elements()
		if err != nil || len(doc) == 0 {
			t.Errorf("fake mongod: bad command document: %v", err)
			return
		}
		var reply bson.D
		switch name := doc[0].Key(); name {
		case "isMaster", "ismaster", "hello":
			reply = bson.D{
				{Key: "helloOk", Value: true}, {Key: "ismaster", Value: true}, {Key: "isWritablePrimary", Value: true},
				{Key: "maxBsonObjectSize", Value: int32(16 << 20)}, {Key: "maxMessageSizeBytes", Value: int32(48_000_000)},
				{Key: "maxWriteBatchSize", Value: int32(100_000)}, {Key: "localTime", Value: primitive.NewDateTimeFromTime(time.Now())},
				{Key: "minWireVersion", Value: int32(0)}, {Key: "maxWireVersion", Value: int32(17)}, {Key: "ok", Value: 1.0},
			}
		case "aggregate":
			m.mu.Lock()
			m.aggs++
			m.mu.Unlock()
			reply = bson.D{{Key: "ok", Value: 0.0}, {Key: "errmsg", Value: "The $changeStream stage is only supported on replica sets"},
				{Key: "code", Value: int32(40573)}, {Key: "codeName", Value: "Location40573"}}
		default:
			reply = bson.D{{Key: "ok", Value: 1.0}}
		}
		rdoc, err := bson.Marshal(reply)
		if err != nil {
			t.Error(err)
			return
		}
		var out []byte
		if op == opQuery {
			out = make([]byte, 36, 36+len(rdoc))
			le.PutUint32(out[12:], opReply)
			le.PutUint32(out[32:], 1) // numberReturned; flags, cursor id and startingFrom stay 0
		} else {
			out = make([]byte, 21, 21+len(rdoc))
			le.PutUint32(out[12:], opMsg) // flags 0, section kind 0
		}
		out = append(out, rdoc...)
		le.PutUint32(out[0:], uint32(len(out)))
		le.PutUint32(out[4:], reqID+1_000_000)
		le.PutUint32(out[8:], reqID)
		if _, err := c.Write(out); err != nil {
			return
		}
	}
}

// TestServeMongoSnapshot: with --mongo, a subscription's snapshot comes
// from the database (FerretDB here, a MongoDB wire server; without
// snapshot reads, which it lacks), mapped like the puller maps events (the
// tenant from --tenant-field), and the changes the puller appends follow.
func TestServeMongoSnapshot(t *testing.T) {
	uri := testbin.FerretDB(t)
	ctx := context.Background()
	mc, err := mongo.Connect(ctx, options.Client().ApplyURI(uri))
	if err != nil {
		t.Fatal(err)
	}
	defer mc.Disconnect(ctx)
	db := mc.Database("app")
	if _, err := db.Collection("orders").InsertMany(ctx, []any{
		bson.D{{Key: "_id", Value: "o1"}, {Key: "org", Value: "acme"}, {Key: "total", Value: 12}},
		bson.D{{Key: "_id", Value: "o2"}, {Key: "org", Value: "acme"}, {Key: "total", Value: 3}},
		bson.D{{Key: "_id", Value: "o3"}, {Key: "org", Value: "globex"}, {Key: "total", Value: 50}},
		bson.D{{Key: "_id", Value: "o4"}, {Key: "org", Value: "acme"}, {Key: "total", Value: 40}},
	}); err != nil {
		t.Fatal(err)
	}
	w := &chanWatcher{events: make(chan bson.Raw)}
	open := func(context.Context, string, string, []string) (puller.Watcher, string, *mongo.Database, func(context.Context) error, error) {
		return w, "app", db, func(context.Context) error { return nil }, nil
	}
	sctx, stop := context.WithCancel(ctx)
	s := startServeInProcess(t, sctx, open, "--mongo", uri+"app", "--tenant-field", "org", "--mongo-snapshot-reads=false")
	defer func() {
		stop()
		if err := s.wait(t); err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := client.Dial(dctx, s.grpc)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.Subscribe(dctx, client.Subscription{ID: "big", Tenant: "acme", Collection: "orders",
		Filters: []client.Filter{{Field: "total", Op: ">", Value: 10}}, Snapshot: &client.SnapshotRequest{}}); err != nil {
		t.Fatal(err)
	}
	var docs []string
	for end := false; !end; {
		select {
		case d := <-conn.Deliveries():
			if d.Snapshot == nil {
				t.Fatalf("before the snapshot's end: %+v", d)
			}
			for _, doc := range d.Snapshot.GetDocuments() {
				docs = append(docs, doc.GetDocumentId()+" "+string(doc.GetDocument()))
			}
			end = d.Snapshot.GetEnd() != nil
			if e := d.Snapshot.GetEnd().GetError(); e != nil {
				t.Fatalf("snapshot failed: %v", e)
			}
		case <-dctx.Done():
			t.Fatalf("no snapshot end; logs:\n%s", s.logs.String())
		}
	}
	if want := []string{`o1 {"_id":"o1","org":"acme","total":12}`, `o4 {"_id":"o4","org":"acme","total":40}`}; !slices.Equal(docs, want) {
		t.Fatalf("snapshot %v, want %v", docs, want)
	}
	w.events <- changeEvent(t, "82B1", "update",
		bson.E{Key: "ns", Value: bson.D{{Key: "db", Value: "app"}, {Key: "coll", Value: "orders"}}},
		bson.E{Key: "documentKey", Value: bson.D{{Key: "_id", Value: "o2"}}},
		bson.E{Key: "fullDocument", Value: bson.D{{Key: "_id", Value: "o2"}, {Key: "org", Value: "acme"}, {Key: "total", Value: 30}}})
	select {
	case d := <-conn.Deliveries():
		if len(d.Matches) != 1 || d.Matches[0].Event.GetDocumentId() != "o2" || d.Matches[0].Event.GetClusterTime() == 0 {
			t.Fatalf("change after the snapshot: %+v", d)
		}
	case <-dctx.Done():
		t.Fatal("no change after the snapshot")
	}
}
