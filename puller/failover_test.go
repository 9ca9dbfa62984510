package puller

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/mongo/integration/mtest"
	"google.golang.org/protobuf/proto"

	"github.com/streamerd/streamer/internal/clock"
	"github.com/streamerd/streamer/internal/redistest"
	"github.com/streamerd/streamer/internal/testproxy"
	"github.com/streamerd/streamer/internal/testwait"
	streamerv1 "github.com/streamerd/streamer/proto/streamer/v1"
	"github.com/streamerd/streamer/store"
	"github.com/streamerd/streamer/store/redis"
)

// partitionableLocks fails every call while cut is set, as a leader cut off
// from the store sees it.
type partitionableLocks struct {
	store.Locks
	cut atomic.Bool
}

var errCut = errors.New("injected: store unreachable")

func (l *partitionableLocks) Acquire(ctx context.Context, name, owner string, ttl time.Duration) (bool, error) {
	if l.cut.Load() {
		return false, errCut
	}
	return l.Locks.Acquire(ctx, name, owner, ttl)
}

func (l *partitionableLocks) Renew(ctx context.Context, name, owner string, ttl time.Duration) (bool, error) {
	if l.cut.Load() {
		return false, errCut
	}
	return l.Locks.Renew(ctx, name, owner, ttl)
}

func (l *partitionableLocks) Release(ctx context.Context, name, owner string) error {
	if l.cut.Load() {
		return errCut
	}
	return l.Locks.Release(ctx, name, owner)
}

