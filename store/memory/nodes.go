package memory

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/streamerd/streamer/store"
)

// Nodes is the memory store.Nodes. Obtain it from New.
type Nodes struct {
	life *lifecycle

	mu        sync.Mutex
	deadlines map[string]time.Time // expired nodes are pruned by Live
}

var _ store.Nodes = (*Nodes)(nil)

func newNodes(life *lifecycle) *Nodes {
	return &Nodes{life: life, deadlines: map[string]time.Time{}}
}

// Heartbeat implements store.Nodes.
func (n *Nodes) Heartbeat(ctx context.Context, node string, ttl time.Duration) error {
	if err := n.args(ctx, node); err != nil {
		return err
	}
	if err := checkTTL(ttl); err != nil {
		return fmt.Errorf("memory: heartbeat of node %s: %w", node, err)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.deadlines[node] = n.life.clock.Now().Add(ttl)
	return nil
}

// Live implements store.Nodes.
func (n *Nodes) Live(ctx context.Context) ([]string, error) {
	if err := n.life.check(ctx); err != nil {
		return nil, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	now := n.life.clock.Now()
	var out []string
	for node, deadline := range n.deadlines {
		if deadline.After(now) {
			out = append(out, node)
		} else {
			delete(n.deadlines, node)
		}
	}
	slices.Sort(out)
	return out, nil
}

// Remove implements store.Nodes.
func (n *Nodes) Remove(ctx context.Context, node string) error {
	if err := n.args(ctx, node); err != nil {
		return err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.deadlines, node)
	return nil
}

// args runs the checks every method starts with.
func (n *Nodes) args(ctx context.Context, node string) error {
	if err := n.life.check(ctx); err != nil {
		return err
	}
	if err := needName("node", node); err != nil {
		return fmt.Errorf("memory: nodes: %w", err)
	}
	return nil
}
