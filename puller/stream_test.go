package puller

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/mongo/integration/mtest"

	streamerv1 "github.com/streamerd/streamer/proto/streamer/v1"
	"github.com/streamerd/streamer/store"
)

func TestWatchEndToEnd(t *testing.T) {
	mt := mockT(t)
	mt.Run("database watch with collections and pre-images", func(mt *mtest.T) {
		t := mt.T
		mt.AddMockResponses(
			cursorReply(mtest.FirstBatch, 77, nil,
				crud("t1", "insert", "acme", 1),
				crud("t2", "update", "globex", 2)),
			cursorReply(mtest.NextBatch, 77, token("t4+"),
				crud("t3", "delete", "acme", 1),
				crud("t4", "replace", "globex", 2)),
			cursorReply(mtest.NextBatch, 77, token("t5-idle")),
		)
		b := newTestBackend(t)
		logs := &syncBuffer{}
		cfg := testConfig(NewMongoWatcher(mt.Client, testDB, []string{"orders", "items"}), logs)
		cfg.PreImages = true
		p := start(t, cfg, b.Backend)
		waitFor(t, "the idle postBatchResumeToken to be saved", func() bool { return b.checkpoint(t, DefaultName) == "t5-idle" })
		if err := p.stop(t); err != nil {
			t.Fatalf("Run = %v, want nil after cancel", err)
		}

		ops, events := b.rec.snapshot()
		if got := b.rec.eventIDs(); !slices.Equal(got, []string{"t1", "t2", "t3", "t4"}) {
			t.Fatalf("appended %v, want t1..t4 once each, in order; ops %v", got, ops)
		}
		wantOps := []streamerv1.Operation{streamerv1.Operation_OPERATION_CREATE, streamerv1.Operation_OPERATION_UPDATE,
			streamerv1.Operation_OPERATION_DELETE, streamerv1.Operation_OPERATION_UPDATE}
		for i, ev := range events {
			if ev.GetOperation() != wantOps[i] || ev.GetCollection() != "orders" || ev.GetTimestampMs() == 0 {
				t.Errorf("event %d = %v", i, ev)
			}
		}
		if got := events[1].GetChangedFields(); !slices.Equal(got, []string{"n"}) {
			t.Errorf("update changed fields = %v", got)
		}
		if got := string(events[2].GetBefore()); got != `{"_id":1,"tenant":"acme","n":1}` || len(events[2].GetDocument()) != 0 {
			t.Errorf("delete: document %q, before %q", events[2].GetDocument(), got)
		}
		// Each event went to its tenant's collection's partition.
		for _, op := range ops {
			var part int
			var ids string
			if _, err := fmt.Sscanf(op, "append %d %s", &part, &ids); err != nil {
				continue
			}
			for _, id := range strings.Split(ids, ",") {
				tenant := map[string]string{"t1": "acme", "t2": "globex", "t3": "acme", "t4": "globex"}[id]
				if want := store.PartitionOf(tenant, "orders", 16); part != want {
					t.Errorf("event %s in partition %d, want %d", id, part, want)
				}
			}
		}
		// Checkpoints: after each server batch (t2, then the batch's
		// postBatchResumeToken), then the idle one.
		if saves := filterOps(ops, "save "); !slices.Equal(saves, []string{"save t2", "save t4+", "save t5-idle"}) {
			t.Errorf("saves = %v", saves)
		}

		stages := changeStreamStages(t, mt)
		if len(stages) == 0 {
			t.Fatal("no aggregate sent")
		}
		first := stages[0]
		if got := first.Lookup("fullDocument").StringValue(); got != "updateLookup" {
			t.Errorf("fullDocument = %q, want updateLookup", got)
		}
		if got := first.Lookup("fullDocumentBeforeChange").StringValue(); got != "whenAvailable" {
			t.Errorf("fullDocumentBeforeChange = %q, want whenAvailable", got)
		}
		if tok := resumeAfter(first); tok != nil {
			t.Errorf("first start resumed after %v, want the current time", tok)
		}
		agg := mt.GetStartedEvent()
		if agg == nil || agg.CommandName != "aggregate" || agg.DatabaseName != testDB {
			t.Fatalf("first command = %v", agg)
		}
		match := agg.Command.Lookup("pipeline").Array().Index(1).Value().Document().Lookup("$match").String()
		for _, want := range []string{`"ns.coll"`, `"orders"`, `"items"`, `"to.coll"`, `"invalidate"`, `"dropDatabase"`} {
			if !strings.Contains(match, want) {
				t.Errorf("$match %s lacks %s", match, want)
			}
		}
		if got := value(p.metrics.appended); got != 4 {
			t.Errorf("events appended metric = %v", got)
		}
		if got := value(p.metrics.read.WithLabelValues("insert")); got != 1 {
			t.Errorf("insert events read metric = %v", got)
		}
	})
	mt.Run("whole database without pre-images", func(mt *mtest.T) {
		t := mt.T
		mt.AddMockResponses(cursorReply(mtest.FirstBatch, 1, token("p1"), crud("i1", "insert", "acme", 1)))
		b := newTestBackend(t)
		p := start(t, testConfig(NewMongoWatcher(mt.Client, testDB, nil), &syncBuffer{}), b.Backend)
		waitFor(t, "the checkpoint", func() bool { return b.checkpoint(t, DefaultName) == "p1" })
		p.stop(t)
		agg := mt.GetStartedEvent()
		if vals, _ := agg.Command.Lookup("pipeline").Array().Values(); len(vals) != 1 {
			t.Errorf("pipeline has %d stages, want only $changeStream", len(vals))
		}
		stage := changeStreamStage(t, agg)
		if _, err := stage.LookupErr("fullDocumentBeforeChange"); err == nil {
			t.Error("fullDocumentBeforeChange sent without pre-images enabled")
		}
	})
}

