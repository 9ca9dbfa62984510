package service

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/streamerd/streamer/store"
)

// Outbox multiplexer tuning.
const (
	// pumpSlice is the longest one multiplexed outbox read waits in the
	// backend: a session that starts while a read is blocked waits at most
	// that long for its first entries.
	pumpSlice = 20 * time.Millisecond
	// pumpBarrier is how long the next blocking read waits for the sessions
	// that took entries from the last one to come back. A session whose
	// gateway is slow (its send buffer full) is left out until it is back,
	// rather than holding up the others.
	pumpBarrier = time.Millisecond
	// pumpRoundEntries bounds the entries of one multiplexed read (at least
	// one per waiting session).
	pumpRoundEntries = 256
)

// pumpMux reads the outboxes of every gateway session on this node with one
// backend call (store.MultiFetcher: one XREAD over all of them). Without it
// each session's pump blocks in its own read, so every round of the
// consumers that appends to G outboxes costs G round trips and wake-ups,
// and a node holds a blocked Redis connection per session.
//
// The multiplexer works in rounds, like readMux: a round's read includes
// every session waiting in fetch; the sessions whose outboxes had entries
// take them away, and the next blocking round waits for them to come back
// (up to pumpBarrier), so that their next entries are not read behind a
// blocked read that does not include them. The goroutine runs while
// sessions wait and exits when none do; the node stops the multiplexer
// (stop) once its sessions are closed, which cancels a read in progress and
// waits for the goroutine.
type pumpMux struct {
	multi  store.MultiFetcher
	single store.Outboxes // for a round refused as a whole (a bad cursor)
	count  int

	ctx    context.Context // every round's read; cancelled by stop
	cancel context.CancelFunc
	wg     sync.WaitGroup // the run goroutine

	mu      sync.Mutex
	running bool
	stopped bool
	pending []*pumpReq // handed in since the last round
	wake    chan struct{}
}

// errPumpStopped answers a fetch after the node stopped its multiplexer.
var errPumpStopped = errors.New("service: outbox multiplexer stopped (node shutting down)")

// pumpReq is one session's wait in fetch.
type pumpReq struct {
	ctx     context.Context
	gateway string
	after   string
	reply   chan pumpReply
}

type pumpReply struct {
	entries []store.Entry
	lost    bool
	err     error
}

func newPumpMux(multi store.MultiFetcher, single store.Outboxes, count int) *pumpMux {
	ctx, cancel := context.WithCancel(context.Background())
	return &pumpMux{multi: multi, single: single, count: count, ctx: ctx, cancel: cancel, wake: make(chan struct{}, 1)}
}

// stop cancels the read in progress, refuses later fetches and waits for
// the run goroutine to exit.
func (m *pumpMux) stop() {
	m.mu.Lock()
	m.stopped = true
	m.mu.Unlock()
	m.cancel()
	m.wg.Wait()
}

// fetch is Outboxes.Fetch of gateway after cursor through the multiplexer:
// it waits until the outbox has entries after it (or lost ones), or ctx is
// done. req is the session's request, reused.
func (m *pumpMux) fetch(ctx context.Context, req *pumpReq, gateway, after string) ([]store.Entry, bool, error) {
	req.ctx, req.gateway, req.after = ctx, gateway, after
	m.mu.Lock()
	if m.stopped {
		m.mu.Unlock()
		return nil, false, errPumpStopped
	}
	m.pending = append(m.pending, req)
	if !m.running {
		m.running = true
		m.wg.Go(m.run)
	}
	m.mu.Unlock()
	select {
	case m.wake <- struct{}{}:
	default:
	}
	select {
	case r := <-req.reply:
		return r.entries, r.lost, r.err
	case <-ctx.Done():
		// The multiplexer answers the request anyway (reply is buffered),
		// and drops it at its next round: the session is gone.
		return nil, false, ctx.Err()
	}
}

// run serves rounds until no session waits.
func (m *pumpMux) run() {
	st := &pumpState{out: map[*pumpReq]bool{}, names: map[string]bool{}}
	for {
		m.mu.Lock()
		incoming := m.pending
		m.pending = nil
		if len(incoming) == 0 && len(st.waiting) == 0 && len(st.later) == 0 {
			m.running = false
			m.mu.Unlock()
			return
		}
		m.mu.Unlock()

		st.gather(incoming)
		if len(st.waiting) == 0 {
			if len(st.later) == 0 {
				m.waitWake(pumpSlice)
			}
			continue
		}
		// The requests in out belong to their sessions until handed in
		// again: only their identity is used here.
		if len(st.out) > 0 {
			if wait := pumpBarrier - time.Since(st.roundEnd); wait > 0 {
				m.waitWake(wait)
				continue
			}
			clear(st.out) // the rest are slow: they join a later round
		}
		m.round(st)
	}
}

