package puller

import (
	"context"
	"errors"
	"sync"

	"go.mongodb.org/mongo-driver/bson"
)

// fakeWatcher hands out the streams of open, in order, and records the
// options of every Watch.
type fakeWatcher struct {
	mu    sync.Mutex
	opens []WatchOptions
	open  func(n int, opts WatchOptions) (ChangeStream, error) // n counts Watch calls from 0
}

func (w *fakeWatcher) Watch(_ context.Context, opts WatchOptions) (ChangeStream, error) {
	w.mu.Lock()
	n := len(w.opens)
	w.opens = append(w.opens, opts)
	w.mu.Unlock()
	return w.open(n, opts)
}

func (w *fakeWatcher) options() []WatchOptions {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]WatchOptions(nil), w.opens...)
}

// fakeStream returns events in server batches of batch events (all of them
// in one batch when batch is 0). When they run out it blocks like an idle
// getMore until ctx is done, or, with end set, fails with end.
type fakeStream struct {
	events []bson.Raw
	batch  int
	end    error

	i, inBatch int
	cur        bson.Raw
	token      bson.Raw
	err        error

	mu         sync.Mutex
	closed     bool
	afterClose int // TryNext calls after Close (must stay 0)
}

func (s *fakeStream) TryNext(ctx context.Context) bool {
	s.mu.Lock()
	if s.closed {
		s.afterClose++
	}
	s.mu.Unlock()
	if s.err != nil {
		return false
	}
	if s.i == len(s.events) {
		if s.end != nil {
			s.err = s.end
			return false
		}
		<-ctx.Done()
		s.err = ctx.Err()
		return false
	}
	if s.inBatch == 0 {
		s.inBatch = len(s.events) - s.i
		if s.batch > 0 {
			s.inBatch = min(s.batch, s.inBatch)
		}
	}
	s.cur = s.events[s.i]
	s.i++
	s.inBatch--
	s.token = s.cur.Lookup("_id").Document()
	return true
}

func (s *fakeStream) Current() bson.Raw         { return s.cur }
func (s *fakeStream) RemainingBatchLength() int { return s.inBatch }
func (s *fakeStream) ResumeToken() bson.Raw     { return s.token }
func (s *fakeStream) Err() error                { return s.err }

func (s *fakeStream) Close(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}

func (s *fakeStream) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// errEndOfEvents ends a fakeStream that should not block.
var errEndOfEvents = errors.New("fake stream: no more events")