func filterOps(ops []string, prefix string) []string {
	var out []string
	for _, op := range ops {
		if strings.HasPrefix(op, prefix) {
			out = append(out, op)
		}
	}
	return out
}

func TestResumeAfterRestart(t *testing.T) {
	mt := mockT(t)
	mt.Run("restart resumes after the saved token", func(mt *mtest.T) {
		t := mt.T
		b := newTestBackend(t)
		w := NewMongoWatcher(mt.Client, testDB, nil)

		mt.AddMockResponses(cursorReply(mtest.FirstBatch, 5, nil, crud("r1", "insert", "acme", 1), crud("r2", "insert", "acme", 2)))
		first := start(t, testConfig(w, &syncBuffer{}), b.Backend)
		waitFor(t, "the first run's checkpoint", func() bool { return b.checkpoint(t, DefaultName) == "r2" })
		if err := first.stop(t); err != nil {
			t.Fatal(err)
		}
		if stages := changeStreamStages(t, mt); len(stages) == 0 || resumeAfter(stages[0]) != nil {
			t.Fatalf("the first run must start from the current time; stages %v", stages)
		}
		saved, _, _ := b.Checkpoints.Load(t.Context(), CheckpointName(DefaultName))

		mt.ClearEvents()
		mt.AddMockResponses(cursorReply(mtest.FirstBatch, 6, nil, crud("r3", "insert", "acme", 3)))
		second := start(t, testConfig(w, &syncBuffer{}), b.Backend)
		waitFor(t, "the second run's checkpoint", func() bool { return b.checkpoint(t, DefaultName) == "r3" })
		if err := second.stop(t); err != nil {
			t.Fatal(err)
		}
		stages := changeStreamStages(t, mt)
		if len(stages) == 0 {
			t.Fatal("the second run sent no aggregate")
		}
		if got := resumeAfter(stages[0]); !bytes.Equal(got, saved) || !bytes.Equal(got, tokenBytes(t, "r2")) {
			t.Errorf("the second run resumed after %v, want the saved token %v", got, bson.Raw(saved))
		}
		if _, err := stages[0].LookupErr("resumeAfter"); err != nil {
			t.Errorf("the token must be sent as resumeAfter: %v", stages[0])
		}
		if got := b.rec.eventIDs(); !slices.Equal(got, []string{"r1", "r2", "r3"}) {
			t.Errorf("appended %v, want r1 r2 r3 once each", got)
		}
	})
}

