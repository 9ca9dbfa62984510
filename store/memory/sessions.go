package memory

import (
	"context"
	"fmt"
	"sync"

	"github.com/streamerd/streamer/store"
)

// Sessions is the memory store.Sessions. Epochs come from one counter shared
// by all gateways, so they increase per gateway even across Release without
// keeping released records. Obtain it from New.
type Sessions struct {
	life *lifecycle

	mu      sync.Mutex
	epoch   int64              // last epoch handed out
	holders map[string]session // gateway → current holder; absent when none
}

var _ store.Sessions = (*Sessions)(nil)

type session struct {
	node  string
	epoch int64
}

func newSessions(life *lifecycle) *Sessions {
	return &Sessions{life: life, holders: map[string]session{}}
}

// Claim implements store.Sessions.
func (s *Sessions) Claim(ctx context.Context, gateway, node string) (int64, error) {
	if err := s.args(ctx, gateway, node); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.epoch++
	s.holders[gateway] = session{node: node, epoch: s.epoch}
	return s.epoch, nil
}

// Current implements store.Sessions.
func (s *Sessions) Current(ctx context.Context, gateway string) (string, int64, error) {
	if err := s.args(ctx, gateway); err != nil {
		return "", 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.holders[gateway]
	return h.node, h.epoch, nil
}

// Release implements store.Sessions.
func (s *Sessions) Release(ctx context.Context, gateway, node string, epoch int64) error {
	if err := s.args(ctx, gateway, node); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.holders[gateway] == (session{node: node, epoch: epoch}) {
		delete(s.holders, gateway)
	}
	return nil
}

// args runs the checks every method starts with: gateway, and node when
// given, must not be empty.
func (s *Sessions) args(ctx context.Context, gateway string, node ...string) error {
	if err := s.life.check(ctx); err != nil {
		return err
	}
	err := needName("gateway", gateway)
	for _, n := range node {
		if err == nil {
			err = needName("node", n)
		}
	}
	if err != nil {
		return fmt.Errorf("memory: sessions: %w", err)
	}
	return nil
}

// forget drops gateway's session record (Subscriptions.Forget).
func (s *Sessions) forget(gateway string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.holders, gateway)
}