func mustRaw(t testing.TB, d bson.D) bson.Raw {
	t.Helper()
	b, err := bson.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestLeaseLoss(t *testing.T) {
	t.Run("leader that cannot renew stops reading at once and the standby resumes from its token", func(t *testing.T) {
		// Both pullers and the backend's lease TTLs run on a fake clock: a
		// renewal or an acquisition attempt happens when the test steps it by
		// a third of the TTL, however slow the machine.
		const ttl = 30 * time.Second
		fc := clock.NewFake(time.Now())
		shared := newTestBackendOn(t, fc)

		streamA := &fakeStream{events: []bson.Raw{mustRaw(t, crud("f1", "insert", "acme", 1)), mustRaw(t, crud("f2", "insert", "acme", 2))}}
		watcherA := &fakeWatcher{open: func(n int, _ WatchOptions) (ChangeStream, error) {
			if n == 0 {
				return streamA, nil
			}
			return &fakeStream{}, nil // blocks until the term ends
		}}
		backendA := *shared.Backend
		locksA := &partitionableLocks{Locks: shared.Locks}
		backendA.Locks = locksA
		logsA := &syncBuffer{}
		cfgA := testConfig(watcherA, logsA)
		cfgA.Owner, cfgA.LeaseTTL, cfgA.Clock = "puller-a", ttl, fc
		a := start(t, cfgA, &backendA)
		waitFor(t, "A to lead and checkpoint f2", func() bool {
			role, _ := a.Status()
			return role == "leader" && shared.checkpoint(t, DefaultName) == "f2"
		})

		watcherB := &fakeWatcher{open: func(int, WatchOptions) (ChangeStream, error) {
			return &fakeStream{events: []bson.Raw{mustRaw(t, crud("f3", "insert", "acme", 3))}}, nil
		}}
		cfgB := testConfig(watcherB, &syncBuffer{})
		cfgB.Owner, cfgB.LeaseTTL, cfgB.Clock = "puller-b", ttl, fc
		b := start(t, cfgB, shared.Backend)
		waitFor(t, "B standing by", func() bool { role, _ := b.Status(); return role == "standby" })
		for range 9 { // three TTLs: renewals by A, acquisition attempts by B
			testwait.Step(t, fc, ttl/3)
		}
		if role, _ := b.Status(); role != "standby" || len(watcherB.options()) != 0 {
			t.Fatalf("B is %s and opened %d streams while A leads; want a standby that reads nothing", role, len(watcherB.options()))
		}

		locksA.cut.Store(true)
		testwait.Step(t, fc, ttl/3) // A's next renewal fails
		waitFor(t, "A to stop reading", func() bool {
			role, _ := a.Status()
			return streamA.isClosed() && role == "standby"
		})
		testwait.StepUntil(t, fc, "B to take over and checkpoint f3", ttl/3, func() (bool, any) { return shared.checkpoint(t, DefaultName) == "f3", nil })
		locksA.cut.Store(false)

		if err := a.stop(t); err != nil {
			t.Errorf("A: Run = %v", err)
		}
		if err := b.stop(t); err != nil {
			t.Errorf("B: Run = %v", err)
		}
		if streamA.afterClose != 0 {
			t.Errorf("A read %d times after closing its stream", streamA.afterClose)
		}
		if opens := watcherB.options(); len(opens) == 0 || !bytes.Equal(opens[0].ResumeAfter, tokenBytes(t, "f2")) {
			t.Errorf("B opened %+v, want resumeAfter A's last token f2", opens)
		}
		if got := shared.rec.eventIDs(); !slices.Equal(got, []string{"f1", "f2", "f3"}) {
			t.Errorf("appended %v, want f1 f2 f3 once each", got)
		}
		if !strings.Contains(logsA.String(), "stopping reading at once") {
			t.Errorf("A did not log the lost lease:\n%s", logsA)
		}
	})
}

// TestLeaderFailoverRedis runs two pullers, each with its own client, against
// a real redis-server. The leader's connections go through a TCP proxy that
// the test pauses (a network partition): the leader must stop reading, the
// standby must take over from the leader's checkpoint, and Redis must hold
// every event once.
//
// The pullers run on a fake clock: A renews and B tries to acquire when the
// test steps it. The lease itself expires on Redis's clock, after ttl of real
// time, which a stepped A renews long before, however slow the machine.
func TestLeaderFailoverRedis(t *testing.T) {
	const ttl = 5 * time.Second
	fc := clock.NewFake(time.Now())
	srv := redistest.Start(t)
	proxy, err := testproxy.New(srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proxy.Close() })
	ctx := t.Context()
	redisA, err := redis.New(ctx, redis.Config{URL: "redis://" + proxy.Addr() + "?max_retries=-1&dial_timeout=100ms", Partitions: 16})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { redisA.Close() })
	redisB, err := redis.New(ctx, redis.Config{URL: srv.URL(), Partitions: 16})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { redisB.Close() })

	mt := mockT(t)
	mt.Run("leader partitioned from redis", func(mtA *mtest.T) {
		mtA.Run("standby takes over", func(mtB *mtest.T) {
			t := mtB.T
			mtA.AddMockResponses(cursorReply(mtest.FirstBatch, 1, nil, crud("x1", "insert", "acme", 1), crud("x2", "update", "globex", 2)))
			mtB.AddMockResponses(cursorReply(mtest.FirstBatch, 2, nil, crud("x3", "delete", "acme", 1)))

			logsA := &syncBuffer{}
			cfgA := testConfig(NewMongoWatcher(mtA.Client, testDB, nil), logsA)
			cfgA.Owner, cfgA.LeaseTTL, cfgA.Clock = "puller-a", ttl, fc
			a := start(t, cfgA, redisA)
			checkpoint := func() string {
				v, _, err := redisB.Checkpoints.Load(ctx, CheckpointName(DefaultName))
				if err != nil {
					t.Fatal(err)
				}
				return tokenID(v)
			}
			waitFor(t, "A to checkpoint x2", func() bool { return checkpoint() == "x2" })

			cfgB := testConfig(NewMongoWatcher(mtB.Client, testDB, nil), &syncBuffer{})
			cfgB.Owner, cfgB.LeaseTTL, cfgB.Clock = "puller-b", ttl, fc
			b := start(t, cfgB, redisB)
			waitFor(t, "B standing by", func() bool { role, _ := b.Status(); return role == "standby" })
			for range 6 { // two TTLs: renewals by A, acquisition attempts by B
				testwait.Step(t, fc, ttl/3)
			}
			if role, _ := b.Status(); role != "standby" {
				t.Fatalf("B is %s while A leads", role)
			}

			proxy.Pause()
			testwait.StepUntil(t, fc, "B to take over and checkpoint x3", ttl/3, func() (bool, any) { return checkpoint() == "x3", nil })
			if role, _ := a.Status(); role == "leader" {
				t.Error("A still leads after B took over")
			}
			proxy.Resume()
			if err := a.stop(t); err != nil {
				t.Errorf("A: Run = %v", err)
			}
			if err := b.stop(t); err != nil {
				t.Errorf("B: Run = %v", err)
			}

			stagesB := changeStreamStages(t, mtB)
			if len(stagesB) == 0 || !bytes.Equal(resumeAfter(stagesB[0]), tokenBytes(t, "x2")) {
				t.Errorf("B's first $changeStream %v, want resumeAfter A's last token x2", stagesB)
			}
			if !strings.Contains(logsA.String(), "stopping reading at once") {
				t.Errorf("A did not log the lost lease:\n%s", logsA)
			}
			var got []string
			for p := range 16 {
				entries, err := redisB.Log.Read(ctx, p, "checker", 0, 0)
				if err != nil {
					t.Fatal(err)
				}
				for _, e := range entries {
					var le streamerv1.LogEntry
					if err := proto.Unmarshal(e.Payload, &le); err != nil {
						t.Fatal(err)
					}
					got = append(got, le.GetEvent().GetEventId())
				}
			}
			slices.Sort(got)
			if !slices.Equal(got, []string{"x1", "x2", "x3"}) {
				t.Errorf("Redis holds %v, want x1 x2 x3 once each", got)
			}
		})
	})
}