// pumpState is what run keeps from round to round.
type pumpState struct {
	waiting  []*pumpReq          // in the next round
	later    []*pumpReq          // a second request of a gateway already waiting
	out      map[*pumpReq]bool   // took entries in the last round, not back yet (keys only)
	roundEnd time.Time           // when the last round's read returned
	fetches  []store.OutboxFetch // the round's, reused
	names    map[string]bool     // gateways waiting, while gathering
}

// gather makes the next round's list: the sessions back from the last
// round, new ones, and second requests of a gateway (a superseded session
// and its successor on this node) once the first is answered. Requests
// whose session ended are answered with its error.
func (st *pumpState) gather(incoming []*pumpReq) {
	clear(st.names)
	keep := st.waiting[:0]
	for _, req := range st.waiting {
		if req.ctx.Err() != nil {
			req.reply <- pumpReply{err: req.ctx.Err()}
			continue
		}
		keep = append(keep, req)
		st.names[req.gateway] = true
	}
	st.waiting = keep
	pend := st.later
	st.later = nil
	for _, req := range pend {
		st.add(req)
	}
	for _, req := range incoming {
		st.add(req)
	}
}

// add puts req in the next round, or after it when its gateway already
// waits.
func (st *pumpState) add(req *pumpReq) {
	delete(st.out, req)
	if req.ctx.Err() != nil {
		req.reply <- pumpReply{err: req.ctx.Err()}
		return
	}
	if st.names[req.gateway] {
		st.later = append(st.later, req)
		return
	}
	st.names[req.gateway] = true
	st.waiting = append(st.waiting, req)
}

// keepOnly makes keep, the unanswered requests in order (a prefix of
// waiting's backing array), the waiting list.
func (st *pumpState) keepOnly(keep []*pumpReq) {
	clear(st.waiting[len(keep):])
	st.waiting = keep
}

// round reads every waiting session's outbox with one call and answers the
// sessions whose outboxes had entries (or an error).
func (m *pumpMux) round(st *pumpState) {
	st.fetches = st.fetches[:0]
	for _, req := range st.waiting {
		st.fetches = append(st.fetches, store.OutboxFetch{Gateway: req.gateway, After: req.after})
	}
	// Up to m.count entries per outbox, and about pumpRoundEntries in
	// all: outbox entries are merged batches of up to maxBatchBytes, and
	// one reply holds every session's.
	count := min(m.count, max(1, pumpRoundEntries/len(st.waiting)))
	err := m.multi.FetchMany(m.ctx, st.fetches, count, pumpSlice)
	st.roundEnd = time.Now()
	if errors.Is(err, store.ErrInvalid) || errors.Is(err, store.ErrBadID) {
		m.roundOneByOne(st) // one request is bad: only its session must see the error
		return
	}
	if err != nil {
		for _, req := range st.waiting {
			req.reply <- pumpReply{err: err}
		}
		st.waiting = st.waiting[:0]
		return
	}
	keep := st.waiting[:0]
	for i, req := range st.waiting {
		f := &st.fetches[i]
		if len(f.Entries) == 0 {
			keep = append(keep, req)
			continue
		}
		st.out[req] = true
		req.reply <- pumpReply{entries: f.Entries, lost: f.Lost}
	}
	st.keepOnly(keep)
}

// roundOneByOne reads each waiting session's outbox on its own, after a
// round that one bad request made fail as a whole.
func (m *pumpMux) roundOneByOne(st *pumpState) {
	keep := st.waiting[:0]
	for _, req := range st.waiting {
		entries, lost, err := m.single.Fetch(req.ctx, req.gateway, req.after, m.count, 0)
		switch {
		case err != nil:
			req.reply <- pumpReply{err: err}
		case len(entries) > 0:
			st.out[req] = true
			req.reply <- pumpReply{entries: entries, lost: lost}
		default:
			keep = append(keep, req)
		}
	}
	st.keepOnly(keep)
}

// waitWake waits until a session hands in a request, or for d.
func (m *pumpMux) waitWake(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-m.wake:
	case <-t.C:
	}
}