func TestCheckpointAfterAppend(t *testing.T) {
	mt := mockT(t)
	mt.Run("batches of two", func(mt *mtest.T) {
		t := mt.T
		tenants := []string{"acme", "globex", "initech", "umbrella", "hooli"}
		var batch []bson.D
		for i, tenant := range tenants {
			batch = append(batch, crud(fmt.Sprintf("c%d", i+1), "insert", tenant, int32(i+1)))
		}
		mt.AddMockResponses(cursorReply(mtest.FirstBatch, 9, token("c5+"), batch...))
		b := newTestBackend(t)
		cfg := testConfig(NewMongoWatcher(mt.Client, testDB, nil), &syncBuffer{})
		cfg.Batch = 2
		p := start(t, cfg, b.Backend)
		waitFor(t, "the final checkpoint", func() bool { return b.checkpoint(t, DefaultName) == "c5+" })
		p.stop(t)

		ops, _ := b.rec.snapshot()
		// Position of each token in the stream: c1..c5, then the batch's
		// postBatchResumeToken, which covers all five.
		covers := map[string]int{"c1": 1, "c2": 2, "c3": 3, "c4": 4, "c5": 5, "c5+": 5}
		appended := 0
		var saves []string
		for _, op := range ops {
			switch {
			case strings.HasPrefix(op, "append "):
				appended += len(strings.Split(strings.Fields(op)[2], ","))
			case strings.HasPrefix(op, "save "):
				tok := strings.TrimPrefix(op, "save ")
				saves = append(saves, tok)
				if appended < covers[tok] {
					t.Errorf("checkpoint %s saved after only %d appended events; ops %v", tok, appended, ops)
				}
			}
		}
		if !slices.Equal(saves, []string{"c2", "c4", "c5+"}) {
			t.Errorf("saves %v, want one per batch of two and one at the end of the server batch: c2 c4 c5+", saves)
		}
	})
}

func TestAppendFailureKeepsCheckpoint(t *testing.T) {
	mt := mockT(t)
	mt.Run("failing partition is retried alone", func(mt *mtest.T) {
		t := mt.T
		good, bad := "acme", "globex"
		pGood, pBad := store.PartitionOf(good, "orders", 16), store.PartitionOf(bad, "orders", 16)
		if pGood == pBad {
			t.Fatalf("test tenants share partition %d; pick others", pGood)
		}
		mt.AddMockResponses(cursorReply(mtest.FirstBatch, 3, nil,
			crud("a1", "insert", good, 1), crud("a2", "insert", bad, 2), crud("a3", "insert", good, 3)))
		b := newTestBackend(t)
		failures := 0
		var checkpointsWhileFailing []string
		b.log.fail = func(p int) error {
			if p != pBad || failures == 3 {
				return nil
			}
			failures++
			checkpointsWhileFailing = append(checkpointsWhileFailing, b.checkpoint(t, DefaultName))
			return errors.New("injected append failure")
		}
		logs := &syncBuffer{}
		p := start(t, testConfig(NewMongoWatcher(mt.Client, testDB, nil), logs), b.Backend)
		waitFor(t, "the checkpoint after the retries", func() bool { return b.checkpoint(t, DefaultName) == "a3" })
		p.stop(t)

		if !slices.Equal(checkpointsWhileFailing, []string{"", "", ""}) {
			t.Errorf("checkpoint while appends failed = %q, want none saved", checkpointsWhileFailing)
		}
		ops, _ := b.rec.snapshot()
		want := []string{
			fmt.Sprintf("append %d a1,a3", pGood),
			fmt.Sprintf("append-failed %d", pBad), fmt.Sprintf("append-failed %d", pBad), fmt.Sprintf("append-failed %d", pBad),
			fmt.Sprintf("append %d a2", pBad),
			"save a3",
		}
		if pBad < pGood || ops[0] != want[0] { // partitions are appended in order of first appearance: a1's first
			t.Logf("ops %v", ops)
		}
		if !slices.Equal(ops, want) {
			t.Errorf("ops = %v\nwant %v", ops, want)
		}
		if got := value(p.metrics.errors.WithLabelValues("append")); got != 3 {
			t.Errorf("append errors metric = %v, want 3", got)
		}
		if !strings.Contains(logs.String(), "the checkpoint does not move") {
			t.Errorf("append failures not logged:\n%s", logs)
		}
	})
}

