package redis

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// ErrNotReplicated is returned (wrapped) by a write that acknowledges data
// when Config.WaitReplicas is set and WAIT counted fewer replicas within
// Config.WaitTimeout: the master has the write, but a failover now could
// lose it. The caller treats it as a failure and retries (the appends are
// deduplicated by event id, the outbox writes are delivered at least once).
var ErrNotReplicated = errors.New("redis: write not acknowledged by enough replicas")

// DefaultWaitTimeout bounds each WAIT when Config.WaitTimeout is zero.
const DefaultWaitTimeout = time.Second

// scriptCall is one script run on keys of one slot, and its reply.
type scriptCall struct {
	script *goredis.Script
	keys   []string
	args   []any
	cmd    *goredis.Cmd
}

// runScripts runs calls in one round trip: pipelined as EVALSHA (EVAL again
// after NOSCRIPT, for a script cache flushed or a promoted replica that never
// loaded it). With WaitReplicas, each Redis node's calls are followed, on the
// same connection, by WAIT WaitReplicas WaitTimeout, and a call whose node
// counted fewer replicas fails with ErrNotReplicated. Errors are per call.
func (c *core) runScripts(ctx context.Context, calls []*scriptCall) {
	if len(calls) == 0 {
		return
	}
	if c.waitReplicas <= 0 {
		if len(calls) == 1 {
			s := calls[0]
			s.cmd = s.script.Run(ctx, c.client, s.keys, s.args...)
			return
		}
		pipe := c.client.Pipeline()
		for _, s := range calls {
			s.cmd = s.script.EvalSha(ctx, pipe, s.keys, s.args...)
		}
		_, _ = pipe.Exec(ctx) // errors are per command
		for _, s := range calls {
			if isNoScript(s.cmd.Err()) {
				s.cmd = s.script.Run(ctx, c.client, s.keys, s.args...)
			}
		}
		return
	}
	groups, err := c.byMaster(ctx, calls)
	if err != nil {
		for _, s := range calls {
			s.cmd = goredis.NewCmd(ctx)
			s.cmd.SetErr(err)
		}
		return
	}
	if len(groups) == 1 {
		for node, group := range groups {
			c.waitScripts(ctx, node, group)
		}
		return
	}
	var wg sync.WaitGroup
	for node, group := range groups {
		wg.Go(func() { c.waitScripts(ctx, node, group) })
	}
	wg.Wait()
}

// byMaster groups calls by the client of the master serving their keys: the
// backend's client off Cluster, the node's on Cluster (WAIT counts the
// replicas of the master the connection is on, so the writes and the WAIT
// must go to the same node, on the same connection).
func (c *core) byMaster(ctx context.Context, calls []*scriptCall) (map[goredis.Cmdable][]*scriptCall, error) {
	groups := map[goredis.Cmdable][]*scriptCall{}
	for _, s := range calls {
		node, err := c.masterFor(ctx, s.keys[0])
		if err != nil {
			return nil, err
		}
		groups[node] = append(groups[node], s)
	}
	return groups, nil
}

// masterFor returns the client of the master serving key: the backend's
// own off Cluster, the node's on Cluster.
func (c *core) masterFor(ctx context.Context, key string) (goredis.Cmdable, error) {
	cc, ok := c.client.(*goredis.ClusterClient)
	if !ok {
		return c.client, nil
	}
	m, err := cc.MasterForKey(ctx, key)
	if err != nil {
		cc.ReloadState(ctx)
		return nil, err
	}
	return m, nil
}

// waitScripts runs calls and WAIT in one pipeline on node (one connection).
func (c *core) waitScripts(ctx context.Context, node goredis.Cmdable, calls []*scriptCall) {
	run := func(calls []*scriptCall, eval bool) error {
		pipe := node.Pipeline()
		for _, s := range calls {
			if eval {
				s.cmd = s.script.Eval(ctx, pipe, s.keys, s.args...)
			} else {
				s.cmd = s.script.EvalSha(ctx, pipe, s.keys, s.args...)
			}
		}
		wait := pipe.Do(ctx, "WAIT", c.waitReplicas, c.waitTimeout.Milliseconds())
		_, _ = pipe.Exec(ctx) // errors are per command
		return c.waited(ctx, wait)
	}
	werr := run(calls, false)
	var again []*scriptCall
	for _, s := range calls {
		if isNoScript(s.cmd.Err()) {
			again = append(again, s)
		}
	}
	if len(again) > 0 {
		if err := run(again, true); werr == nil {
			werr = err
		}
	}
	for _, s := range calls {
		c.followTopology(ctx, s.cmd.Err())
		if s.cmd.Err() == nil && werr != nil {
			s.cmd.SetErr(werr)
		}
	}
}

// waitWrite runs the commands queue adds, all on keys of key's slot, then
// WAIT, in one pipeline on the master serving key; without WaitReplicas it
// only runs them (pipelined). It returns the first error.
func (c *core) waitWrite(ctx context.Context, key string, queue func(goredis.Pipeliner)) error {
	if c.waitReplicas <= 0 {
		_, err := c.client.Pipelined(ctx, func(pipe goredis.Pipeliner) error { queue(pipe); return nil })
		return err
	}
	node, err := c.masterFor(ctx, key)
	if err != nil {
		return err
	}
	pipe := node.Pipeline()
	queue(pipe)
	wait := pipe.Do(ctx, "WAIT", c.waitReplicas, c.waitTimeout.Milliseconds())
	cmds, _ := pipe.Exec(ctx)
	for _, cmd := range cmds[:len(cmds)-1] {
		if err := cmd.Err(); err != nil {
			c.followTopology(ctx, err)
			return err
		}
	}
	return c.waited(ctx, wait)
}

// waited checks WAIT's reply: the number of replicas that acknowledged the
// connection's writes.
func (c *core) waited(ctx context.Context, wait *goredis.Cmd) error {
	n, err := wait.Int64()
	if err != nil {
		c.followTopology(ctx, err)
		return fmt.Errorf("WAIT: %w", err)
	}
	if n < int64(c.waitReplicas) {
		return fmt.Errorf("%w: %d of %d replicas acknowledged within %v", ErrNotReplicated, n, c.waitReplicas, c.waitTimeout)
	}
	return nil
}

// followTopology makes a Cluster client reload its slot map after an error
// that a command sent to a node's own client gets when its master failed
// (topologyHook) or, since that client follows no redirection, when the
// slot moved or its node is now a replica.
func (c *core) followTopology(ctx context.Context, err error) {
	cc, ok := c.client.(*goredis.ClusterClient)
	if !ok || (topologyHook{cc}).check(ctx, err) || err == nil || ctx.Err() != nil {
		return
	}
	if goredis.HasErrorPrefix(err, "MOVED") || goredis.HasErrorPrefix(err, "ASK") || goredis.HasErrorPrefix(err, "READONLY") {
		cc.ReloadState(ctx)
	}
}
