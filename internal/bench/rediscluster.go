package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// RedisCluster is a local Redis Cluster that the bench starts for a run
// (streamer bench --redis-cluster): redis-server processes on loopback
// ports, joined with redis-cli --cluster create, without persistence.
type RedisCluster struct {
	// URL is the cluster URL for the nodes (its seeds are every master).
	URL string
	// Masters and Replicas are the servers' process ids, for their CPU.
	Masters, Replicas []int
	procs             []*exec.Cmd
	dir               string
}

// StartRedisCluster starts masters masters with replicas replicas each
// (redis-server and redis-cli from PATH) in a temporary directory and
// returns once the cluster state is ok and every replica has synced.
func StartRedisCluster(ctx context.Context, masters, replicas int) (rc *RedisCluster, err error) {
	server, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("bench: --redis-cluster starts redis-server, which is not on PATH: %w", err)
	}
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		return nil, fmt.Errorf("bench: --redis-cluster joins the servers with redis-cli, which is not on PATH: %w", err)
	}
	dir, err := os.MkdirTemp("", "streamer-bench-cluster-")
	if err != nil {
		return nil, err
	}
	rc = &RedisCluster{dir: dir}
	defer func() {
		if err != nil {
			rc.Close()
			rc = nil
		}
	}()
	total := masters * (1 + replicas)
	addrs := make([]string, total)
	for i := range total {
		port, err := freePort()
		if err != nil {
			return rc, err
		}
		addrs[i] = "127.0.0.1:" + strconv.Itoa(port)
		nd := filepath.Join(dir, strconv.Itoa(port))
		if err := os.Mkdir(nd, 0o700); err != nil {
			return rc, err
		}
		cmd := exec.Command(server, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", nd, "--save", "", "--appendonly", "no",
			"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "5000", "--logfile", filepath.Join(nd, "log"))
		if err := cmd.Start(); err != nil {
			return rc, fmt.Errorf("bench: starting redis-server: %w", err)
		}
		rc.procs = append(rc.procs, cmd)
	}
	for _, a := range addrs {
		if err := poll(ctx, a, func(c *goredis.Client) error { return c.Ping(ctx).Err() }); err != nil {
			return rc, err
		}
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", strconv.Itoa(replicas), "--cluster-yes")
	if masters < 3 { // redis-cli wants three masters: build it by hand
		err = joinByHand(ctx, addrs, masters)
	} else if out, cerr := exec.CommandContext(ctx, cli, args...).CombinedOutput(); cerr != nil {
		err = fmt.Errorf("bench: redis-cli --cluster create: %v\n%s", cerr, out)
	}
	if err != nil {
		return rc, err
	}
	for i, a := range addrs {
		var role string
		err := poll(ctx, a, func(c *goredis.Client) error {
			info, err := c.ClusterInfo(ctx).Result()
			if err != nil {
				return err
			}
			if !strings.Contains(info, "cluster_state:ok") {
				return errors.New("cluster state not ok yet")
			}
			repl, err := c.Info(ctx, "replication").Result()
			if err != nil {
				return err
			}
			if strings.Contains(repl, "role:master") {
				role = "master"
				return nil
			}
			if !strings.Contains(repl, "master_link_status:up") {
				return errors.New("replica not synced yet")
			}
			role = "replica"
			return nil
		})
		if err != nil {
			return rc, err
		}
		if role == "master" {
			rc.Masters = append(rc.Masters, rc.procs[i].Process.Pid)
		} else {
			rc.Replicas = append(rc.Replicas, rc.procs[i].Process.Pid)
		}
	}
	if len(rc.Masters) != masters {
		return rc, fmt.Errorf("bench: the cluster has %d masters, want %d", len(rc.Masters), masters)
	}
	rc.URL = "redis://" + addrs[0] + "?cluster=true"
	for _, a := range addrs[1:masters] {
		rc.URL += "&addr=" + a
	}
	return rc, nil
}

// joinByHand makes a cluster of the servers at addrs: the first masters
// share the slots, the others are replicas of them in turn.
func joinByHand(ctx context.Context, addrs []string, masters int) error {
	ids := make([]string, masters)
	for i, a := range addrs {
		err := poll(ctx, a, func(c *goredis.Client) error {
			if i < masters {
				lo, hi := i*16384/masters, (i+1)*16384/masters-1
				if err := c.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", lo, hi).Err(); err != nil {
					return err
				}
				var err error
				ids[i], err = c.Do(ctx, "CLUSTER", "MYID").Text()
				return err
			}
			host, port, _ := strings.Cut(addrs[0], ":")
			return c.ClusterMeet(ctx, host, port).Err()
		})
		if err != nil {
			return err
		}
	}
	for _, a := range addrs[1:masters] {
		host, port, _ := strings.Cut(addrs[0], ":")
		if err := poll(ctx, a, func(c *goredis.Client) error { return c.ClusterMeet(ctx, host, port).Err() }); err != nil {
			return err
		}
	}
	for i, a := range addrs[masters:] {
		master := ids[i%masters]
		// The replica must first learn of its master through the gossip.
		if err := poll(ctx, a, func(c *goredis.Client) error { return c.Do(ctx, "CLUSTER", "REPLICATE", master).Err() }); err != nil {
			return err
		}
	}
	return nil
}

// Close kills the servers and removes their directory.
func (rc *RedisCluster) Close() {
	for _, p := range rc.procs {
		_ = p.Process.Kill()
		_ = p.Wait()
	}
	_ = os.RemoveAll(rc.dir)
}

// poll runs f on a client of addr until it succeeds, for up to 30 s.
func poll(ctx context.Context, addr string, f func(*goredis.Client) error) error {
	c := goredis.NewClient(&goredis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := f(c)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("bench: redis at %s: %w", addr, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond): // the servers' startup
		}
	}
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// procCPU returns the user+system CPU time of process pid so far (Linux
// /proc/PID/stat, in clock ticks of 10 ms); false where unreadable.
func procCPU(pid int) (time.Duration, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	// The command name (field 2) may hold spaces: fields count from the ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, false
	}
	u, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return time.Duration(u+st) * 10 * time.Millisecond, true
}

// redisCPU returns the CPU time so far of each process of masters, then of
// replicas (0 for one that cannot be read).
func redisCPU(masters, replicas []int) []time.Duration {
	var out []time.Duration
	for _, pid := range append(slices.Clone(masters), replicas...) {
		d, _ := procCPU(pid)
		out = append(out, d)
	}
	return out
}

// selfCPU returns this process's user+system CPU time so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