func TestHistoryLost(t *testing.T) {
	historyLost := mtest.CreateCommandErrorResponse(mtest.CommandError{
		Code:    286,
		Name:    "ChangeStreamHistoryLost",
		Message: "Resume of change stream was not possible, as the resume point may no longer be in the oplog.",
	})
	mt := mockT(t)
	mt.Run("stops with a clear error", func(mt *mtest.T) {
		t := mt.T
		b := newTestBackend(t)
		saved := tokenBytes(t, "old")
		if err := b.Checkpoints.Save(t.Context(), CheckpointName(DefaultName), saved); err != nil {
			t.Fatal(err)
		}
		mt.AddMockResponses(historyLost)
		logs := &syncBuffer{}
		p := start(t, testConfig(NewMongoWatcher(mt.Client, testDB, nil), logs), b.Backend)
		err := p.wait(t)
		var hl *HistoryLostError
		if !errors.As(err, &hl) || !errors.Is(err, ErrHistoryLost) || hl.EventID != "old" {
			t.Fatalf("Run = %v, want a *HistoryLostError for token old", err)
		}
		if msg := err.Error(); !strings.Contains(msg, "--start-from-now") || !strings.Contains(msg, "ChangeStreamHistoryLost") {
			t.Errorf("message %q does not say what happened and what to do", msg)
		}
		if stages := changeStreamStages(t, mt); len(stages) != 1 || !bytes.Equal(resumeAfter(stages[0]), saved) {
			t.Errorf("aggregates %v, want one resuming after the saved token", stages)
		}
		if b.checkpoint(t, DefaultName) != "old" {
			t.Error("the checkpoint changed")
		}
		if !strings.Contains(logs.String(), "level=ERROR") {
			t.Errorf("not logged at error level:\n%s", logs)
		}
		if role, _ := p.Status(); role != "stopped" {
			t.Errorf("role after Run = %q", role)
		}
	})
	mt.Run("StartFromNow starts without a token", func(mt *mtest.T) {
		t := mt.T
		b := newTestBackend(t)
		if err := b.Checkpoints.Save(t.Context(), CheckpointName(DefaultName), tokenBytes(t, "old")); err != nil {
			t.Fatal(err)
		}
		mt.AddMockResponses(historyLost, cursorReply(mtest.FirstBatch, 4, nil, crud("n1", "insert", "acme", 1)))
		logs := &syncBuffer{}
		cfg := testConfig(NewMongoWatcher(mt.Client, testDB, nil), logs)
		cfg.StartFromNow = true
		p := start(t, cfg, b.Backend)
		waitFor(t, "the new checkpoint", func() bool { return b.checkpoint(t, DefaultName) == "n1" })
		if err := p.stop(t); err != nil {
			t.Fatal(err)
		}
		stages := changeStreamStages(t, mt)
		if len(stages) < 2 || resumeAfter(stages[0]) == nil || resumeAfter(stages[1]) != nil {
			t.Fatalf("aggregates %v: want one resuming after the old token, then one from the current time", stages)
		}
		if !strings.Contains(logs.String(), "NOT published") {
			t.Errorf("the gap is not logged:\n%s", logs)
		}
	})
	mt.Run("history lost in a getMore", func(mt *mtest.T) {
		t := mt.T
		b := newTestBackend(t)
		mt.AddMockResponses(cursorReply(mtest.FirstBatch, 4, nil, crud("g1", "insert", "acme", 1)), historyLost)
		p := start(t, testConfig(NewMongoWatcher(mt.Client, testDB, nil), &syncBuffer{}), b.Backend)
		if err := p.wait(t); !errors.Is(err, ErrHistoryLost) {
			t.Fatalf("Run = %v, want ErrHistoryLost", err)
		}
		if got := b.rec.eventIDs(); !slices.Equal(got, []string{"g1"}) || b.checkpoint(t, DefaultName) != "g1" {
			t.Errorf("appended %v, checkpoint %q; want g1 kept", got, b.checkpoint(t, DefaultName))
		}
	})
}

