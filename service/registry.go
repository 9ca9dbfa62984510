package service

import (
	"sync"
	"time"

	streamerv1 "github.com/streamerd/streamer/proto/streamer/v1"
)

// registry tracks the sessions open on this node: all of them (so shutdown
// can close them) and the registered one of each gateway (so a newer session
// supersedes the older one).
type registry struct {
	mu        sync.Mutex
	all       map[*session]struct{}
	byGateway map[string]*session
	wg        sync.WaitGroup // one per session in all
	closing   bool           // closeAll was called: refuse new sessions
}

func newRegistry() *registry {
	return &registry{all: map[*session]struct{}{}, byGateway: map[string]*session{}}
}

// add tracks s until done(s); false when the node is closing.
func (r *registry) add(s *session) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closing {
		return false
	}
	r.all[s] = struct{}{}
	r.wg.Add(1)
	return true
}

// done stops tracking s.
func (r *registry) done(s *session) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.all[s]; !ok {
		return
	}
	delete(r.all, s)
	if r.byGateway[s.gateway] == s {
		delete(r.byGateway, s.gateway)
	}
	r.wg.Done()
}

// register makes s the live session of its gateway and closes the one it
// supersedes. When a session with a greater epoch is already registered
// (two registrations raced), s itself is the superseded one: register
// returns false and s must close.
func (r *registry) register(s *session) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.byGateway[s.gateway]
	if old != nil && old.epoch > s.epoch {
		return false
	}
	r.byGateway[s.gateway] = s
	if old != nil && old != s {
		old.kill(streamerv1.ErrorCode_ERROR_CODE_SUPERSEDED, "streamer: session superseded by a newer session of gateway "+s.gateway)
	}
	return true
}

// closeGatewayExcept closes the registered session of gateway, if any and
// if it is not except.
func (r *registry) closeGatewayExcept(gateway string, except *session, code streamerv1.ErrorCode, msg string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if s := r.byGateway[gateway]; s != nil && s != except {
		s.kill(code, msg)
	}
}

// count returns the number of registered sessions.
func (r *registry) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.byGateway)
}

// gateways returns the gateways with a registered session.
func (r *registry) gateways() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.byGateway))
	for gw := range r.byGateway {
		out = append(out, gw)
	}
	return out
}

// closeAll refuses new sessions, closes every session with an Error and
// waits up to timeout for them to end.
func (r *registry) closeAll(code streamerv1.ErrorCode, msg string, timeout time.Duration) {
	r.mu.Lock()
	r.closing = true
	for s := range r.all {
		s.kill(code, msg)
	}
	r.mu.Unlock()
	done := make(chan struct{})
	go func() { r.wg.Wait(); close(done) }()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	}
}