func TestStreamEndingEvents(t *testing.T) {
	mt := mockT(t)
	for _, op := range []string{"invalidate", "drop", "dropDatabase", "rename"} {
		mt.Run(op, func(mt *mtest.T) {
			t := mt.T
			ending := cannedD(t, op)
			endID := ending[0].Value.(bson.D)[0].Value.(string)
			mt.AddMockResponses(cursorReply(mtest.FirstBatch, 8, nil, crud("e1", "insert", "acme", 1), ending, crud("e3", "insert", "acme", 3)))
			b := newTestBackend(t)
			logs := &syncBuffer{}
			p := start(t, testConfig(NewMongoWatcher(mt.Client, testDB, nil), logs), b.Backend)
			err := p.wait(t)
			var end *EndError
			if !errors.As(err, &end) || !errors.Is(err, ErrStreamEnded) || end.Operation != op {
				t.Fatalf("Run = %v, want an *EndError for %s", err, op)
			}
			if got := b.rec.eventIDs(); !slices.Equal(got, []string{"e1"}) {
				t.Errorf("appended %v, want only the event before the %s", got, op)
			}
			if got := b.checkpoint(t, DefaultName); got != endID {
				t.Errorf("checkpoint = %q, want the %s event's token %q", got, op, endID)
			}
			if l := logs.String(); !strings.Contains(l, "level=ERROR") || !strings.Contains(l, "operation="+op) {
				t.Errorf("not logged loudly:\n%s", l)
			}
		})
	}
}

func TestSkipsEventsThatChangeNoDocument(t *testing.T) {
	mt := mockT(t)
	mt.Run("createIndexes", func(mt *mtest.T) {
		t := mt.T
		mt.AddMockResponses(cursorReply(mtest.FirstBatch, 8, nil, cannedD(t, "createIndexes"), crud("s2", "insert", "acme", 2)))
		b := newTestBackend(t)
		logs := &syncBuffer{}
		p := start(t, testConfig(NewMongoWatcher(mt.Client, testDB, nil), logs), b.Backend)
		waitFor(t, "the checkpoint", func() bool { return b.checkpoint(t, DefaultName) == "s2" })
		p.stop(t)
		if got := b.rec.eventIDs(); !slices.Equal(got, []string{"s2"}) {
			t.Errorf("appended %v", got)
		}
		if got := value(p.metrics.skipped.WithLabelValues("not_a_document_change")); got != 1 {
			t.Errorf("skipped metric = %v", got)
		}
		if l := logs.String(); !strings.Contains(l, "level=WARN") || !strings.Contains(l, "createIndexes") {
			t.Errorf("skip not logged:\n%s", l)
		}
	})
}

// value reads a counter or gauge.
func value(m prometheus.Metric) float64 {
	var out dto.Metric
	if err := m.Write(&out); err != nil {
		panic(err)
	}
	if c := out.GetCounter(); c != nil {
		return c.GetValue()
	}
	return out.GetGauge().GetValue()
}
